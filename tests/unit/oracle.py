"""Independent reference for billing periods, used to check the real code.

A day starts a period exactly when it is the anchor day of its month, or the month's
last day if the month is shorter than the anchor. Walking day by day from there needs
no month arithmetic, so it shares no logic with ``billing/periods.py``.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

ONE_DAY = timedelta(days=1)


def is_period_start(day: date, anchor: int) -> bool:
    return day.day == min(anchor, calendar.monthrange(day.year, day.month)[1])


def reference_period(day: date, anchor: int) -> tuple[date, date]:
    """(start, end inclusive) of the period containing ``day``."""
    start = day
    while not is_period_start(start, anchor):
        start -= ONE_DAY
    end = day + ONE_DAY
    while not is_period_start(end, anchor):
        end += ONE_DAY
    return start, end - ONE_DAY


def reference_stretches(first: date, last: date, anchor: int) -> list[tuple[date, date, int]]:
    """[first, last] cut at period starts: (stretch start, stretch end, days in its period)."""
    out: list[tuple[date, date, int]] = []
    day = first
    while day <= last:
        p_start, p_end = reference_period(day, anchor)
        end = min(p_end, last)
        out.append((day, end, (p_end - p_start).days + 1))
        day = end + ONE_DAY
    return out
