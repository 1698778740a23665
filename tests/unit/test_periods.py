"""billing/periods.py: calendar and anniversary periods, month-end clamping."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispbill.billing.periods import (
    BillingMode,
    Period,
    anchor_day_for,
    anchored_date,
    next_period,
    period_containing,
    periods_between,
)

from . import oracle

ONE_DAY = timedelta(days=1)

days_ = st.dates(min_value=date(1901, 1, 1), max_value=date(2199, 12, 31))
anchors = st.integers(min_value=1, max_value=31)


def P(start: str, end: str) -> Period:
    return Period(date.fromisoformat(start), date.fromisoformat(end))


def reference_period(day: date, anchor: int) -> Period:
    return Period(*oracle.reference_period(day, anchor))


# --- Period -------------------------------------------------------------------------


def test_period_days_and_membership():
    p = P("2026-11-01", "2026-11-30")
    assert p.days == 30
    assert date(2026, 11, 1) in p
    assert date(2026, 11, 30) in p
    assert date(2026, 10, 31) not in p
    assert date(2026, 12, 1) not in p
    assert P("2026-11-16", "2026-11-16").days == 1


# --- anchored_date ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "anchor", "expected"),
    [
        (2026, 1, 31, date(2026, 1, 31)),
        (2026, 2, 31, date(2026, 2, 28)),
        (2028, 2, 31, date(2028, 2, 29)),
        (2026, 2, 29, date(2026, 2, 28)),
        (2028, 2, 29, date(2028, 2, 29)),
        (2026, 4, 31, date(2026, 4, 30)),
        (2026, 4, 30, date(2026, 4, 30)),
        (2026, 11, 1, date(2026, 11, 1)),
        (2026, 12, 15, date(2026, 12, 15)),
        (2100, 2, 29, date(2100, 2, 28)),  # not a leap year
        (2000, 2, 29, date(2000, 2, 29)),  # a leap year
    ],
)
def test_anchored_date(year, month, anchor, expected):
    assert anchored_date(year, month, anchor) == expected


@pytest.mark.parametrize("anchor", [0, -1, 32, 100])
def test_anchored_date_rejects_impossible_anchor(anchor):
    with pytest.raises(ValueError):
        anchored_date(2026, 1, anchor)


@pytest.mark.parametrize("anchor", [0, 32])
def test_period_containing_rejects_impossible_anchor(anchor):
    with pytest.raises(ValueError):
        period_containing(date(2026, 1, 15), anchor)


# --- period_containing: table -------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "anchor", "expected"),
    [
        # calendar billing on the 1st
        ("2026-11-01", 1, P("2026-11-01", "2026-11-30")),
        ("2026-11-16", 1, P("2026-11-01", "2026-11-30")),
        ("2026-11-30", 1, P("2026-11-01", "2026-11-30")),
        ("2026-12-31", 1, P("2026-12-01", "2026-12-31")),
        ("2026-02-14", 1, P("2026-02-01", "2026-02-28")),
        ("2028-02-14", 1, P("2028-02-01", "2028-02-29")),
        # a billing day mid-month: the period straddles two months
        ("2026-11-10", 15, P("2026-10-15", "2026-11-14")),
        ("2026-11-15", 15, P("2026-11-15", "2026-12-14")),
        ("2027-01-05", 15, P("2026-12-15", "2027-01-14")),  # across the new year
        ("2026-12-20", 15, P("2026-12-15", "2027-01-14")),
        # anchor 31 clamps to month ends
        ("2026-01-31", 31, P("2026-01-31", "2026-02-27")),
        ("2026-02-27", 31, P("2026-01-31", "2026-02-27")),
        ("2026-02-28", 31, P("2026-02-28", "2026-03-30")),
        ("2026-03-30", 31, P("2026-02-28", "2026-03-30")),
        ("2026-03-31", 31, P("2026-03-31", "2026-04-29")),
        ("2026-04-30", 31, P("2026-04-30", "2026-05-30")),
        ("2028-01-31", 31, P("2028-01-31", "2028-02-28")),
        ("2028-02-29", 31, P("2028-02-29", "2028-03-30")),
        ("2026-01-15", 31, P("2025-12-31", "2026-01-30")),
        # anchor 30 and 29 in February
        ("2026-02-28", 30, P("2026-02-28", "2026-03-29")),
        ("2026-02-27", 30, P("2026-01-30", "2026-02-27")),
        ("2026-02-28", 29, P("2026-02-28", "2026-03-28")),
        ("2028-02-29", 29, P("2028-02-29", "2028-03-28")),
        ("2028-02-28", 29, P("2028-01-29", "2028-02-28")),
    ],
)
def test_period_containing_table(day, anchor, expected):
    assert period_containing(date.fromisoformat(day), anchor) == expected


def _chain(start: date, anchor: int, n: int) -> list[Period]:
    periods = [period_containing(start, anchor)]
    for _ in range(n - 1):
        periods.append(next_period(periods[-1], anchor))
    return periods


def test_anchor_31_does_not_drift_through_a_year():
    # 31 Jan -> 28 Feb -> 31 Mar: each start is clamped from the anchor, never from
    # the previous (already clamped) start.
    starts = [p.start for p in _chain(date(2026, 1, 31), 31, 14)]
    assert starts == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
        date(2026, 6, 30),
        date(2026, 7, 31),
        date(2026, 8, 31),
        date(2026, 9, 30),
        date(2026, 10, 31),
        date(2026, 11, 30),
        date(2026, 12, 31),
        date(2027, 1, 31),
        date(2027, 2, 28),
    ]


def test_anchor_31_in_a_leap_year():
    starts = [p.start for p in _chain(date(2028, 1, 31), 31, 3)]
    assert starts == [date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31)]


def test_29_february_anniversary():
    anchor = anchor_day_for(BillingMode.ANNIVERSARY, billing_day=1, activated_on=date(2028, 2, 29))
    assert anchor == 29
    periods = _chain(date(2028, 2, 29), anchor, 49)
    assert periods[0] == P("2028-02-29", "2028-03-28")
    assert periods[1] == P("2028-03-29", "2028-04-28")
    feb_starts = [p.start for p in periods if p.start.month == 2]
    # 28 Feb in common years, back to 29 Feb in the next leap year.
    assert feb_starts == [date(2028, 2, 29), date(2029, 2, 28), date(2030, 2, 28), date(2031, 2, 28), date(2032, 2, 29)]
    assert periods[11] == P("2029-01-29", "2029-02-27")
    assert periods[12] == P("2029-02-28", "2029-03-28")
    assert all(p.start.day == 29 for p in periods if p.start.month != 2)


# --- period_containing: properties --------------------------------------------------


@given(day=days_, anchor=anchors)
def test_period_contains_the_day_and_matches_the_reference(day, anchor):
    p = period_containing(day, anchor)
    assert day in p
    assert p == reference_period(day, anchor)


@given(day=days_, anchor=anchors)
def test_periods_are_contiguous(day, anchor):
    p = period_containing(day, anchor)
    after = period_containing(p.end + ONE_DAY, anchor)
    before = period_containing(p.start - ONE_DAY, anchor)
    assert after.start == p.end + ONE_DAY
    assert before.end == p.start - ONE_DAY
    assert next_period(p, anchor) == after
    # every day of the period maps back to the same period
    assert period_containing(p.start, anchor) == p
    assert period_containing(p.end, anchor) == p


@given(day=days_, anchor=anchors)
def test_period_start_is_the_clamped_anchor(day, anchor):
    p = period_containing(day, anchor)
    assert p.start == anchored_date(p.start.year, p.start.month, anchor)
    assert 28 <= p.days <= 31
    # one period per month: the next start is in the following month
    nxt = p.end + ONE_DAY
    assert (nxt.year * 12 + nxt.month) - (p.start.year * 12 + p.start.month) == 1


@given(start=days_, anchor=anchors)
def test_no_drift_over_many_periods(start, anchor):
    for p in _chain(start, anchor, 30):
        assert p.start.day == min(anchor, calendar.monthrange(p.start.year, p.start.month)[1])


# --- anchor_day_for -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "billing_day", "activated_on", "expected"),
    [
        (BillingMode.CALENDAR, 1, date(2026, 11, 16), 1),
        (BillingMode.CALENDAR, 10, date(2026, 11, 16), 10),
        (BillingMode.ANNIVERSARY, 1, date(2026, 11, 16), 16),
        (BillingMode.ANNIVERSARY, 1, date(2026, 1, 31), 31),
        ("calendar", 5, date(2026, 1, 31), 5),
        ("anniversary", 5, date(2026, 1, 31), 31),
    ],
)
def test_anchor_day_for(mode, billing_day, activated_on, expected):
    assert anchor_day_for(mode, billing_day=billing_day, activated_on=activated_on) == expected


def test_anchor_day_for_rejects_unknown_mode():
    with pytest.raises(ValueError):
        anchor_day_for("weekly", billing_day=1, activated_on=date(2026, 1, 1))


# --- periods_between ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "anchor", "expected"),
    [
        (
            "2026-11-16",
            "2027-01-10",
            1,
            [P("2026-11-16", "2026-11-30"), P("2026-12-01", "2026-12-31"), P("2027-01-01", "2027-01-10")],
        ),
        ("2026-11-01", "2026-11-30", 1, [P("2026-11-01", "2026-11-30")]),
        ("2026-11-05", "2026-11-20", 1, [P("2026-11-05", "2026-11-20")]),
        ("2026-11-30", "2026-11-30", 1, [P("2026-11-30", "2026-11-30")]),
        ("2026-11-30", "2026-12-01", 1, [P("2026-11-30", "2026-11-30"), P("2026-12-01", "2026-12-01")]),
        (
            "2026-01-31",
            "2026-03-31",
            31,
            [P("2026-01-31", "2026-02-27"), P("2026-02-28", "2026-03-30"), P("2026-03-31", "2026-03-31")],
        ),
        ("2026-12-01", "2026-11-30", 1, []),  # empty range
    ],
)
def test_periods_between_table(first, last, anchor, expected):
    assert periods_between(date.fromisoformat(first), date.fromisoformat(last), anchor) == expected


@given(first=days_, length=st.integers(min_value=0, max_value=400), anchor=anchors)
def test_periods_between_tiles_the_range(first, length, anchor):
    last = first + timedelta(days=length)
    pieces = periods_between(first, last, anchor)
    assert pieces[0].start == first
    assert pieces[-1].end == last
    assert sum(p.days for p in pieces) == length + 1
    for a, b in zip(pieces, pieces[1:]):
        assert b.start == a.end + ONE_DAY
    for piece in pieces:
        whole = period_containing(piece.start, anchor)
        assert piece.start in whole and piece.end in whole
        assert piece.start <= piece.end
    # every piece but the first starts a period; every piece but the last ends one
    for piece in pieces[1:]:
        assert period_containing(piece.start, anchor).start == piece.start
    for piece in pieces[:-1]:
        assert period_containing(piece.end, anchor).end == piece.end


@given(first=days_, length=st.integers(min_value=0, max_value=400), anchor=anchors)
def test_periods_between_matches_the_reference(first, length, anchor):
    last = first + timedelta(days=length)
    expected = [Period(s, e) for s, e, _ in oracle.reference_stretches(first, last, anchor)]
    assert periods_between(first, last, anchor) == expected
