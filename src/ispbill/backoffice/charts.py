"""Dashboard charts as inline SVG drawn on the server (no JavaScript, no CDN: the office
may be offline). Plain string building: a chart costs well under a millisecond, where a
charting library's object model cost tens of milliseconds per dashboard."""

from __future__ import annotations

import math
from datetime import date

from django.utils.formats import date_format
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from ispbill.core.money import from_paisa

COLOURS = ("#0b5cad", "#e2136e", "#f7941d", "#1d7a38", "#6b4fbb", "#5b6775", "#c0392b")
_FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#3a4654"'
_GRID = "#d9dee4"
_WIDTH = 720


def _taka(paisa: int) -> str:
    return f"৳ {from_paisa(paisa):,.0f}"


def _count(n: int) -> str:
    return f"{n:,}"


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" {_FONT}>' + "".join(body) + "</svg>"
    )


def _columns(*, label: str, x_labels: list[str], series: list[tuple[str, list[int]]], fmt, height: int,
             label_every: int = 1, legend: bool = True) -> str:
    """Vertical bars, one column per x label, the series stacked bottom-up."""
    left, right, top = 64, 8, 10
    legend_rows = math.ceil(len(series) / 4) if legend else 0
    bottom = 22 + 18 * legend_rows
    plot_w, plot_h = _WIDTH - left - right, height - top - bottom
    totals = [sum(values[i] for _name, values in series) for i in range(len(x_labels))]
    ticks = _nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    body = []
    for t in ticks:
        y = top + plot_h - t * scale
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(round(t)))}</text>')
    slot = plot_w / max(len(x_labels), 1)
    bar_w = max(slot * 0.7, 1)
    for i, x_label in enumerate(x_labels):
        x = left + i * slot + (slot - bar_w) / 2
        base = top + plot_h
        for k, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = value * scale
            base -= h
            body.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{COLOURS[k % len(COLOURS)]}"><title>{escape(f"{x_label} · {name}: {fmt(value)}")}'
                        "</title></rect>")
        if i % label_every == 0:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 15}" text-anchor="middle">'
                        f"{escape(x_label)}</text>")
    for k, (name, _values) in enumerate(series if legend else []):
        lx, ly = left + (k % 4) * (plot_w / 4), height - 18 * (legend_rows - k // 4) + 4
        body.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{COLOURS[k % len(COLOURS)]}"/>'
                    f'<text x="{lx + 14:.1f}" y="{ly}" font-size="12">{escape(name)}</text>')
    return _svg(_WIDTH, height, label, body)


def payments_per_day(days: list[date], series: dict[str, dict[date, int]]) -> str:
    """Stacked columns: money received per day, one colour per gateway or method."""
    rows = [(name, [per_day.get(d, 0) for d in days]) for name, per_day in sorted(series.items())]
    if not rows:
        rows = [(_("No payments"), [0 for _day in days])]
    return _columns(label=_("Payments per day"), x_labels=[date_format(d, "d M") for d in days], series=rows, fmt=_taka,
                    height=300, label_every=5)


def aging(buckets: list[tuple[str, int]]) -> str:
    """Columns: outstanding money by days past due."""
    return _columns(label=_("Outstanding by days past due"), x_labels=[str(label) for label, _paisa in buckets],
                    series=[(_("Outstanding"), [p for _label, p in buckets])], fmt=_taka, height=240, legend=False)


def subscribers_by_status(counts: dict[str, int], labels: dict[str, str]) -> str:
    """Horizontal bars: subscribers per status."""
    height, left, right, top, bottom = 200, 90, 40, 8, 22
    plot_w, plot_h = _WIDTH - left - right, height - top - bottom
    ticks = _nice_ticks(max(counts.values(), default=0))
    scale = plot_w / ticks[-1]
    body = []
    for t in ticks:
        x = left + t * scale
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{_GRID}"/>'
                    f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{_count(round(t))}</text>')
    slot = plot_h / max(len(counts), 1)
    bar_h = slot * 0.7
    for i, (status, n) in enumerate(counts.items()):
        y = top + i * slot + (slot - bar_h) / 2
        name = labels.get(status, status)
        body.append(f'<text x="{left - 6}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        if n > 0:
            body.append(f'<rect x="{left}" y="{y:.1f}" width="{n * scale:.1f}" height="{bar_h:.1f}" fill="{COLOURS[0]}">'
                        f"<title>{escape(f'{name}: {_count(n)}')}</title></rect>"
                        f'<text x="{left + n * scale + 4:.1f}" y="{y + bar_h / 2 + 4:.1f}">{_count(n)}</text>')
    return _svg(_WIDTH, height, _("Subscribers by status"), body)
