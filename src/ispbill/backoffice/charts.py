"""Dashboard charts as inline SVG, rendered on the server with pygal (no JavaScript, no
CDN: the office may be offline)."""

from __future__ import annotations

import re
from datetime import date

import pygal
from django.utils.safestring import mark_safe
from pygal.style import Style

from ispbill.core.money import from_paisa

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#3a4654",
    foreground_strong="#17212b",
    foreground_subtle="#d9dee4",
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    value_font_size=10,
    tooltip_font_size=12,
    colors=("#0b5cad", "#e2136e", "#f7941d", "#1d7a38", "#6b4fbb", "#5b6775", "#c0392b"),
)


def _config(**extra) -> dict:
    config = dict(
        style=_STYLE, js=[], disable_xml_declaration=True, explicit_size=False, responsive=True,
        width=720, height=300, legend_at_bottom=True, legend_at_bottom_columns=4, print_values=False,
        show_y_guides=True, margin=8,
    )
    return config | extra


_SCRIPT = re.compile(r"<script[^>]*>.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _svg(chart) -> str:
    # pygal builds the SVG with an XML library, which escapes every label it is given.
    # Its inline config script only feeds the tooltip JavaScript we do not load: dropped.
    svg = chart.render(is_unicode=True)
    return mark_safe(_COMMENT.sub("", _SCRIPT.sub("", svg)))


def payments_per_day(days: list[date], series: dict[str, dict[date, int]]) -> str:
    chart = pygal.StackedBar(**_config(
        x_label_rotation=0, show_minor_x_labels=False, x_labels_major_every=5, truncate_label=-1,
        value_formatter=lambda v: f"৳ {v:,.0f}", y_title="৳ received",
    ))
    chart.x_labels = [f"{d:%d %b}" for d in days]
    if not series:
        chart.add("No payments", [0 for _ in days])
    for label, per_day in sorted(series.items()):
        chart.add(label, [float(from_paisa(per_day.get(d, 0))) or None for d in days])
    return _svg(chart)


def aging(buckets: list[tuple[str, int]]) -> str:
    chart = pygal.Bar(**_config(show_legend=False, value_formatter=lambda v: f"৳ {v:,.0f}", height=240))
    chart.x_labels = [label for label, _ in buckets]
    chart.add("Outstanding", [float(from_paisa(p)) for _, p in buckets])
    return _svg(chart)


def subscribers_by_status(counts: dict[str, int], labels: dict[str, str]) -> str:
    chart = pygal.HorizontalBar(**_config(show_legend=False, height=200, value_formatter=lambda v: f"{v:,.0f}"))
    chart.x_labels = [labels.get(k, k) for k in counts]
    chart.add("Subscribers", list(counts.values()))
    return _svg(chart)
