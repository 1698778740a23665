"""billing/proration.py: plan charges, mid-period joins, package changes, tax."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ispbill.billing.periods import Period, period_containing
from ispbill.billing.proration import (
    Line,
    LineKind,
    day_before,
    exact_share,
    invoiced_price,
    package_change_lines,
    service_charge,
    tax_line,
    used_service_lines,
)
from ispbill.core.money import Rounding, round_amount

from . import oracle

D = Decimal
PAISA, TAKA = Rounding.PAISA, Rounding.TAKA
HALF_UNIT = {PAISA: Fraction(1, 200), TAKA: Fraction(1, 2)}

prices = st.decimals(min_value=0, max_value=100000, places=2, allow_nan=False, allow_infinity=False)
anchors = st.integers(min_value=1, max_value=31)
days_ = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
roundings = st.sampled_from([PAISA, TAKA])


def d(iso: str) -> date:
    return date.fromisoformat(iso)


# --- service_charge: the proration table --------------------------------------------


@pytest.mark.parametrize(
    ("first", "anchor", "price", "rounding", "covers", "kind", "amount", "days_note"),
    [
        # first day of the period: the plan charge, whatever the month length
        ("2026-02-01", 1, "1000.00", PAISA, ("2026-02-01", "2026-02-28"), LineKind.PLAN, "1000.00", None),  # 28
        ("2028-02-01", 1, "1000.00", PAISA, ("2028-02-01", "2028-02-29"), LineKind.PLAN, "1000.00", None),  # 29
        ("2026-11-01", 1, "1000.00", PAISA, ("2026-11-01", "2026-11-30"), LineKind.PLAN, "1000.00", None),  # 30
        ("2026-12-01", 1, "1000.00", PAISA, ("2026-12-01", "2026-12-31"), LineKind.PLAN, "1000.00", None),  # 31
        ("2026-12-01", 1, "1000.00", TAKA, ("2026-12-01", "2026-12-31"), LineKind.PLAN, "1000.00", None),
        ("2026-11-15", 15, "1000.00", PAISA, ("2026-11-15", "2026-12-14"), LineKind.PLAN, "1000.00", None),
        ("2026-02-28", 31, "1000.00", PAISA, ("2026-02-28", "2026-03-30"), LineKind.PLAN, "1000.00", None),
        # last day of the period: one day's share
        ("2026-02-28", 1, "1000.00", PAISA, ("2026-02-28", "2026-02-28"), LineKind.PRORATION_CHARGE, "35.71", "1 of 28"),
        ("2028-02-29", 1, "1000.00", PAISA, ("2028-02-29", "2028-02-29"), LineKind.PRORATION_CHARGE, "34.48", "1 of 29"),
        ("2026-11-30", 1, "1000.00", PAISA, ("2026-11-30", "2026-11-30"), LineKind.PRORATION_CHARGE, "33.33", "1 of 30"),
        ("2026-12-31", 1, "1000.00", PAISA, ("2026-12-31", "2026-12-31"), LineKind.PRORATION_CHARGE, "32.26", "1 of 31"),
        ("2026-02-28", 1, "1000.00", TAKA, ("2026-02-28", "2026-02-28"), LineKind.PRORATION_CHARGE, "36.00", "1 of 28"),
        ("2026-12-31", 1, "1000.00", TAKA, ("2026-12-31", "2026-12-31"), LineKind.PRORATION_CHARGE, "32.00", "1 of 31"),
        # the worked examples: days counted from the join day inclusive
        ("2026-11-16", 1, "1000.00", PAISA, ("2026-11-16", "2026-11-30"), LineKind.PRORATION_CHARGE, "500.00", "15 of 30"),
        ("2026-12-16", 1, "1000.00", PAISA, ("2026-12-16", "2026-12-31"), LineKind.PRORATION_CHARGE, "516.13", "16 of 31"),
        ("2026-11-16", 1, "1000.00", TAKA, ("2026-11-16", "2026-11-30"), LineKind.PRORATION_CHARGE, "500.00", "15 of 30"),
        ("2026-12-16", 1, "1000.00", TAKA, ("2026-12-16", "2026-12-31"), LineKind.PRORATION_CHARGE, "516.00", "16 of 31"),
        ("2026-02-15", 1, "1000.00", PAISA, ("2026-02-15", "2026-02-28"), LineKind.PRORATION_CHARGE, "500.00", "14 of 28"),
        ("2028-02-15", 1, "1000.00", PAISA, ("2028-02-15", "2028-02-29"), LineKind.PRORATION_CHARGE, "517.24", "15 of 29"),
        # half-up on an exact tie
        ("2026-11-16", 1, "1.01", PAISA, ("2026-11-16", "2026-11-30"), LineKind.PRORATION_CHARGE, "0.51", "15 of 30"),  # 0.505
        ("2026-11-16", 1, "1001.00", TAKA, ("2026-11-16", "2026-11-30"), LineKind.PRORATION_CHARGE, "501.00", "15 of 30"),  # 500.5
        ("2026-11-16", 1, "999.00", TAKA, ("2026-11-16", "2026-11-30"), LineKind.PRORATION_CHARGE, "500.00", "15 of 30"),  # 499.5
        # periods that straddle months
        ("2026-11-20", 15, "1000.00", PAISA, ("2026-11-20", "2026-12-14"), LineKind.PRORATION_CHARGE, "833.33", "25 of 30"),
        ("2026-02-14", 31, "1000.00", PAISA, ("2026-02-14", "2026-02-27"), LineKind.PRORATION_CHARGE, "500.00", "14 of 28"),
        # a free package is free
        ("2026-12-16", 1, "0.00", PAISA, ("2026-12-16", "2026-12-31"), LineKind.PRORATION_CHARGE, "0.00", "16 of 31"),
    ],
)
def test_service_charge_table(first, anchor, price, rounding, covers, kind, amount, days_note):
    period, line = service_charge(package_name="Home 20", price=D(price), first=d(first), anchor_day=anchor, rounding=rounding)
    assert period == Period(d(covers[0]), d(covers[1]))
    assert line.kind is kind
    assert str(line.amount) == amount
    assert line.description.startswith("Home 20, ")
    if days_note:
        assert f"({days_note} days)" in line.description


def test_service_charge_plan_line_names_the_whole_period():
    _, line = service_charge(package_name="Home 20", price=D("1000"), first=d("2026-11-01"), anchor_day=1, rounding=PAISA)
    assert "01 Nov 2026" in line.description and "30 Nov 2026" in line.description
    assert "days)" not in line.description


# --- package_change_lines -----------------------------------------------------------


def same_price_each_period(price, first: date, last: date, anchor: int) -> dict[date, Decimal]:
    """``old_prices`` for a package charged ``price`` in every period of [first, last]."""
    stretches = oracle.reference_stretches(first, last, anchor)
    return {oracle.reference_period(start, anchor)[0]: price for start, _, _ in stretches}


def _change(old, new, effective, through, anchor=1, rounding=PAISA):
    return package_change_lines(
        old_name="Home 10",
        old_prices=same_price_each_period(D(old), d(effective), d(through), anchor),
        new_name="Home 20",
        new_price=D(new),
        effective_on=d(effective),
        billed_through=d(through),
        anchor_day=anchor,
        rounding=rounding,
    )


@pytest.mark.parametrize(
    ("old", "new", "effective", "through", "anchor", "rounding", "expected"),
    [
        # upgrade mid-November (30 days): 15 unused days incl. the effective day
        ("500.00", "1000.00", "2026-11-16", "2026-11-30", 1, PAISA, [("-250.00", "500.00")]),
        # downgrade mid-December (31 days): 16 days
        ("1000.00", "500.00", "2026-12-16", "2026-12-31", 1, PAISA, [("-516.13", "258.06")]),
        ("1000.00", "500.00", "2026-12-16", "2026-12-31", 1, TAKA, [("-516.00", "258.00")]),
        ("500.00", "1000.00", "2026-12-16", "2026-12-31", 1, TAKA, [("-258.00", "516.00")]),
        # February, 28 and 29 days
        ("700.00", "1200.00", "2026-02-15", "2026-02-28", 1, PAISA, [("-350.00", "600.00")]),
        ("700.00", "1200.00", "2028-02-15", "2028-02-29", 1, PAISA, [("-362.07", "620.69")]),
        # effective on the period's last day: one day
        ("500.00", "1000.00", "2026-11-30", "2026-11-30", 1, PAISA, [("-16.67", "33.33")]),
        # effective on the period's first day: the whole period swaps
        ("500.00", "1000.00", "2026-11-01", "2026-11-30", 1, PAISA, [("-500.00", "1000.00")]),
        # a prepaid subscriber already holds December's invoice: one pair per period
        (
            "500.00",
            "1000.00",
            "2026-11-16",
            "2026-12-31",
            1,
            PAISA,
            [("-250.00", "500.00"), ("-500.00", "1000.00")],
        ),
        # anniversary anchor 31, change inside the clamped 28-day February period
        ("500.00", "1000.00", "2026-02-14", "2026-02-27", 31, PAISA, [("-250.00", "500.00")]),
        # rounding ties go away from zero on both sides
        ("1.01", "1001.00", "2026-11-16", "2026-11-30", 1, PAISA, [("-0.51", "500.50")]),
        ("1001.00", "1.00", "2026-11-16", "2026-11-30", 1, TAKA, [("-501.00", "1.00")]),  # 500.5, 0.5
    ],
)
def test_package_change_table(old, new, effective, through, anchor, rounding, expected):
    lines = _change(old, new, effective, through, anchor, rounding)
    assert [line.kind for line in lines] == [LineKind.PRORATION_CREDIT, LineKind.PRORATION_CHARGE] * len(expected)
    assert [(str(c.amount), str(ch.amount)) for c, ch in zip(lines[::2], lines[1::2])] == expected
    for credit, charge in zip(lines[::2], lines[1::2]):
        assert credit.amount <= 0 <= charge.amount
        assert credit.description.startswith("Unused Home 10, ")
        assert charge.description.startswith("Home 20, ")


def test_package_change_descriptions_count_days():
    credit, charge = _change("500.00", "1000.00", "2026-12-16", "2026-12-31")
    assert "(16 of 31 days)" in credit.description
    assert "(16 of 31 days)" in charge.description
    assert "16 Dec 2026" in credit.description and "31 Dec 2026" in credit.description


@pytest.mark.parametrize(("effective", "through"), [("2026-12-01", "2026-11-30"), ("2027-01-10", "2026-12-31")])
def test_package_change_after_billed_range_needs_no_lines(effective, through):
    # Nothing was billed from the effective day on: the next invoice bills the new package.
    assert _change("500.00", "1000.00", effective, through) == []


def test_package_change_to_the_same_price_cancels_exactly():
    lines = _change("999.99", "999.99", "2026-12-16", "2027-01-31")
    assert len(lines) == 4
    assert sum(line.amount for line in lines) == 0


def test_package_change_credits_each_period_at_its_own_old_price():
    # November was invoiced at 1000.00, December at 1234.56 (the price was raised in
    # between); from 18 Nov, 13 of November's 30 days and all of December are unused.
    lines = package_change_lines(
        old_name="Home 10",
        old_prices={d("2026-11-01"): D("1000.00"), d("2026-12-01"): D("1234.56")},
        new_name="Home 20",
        new_price=D("1500.00"),
        effective_on=d("2026-11-18"),
        billed_through=d("2026-12-31"),
        anchor_day=1,
        rounding=PAISA,
    )
    assert [(line.kind, line.amount) for line in lines] == [
        (LineKind.PRORATION_CREDIT, D("-433.33")),  # 1000.00 / 30 * 13
        (LineKind.PRORATION_CHARGE, D("650.00")),
        (LineKind.PRORATION_CREDIT, D("-1234.56")),
        (LineKind.PRORATION_CHARGE, D("1500.00")),
    ]


def test_package_change_refuses_a_period_without_an_old_price():
    with pytest.raises(ValueError, match="2026-12-01"):
        package_change_lines(
            old_name="Home 10", old_prices={d("2026-11-01"): D("1000.00")}, new_name="Home 20", new_price=D("1500.00"),
            effective_on=d("2026-11-18"), billed_through=d("2026-12-31"), anchor_day=1, rounding=PAISA,
        )


@pytest.mark.parametrize(
    ("amount", "charged", "expected_price", "credited", "expected_credit"),
    [
        # a whole period's line stands for its own amount
        ("1000.00", ("2026-12-01", "2026-12-31"), Fraction(1000), ("2026-12-16", "2026-12-31"), "-516.13"),
        # joined on 16 Dec: 516.13 for 16 of 31 days; crediting those 16 days gives it all back
        ("516.13", ("2026-12-16", "2026-12-31"), Fraction(51613 * 31, 1600), ("2026-12-16", "2026-12-31"), "-516.13"),
        ("516.13", ("2026-12-16", "2026-12-31"), Fraction(51613 * 31, 1600), ("2026-12-24", "2026-12-31"), "-258.07"),
    ],
)
def test_invoiced_price(amount, charged, expected_price, credited, expected_credit):
    december = Period(d("2026-12-01"), d("2026-12-31"))
    price = invoiced_price(amount=D(amount), charged=Period(d(charged[0]), d(charged[1])), period=december)
    assert price == expected_price
    (credit, _) = package_change_lines(
        old_name="Home 10", old_prices={december.start: price}, new_name="Home 20", new_price=D("0.00"),
        effective_on=d(credited[0]), billed_through=d(credited[1]), anchor_day=1, rounding=PAISA,
    )
    assert credit.amount == D(expected_credit)


# --- used_service_lines -------------------------------------------------------------


def _used(first, last, price="1000.00", anchor=1, rounding=PAISA):
    return used_service_lines(
        package_name="Home 20", price=D(price), first=d(first), last=d(last), anchor_day=anchor, rounding=rounding
    )


@pytest.mark.parametrize(
    ("first", "last", "anchor", "rounding", "expected"),
    [
        ("2026-11-01", "2026-11-30", 1, PAISA, [(LineKind.PLAN, "1000.00")]),
        ("2026-11-16", "2026-11-30", 1, PAISA, [(LineKind.PRORATION_CHARGE, "500.00")]),
        ("2026-11-01", "2026-11-15", 1, PAISA, [(LineKind.PRORATION_CHARGE, "500.00")]),
        ("2026-12-16", "2026-12-31", 1, PAISA, [(LineKind.PRORATION_CHARGE, "516.13")]),
        ("2026-12-16", "2026-12-31", 1, TAKA, [(LineKind.PRORATION_CHARGE, "516.00")]),
        ("2026-12-05", "2026-12-05", 1, PAISA, [(LineKind.PRORATION_CHARGE, "32.26")]),
        (
            "2026-11-16",
            "2027-01-10",
            1,
            PAISA,
            [
                (LineKind.PRORATION_CHARGE, "500.00"),
                (LineKind.PLAN, "1000.00"),
                (LineKind.PRORATION_CHARGE, "322.58"),  # 10 of 31
            ],
        ),
        ("2026-01-31", "2026-02-27", 31, PAISA, [(LineKind.PLAN, "1000.00")]),
        ("2026-11-16", "2026-11-15", 1, PAISA, []),
    ],
)
def test_used_service_table(first, last, anchor, rounding, expected):
    lines = _used(first, last, anchor=anchor, rounding=rounding)
    assert [(line.kind, str(line.amount)) for line in lines] == expected
    assert all(line.description.startswith("Home 20, ") for line in lines)


# --- tax_line -----------------------------------------------------------------------


def _lines(*amounts: str) -> list[Line]:
    return [Line(LineKind.PLAN, "x", D(a)) for a in amounts]


@pytest.mark.parametrize(
    ("amounts", "rate", "rounding", "expected_amount", "expected_label"),
    [
        (("1000.00",), "15", PAISA, "150.00", "VAT 15%"),
        (("1000.00",), "15.00", PAISA, "150.00", "VAT 15%"),
        (("516.13",), "7.5", PAISA, "38.71", "VAT 7.5%"),  # 38.70975
        (("516.13",), "7.5", TAKA, "39.00", "VAT 7.5%"),
        (("500.00", "516.13"), "5", PAISA, "50.81", "VAT 5%"),  # tax on the sum: 50.8065
        (("-250.00", "500.00"), "15", PAISA, "37.50", "VAT 15%"),
        (("0.10",), "5", PAISA, "0.01", "VAT 5%"),  # 0.005: half-up
        (("-0.10",), "5", PAISA, "-0.01", "VAT 5%"),
        (("-100.00",), "15", PAISA, "-15.00", "VAT 15%"),  # a credit carries its tax back
        (("0.01", "0.01", "0.01"), "50", PAISA, "0.02", "VAT 50%"),  # 0.015, rounded once not per line
    ],
)
def test_tax_line_table(amounts, rate, rounding, expected_amount, expected_label):
    line = tax_line(_lines(*amounts), rate_percent=D(rate), name="VAT", rounding=rounding)
    assert line is not None
    assert line.kind is LineKind.TAX
    assert str(line.amount) == expected_amount
    assert line.description == expected_label


@pytest.mark.parametrize(
    ("amounts", "rate", "rounding"),
    [
        (("1000.00",), "0", PAISA),  # no tax configured
        (("1000.00",), "0.00", PAISA),
        ((), "15", PAISA),  # nothing to tax
        (("250.00", "-250.00"), "15", PAISA),
        (("0.09",), "5", PAISA),  # 0.0045 rounds to nothing
        (("9.00",), "5", TAKA),  # 0.45 rounds to nothing
    ],
)
def test_tax_line_absent(amounts, rate, rounding):
    assert tax_line(_lines(*amounts), rate_percent=D(rate), name="VAT", rounding=rounding) is None


# --- helpers ------------------------------------------------------------------------


def test_exact_share_is_exact():
    period = Period(d("2026-12-01"), d("2026-12-31"))
    assert exact_share(D("1000.00"), period, d("2026-12-16"), d("2026-12-31")) == Fraction(16000, 31)
    assert exact_share(D("1000.00"), period, period.start, period.end) == 1000


@pytest.mark.parametrize(
    ("first", "last"),
    [("2026-11-30", "2026-12-31"), ("2026-12-01", "2027-01-01"), ("2026-12-20", "2026-12-10")],
)
def test_exact_share_refuses_a_stretch_outside_its_period(first, last):
    with pytest.raises(ValueError):
        exact_share(D("1000"), Period(d("2026-12-01"), d("2026-12-31")), d(first), d(last))


def test_day_before():
    assert day_before(d("2027-01-01")) == d("2026-12-31")
    assert day_before(d("2028-03-01")) == d("2028-02-29")


# --- properties ---------------------------------------------------------------------


@st.composite
def billed_ranges(draw):
    """(anchor, billed_from, billed_through, effective_on): 1-3 whole billed periods."""
    anchor = draw(anchors)
    start = period_containing(draw(days_), anchor).start
    n_periods = draw(st.integers(min_value=1, max_value=3))
    through = start
    for _ in range(n_periods):
        through = period_containing(through, anchor).end + timedelta(days=1)
    through -= timedelta(days=1)
    offset = draw(st.integers(min_value=0, max_value=(through - start).days))
    return anchor, start, through, start + timedelta(days=offset)


@settings(max_examples=500)
@given(old=prices, new=prices, billed=billed_ranges(), rounding=roundings)
def test_package_change_lines_stay_within_half_a_unit_of_the_exact_amount(old, new, billed, rounding):
    anchor, _, through, effective = billed
    lines = package_change_lines(
        old_name="Old",
        old_prices=same_price_each_period(old, effective, through, anchor),
        new_name="New",
        new_price=new,
        effective_on=effective,
        billed_through=through,
        anchor_day=anchor,
        rounding=rounding,
    )
    stretches = oracle.reference_stretches(effective, through, anchor)
    assert len(lines) == 2 * len(stretches)
    half = HALF_UNIT[rounding]
    total_exact = Fraction(0)
    for (first, last, period_days), credit, charge in zip(stretches, lines[::2], lines[1::2]):
        used = (last - first).days + 1
        exact_credit = -Fraction(old) * used / period_days
        exact_charge = Fraction(new) * used / period_days
        assert credit.kind is LineKind.PRORATION_CREDIT
        assert charge.kind is LineKind.PRORATION_CHARGE
        assert abs(Fraction(credit.amount) - exact_credit) <= half
        assert abs(Fraction(charge.amount) - exact_charge) <= half
        total_exact += exact_credit + exact_charge
    assert abs(Fraction(sum(line.amount for line in lines)) - total_exact) <= half * len(lines)


@given(price=prices, billed=billed_ranges(), rounding=roundings)
def test_same_price_change_nets_to_zero(price, billed, rounding):
    # Symmetric half-up: a credit is exactly the negative of the matching charge.
    anchor, _, through, effective = billed
    lines = package_change_lines(
        old_name="A",
        old_prices=same_price_each_period(price, effective, through, anchor),
        new_name="B",
        new_price=price,
        effective_on=effective,
        billed_through=through,
        anchor_day=anchor,
        rounding=rounding,
    )
    for credit, charge in zip(lines[::2], lines[1::2]):
        assert credit.amount == -charge.amount


@given(price=prices, first=days_, anchor=anchors, rounding=roundings)
def test_service_charge_never_exceeds_the_price(price, first, anchor, rounding):
    period, line = service_charge(package_name="P", price=price, first=first, anchor_day=anchor, rounding=rounding)
    whole = period_containing(first, anchor)
    assert period.start == first and period.end == whole.end
    assert 0 <= line.amount <= round_amount(price, rounding)
    if rounding is PAISA:
        assert line.amount <= price
    exact = Fraction(price) * period.days / whole.days
    assert abs(Fraction(line.amount) - exact) <= HALF_UNIT[rounding]


@given(
    price=prices,
    first=days_,
    length=st.integers(min_value=0, max_value=120),
    anchor=anchors,
    rounding=roundings,
)
def test_used_service_never_exceeds_the_price_per_period(price, first, length, anchor, rounding):
    last = first + timedelta(days=length)
    lines = used_service_lines(package_name="P", price=price, first=first, last=last, anchor_day=anchor, rounding=rounding)
    stretches = oracle.reference_stretches(first, last, anchor)
    assert len(lines) == len(stretches)
    for line, (s, e, period_days) in zip(lines, stretches):
        used = (e - s).days + 1
        assert 0 <= line.amount <= round_amount(price, rounding)
        if rounding is PAISA:
            assert line.amount <= price
        assert abs(Fraction(line.amount) - Fraction(price) * used / period_days) <= HALF_UNIT[rounding]
        assert (line.kind is LineKind.PLAN) == (used == period_days)


@given(price=prices, day=days_, anchor=anchors)
def test_a_full_period_is_charged_exactly_the_price(price, day, anchor):
    period = period_containing(day, anchor)
    _, line = service_charge(package_name="P", price=price, first=period.start, anchor_day=anchor, rounding=PAISA)
    assert line.kind is LineKind.PLAN and line.amount == price
    [used] = used_service_lines(
        package_name="P", price=price, first=period.start, last=period.end, anchor_day=anchor, rounding=PAISA
    )
    assert used.kind is LineKind.PLAN and used.amount == price


@given(taka=st.integers(min_value=0, max_value=100000), day=days_, anchor=anchors)
def test_a_full_period_in_whole_taka_is_charged_exactly_the_price(taka, day, anchor):
    price = D(taka).quantize(D("0.01"))
    period = period_containing(day, anchor)
    _, line = service_charge(package_name="P", price=price, first=period.start, anchor_day=anchor, rounding=TAKA)
    assert line.amount == price


@given(
    amounts=st.lists(st.decimals(min_value=-100000, max_value=100000, places=2, allow_nan=False), max_size=6),
    rate=st.decimals(min_value=D("0.01"), max_value=100, places=2, allow_nan=False),
    rounding=roundings,
)
def test_tax_line_is_the_rounded_exact_tax(amounts, rate, rounding):
    lines = _lines(*(str(a) for a in amounts))
    line = tax_line(lines, rate_percent=rate, name="VAT", rounding=rounding)
    exact = sum((Fraction(a) for a in amounts), Fraction(0)) * Fraction(rate) / 100
    if line is None:
        assert abs(exact) <= HALF_UNIT[rounding]
        return
    assert abs(Fraction(line.amount) - exact) <= HALF_UNIT[rounding]
    assert line.amount != 0
    negated = tax_line(_lines(*(str(-a) for a in amounts)), rate_percent=rate, name="VAT", rounding=rounding)
    assert negated is not None and negated.amount == -line.amount
