"""Dashboard charts: the data for Chart.js, which is served from this application's own
static files (``static/backoffice/vendor``; the office may be offline, so never a CDN)
and draws them in the browser (``static/backoffice/dashboard.js``). Amounts travel as
integer paisa; the browser only formats them. Each chart's figures are also on the page
as text, for printing and for browsers without JavaScript."""

from __future__ import annotations

from datetime import date

from django.utils.formats import date_format
from django.utils.translation import gettext as _

COLOURS = ("#0b5cad", "#e2136e", "#f7941d", "#1d7a38", "#6b4fbb", "#5b6775", "#c0392b")


def _chart(kind: str, label: str, labels: list[str], datasets: list[tuple[str, list[int]]], *, money: bool,
           stacked: bool = False, horizontal: bool = False) -> dict:
    return {
        "type": kind, "label": label, "labels": labels, "money": money, "stacked": stacked, "horizontal": horizontal,
        "datasets": [{"label": name, "data": values, "colour": COLOURS[i % len(COLOURS)]}
                     for i, (name, values) in enumerate(datasets)],
    }


def payments_per_day(days: list[date], series: dict[str, dict[date, int]]) -> dict:
    """Stacked columns: money received per day (paisa), one colour per gateway or method."""
    rows = [(name, [per_day.get(d, 0) for d in days]) for name, per_day in sorted(series.items())]
    if not rows:
        rows = [(_("No payments"), [0 for _day in days])]
    return _chart("bar", _("Payments per day"), [date_format(d, "d M") for d in days], rows, money=True, stacked=True)


def aging(buckets: list[tuple[str, int]]) -> dict:
    """Columns: outstanding money (paisa) by days past due."""
    return _chart("bar", _("Outstanding by days past due"), [str(label) for label, _paisa in buckets],
                  [(_("Outstanding"), [p for _label, p in buckets])], money=True)


def subscribers_by_status(counts: dict[str, int], labels: dict[str, str]) -> dict:
    """Horizontal bars: subscribers per status."""
    return _chart("bar", _("Subscribers"), [str(labels.get(status, status)) for status in counts],
                  [(_("Subscribers"), list(counts.values()))], money=False, horizontal=True)
