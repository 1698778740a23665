"""Billing periods (pure).

A period runs from an anchor day of one month to the day before the anchor day of the
next. Calendar billing anchors every subscriber on the ISP's billing day (default 1);
anniversary billing anchors on the activation day. Anchors past a month's end clamp to
its last day (31 Jan -> 28/29 Feb -> 31 Mar; a 29 Feb anniversary -> 28 Feb), and the
clamp never drifts because each boundary is computed from the anchor, not from the
previous boundary.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum


class BillingMode(StrEnum):
    CALENDAR = "calendar"
    ANNIVERSARY = "anniversary"


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


def anchored_date(year: int, month: int, anchor_day: int) -> date:
    """Day ``anchor_day`` of the month, clamped to the month's last day."""
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor day must be 1-31")
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def period_containing(day: date, anchor_day: int) -> Period:
    """The billing period that contains ``day``."""
    start = anchored_date(day.year, day.month, anchor_day)
    year, month = day.year, day.month
    if day < start:
        year, month = _add_months(year, month, -1)
        start = anchored_date(year, month, anchor_day)
    ny, nm = _add_months(year, month, 1)
    return Period(start, anchored_date(ny, nm, anchor_day) - timedelta(days=1))


def next_period(period: Period, anchor_day: int) -> Period:
    return period_containing(period.end + timedelta(days=1), anchor_day)


def anchor_day_for(mode: BillingMode | str, *, billing_day: int, activated_on: date) -> int:
    """The day of month a subscriber's periods start on."""
    return activated_on.day if BillingMode(mode) is BillingMode.ANNIVERSARY else billing_day


def periods_between(first: date, last: date, anchor_day: int) -> list[Period]:
    """Periods overlapping [first, last], each clipped to that range."""
    out: list[Period] = []
    day = first
    while day <= last:
        p = period_containing(day, anchor_day)
        out.append(Period(day, min(p.end, last)))
        day = p.end + timedelta(days=1)
    return out
