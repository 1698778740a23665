"""core/money.py: one rounding rule, paisa conversion, parsing user input."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispbill.core.money import (
    CURRENCY,
    PAISA,
    MoneyError,
    Rounding,
    format_amount,
    from_paisa,
    parse_amount,
    round_amount,
    to_paisa,
)

D = Decimal

# BigIntegerField range: the storage limit for paisa.
BIGINT = 2**63 - 1


def test_defaults():
    assert CURRENCY == "BDT"
    assert PAISA == D("0.01")
    assert Rounding.PAISA.unit == D("0.01")
    assert Rounding.TAKA.unit == D("1")
    assert Rounding("taka") is Rounding.TAKA


# --- round_amount -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rounding", "expected"),
    [
        # paisa: half-up, symmetric (away from zero on a tie)
        (D("1.005"), Rounding.PAISA, "1.01"),
        (D("1.0049999"), Rounding.PAISA, "1.00"),
        (D("-1.005"), Rounding.PAISA, "-1.01"),
        (D("-1.0049999"), Rounding.PAISA, "-1.00"),
        (D("2.675"), Rounding.PAISA, "2.68"),
        (D("0.004"), Rounding.PAISA, "0.00"),
        (D("0.005"), Rounding.PAISA, "0.01"),
        (D("-0.005"), Rounding.PAISA, "-0.01"),
        (D("516.129"), Rounding.PAISA, "516.13"),
        (D("500"), Rounding.PAISA, "500.00"),
        (7, Rounding.PAISA, "7.00"),
        (-7, Rounding.PAISA, "-7.00"),
        # taka: whole taka, half-up, still two places
        (D("0.5"), Rounding.TAKA, "1.00"),
        (D("-0.5"), Rounding.TAKA, "-1.00"),
        (D("0.49"), Rounding.TAKA, "0.00"),
        (D("516.13"), Rounding.TAKA, "516.00"),
        (D("516.50"), Rounding.TAKA, "517.00"),
        (D("-516.50"), Rounding.TAKA, "-517.00"),
        (D("999.4999"), Rounding.TAKA, "999.00"),
        # the rounding may be given as its stored string
        (D("1.005"), "paisa", "1.01"),
        (D("1.5"), "taka", "2.00"),
        # Fractions: exact, including exact ties and repeating decimals
        (Fraction(1000) * 16 / 31, Rounding.PAISA, "516.13"),
        (Fraction(-1000) * 16 / 31, Rounding.PAISA, "-516.13"),
        (Fraction(1, 200), Rounding.PAISA, "0.01"),  # exactly 0.005
        (Fraction(-1, 200), Rounding.PAISA, "-0.01"),
        (Fraction(1, 3), Rounding.PAISA, "0.33"),
        (Fraction(2, 3), Rounding.PAISA, "0.67"),
        (Fraction(1, 2), Rounding.TAKA, "1.00"),
        (Fraction(-1, 2), Rounding.TAKA, "-1.00"),
        (Fraction(1000) * 15 / 31, Rounding.TAKA, "484.00"),  # 483.87...
    ],
)
def test_round_amount_table(value, rounding, expected):
    result = round_amount(value, rounding)
    assert isinstance(result, Decimal)
    assert str(result) == expected  # value *and* exactly two places


def test_round_amount_rejects_float():
    with pytest.raises(MoneyError):
        round_amount(1.005)  # type: ignore[arg-type]


def test_round_amount_rejects_unknown_rounding():
    with pytest.raises(ValueError):
        round_amount(D("1"), "cents")


def test_round_amount_fraction_tie_just_below_and_above():
    # A Fraction within a hair of the tie must not be pushed over it by the
    # Decimal conversion.
    tie = Fraction(1, 200)
    assert round_amount(tie - Fraction(1, 10**40)) == D("0.00")
    assert round_amount(tie + Fraction(1, 10**40)) == D("0.01")


def _half_up_reference(value: Fraction, unit: Fraction) -> Fraction:
    """Independent half-up (away from zero on a tie) on Fractions."""
    sign = -1 if value < 0 else 1
    steps = abs(value) / unit
    whole = int(steps)  # floor, steps >= 0
    if steps - whole >= Fraction(1, 2):
        whole += 1
    return sign * whole * unit


fractions_ = st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**6)


@given(value=fractions_, rounding=st.sampled_from(list(Rounding)))
def test_round_amount_matches_reference(value, rounding):
    unit = Fraction(rounding.unit)
    result = round_amount(value, rounding)
    assert Fraction(result) == _half_up_reference(value, unit)
    assert result.as_tuple().exponent == -2
    assert abs(Fraction(result) - value) <= unit / 2


@given(value=fractions_, rounding=st.sampled_from(list(Rounding)))
def test_round_amount_is_symmetric(value, rounding):
    # A credit is always the exact negative of the matching charge.
    assert round_amount(-value, rounding) == -round_amount(value, rounding)


@given(value=fractions_, rounding=st.sampled_from(list(Rounding)))
def test_round_amount_is_idempotent(value, rounding):
    once = round_amount(value, rounding)
    assert round_amount(once, rounding) == once


@given(a=fractions_, b=fractions_, rounding=st.sampled_from(list(Rounding)))
def test_round_amount_is_monotone(a, b, rounding):
    lo, hi = sorted((a, b))
    assert round_amount(lo, rounding) <= round_amount(hi, rounding)


# --- to_paisa / from_paisa / format_amount ------------------------------------------


@pytest.mark.parametrize(
    ("amount", "paisa"),
    [
        (D("516.13"), 51613),
        (D("500"), 50000),
        (D("500.00"), 50000),
        (D("0.01"), 1),
        (D("0"), 0),
        (D("-0.05"), -5),
        (D("-1000.50"), -100050),
        (D("1.10"), 110),
        (D("1.100"), 110),  # trailing zeros are not extra precision
        (3, 300),
    ],
)
def test_to_paisa(amount, paisa):
    result = to_paisa(amount)
    assert type(result) is int
    assert result == paisa


@pytest.mark.parametrize("amount", [D("1.001"), D("0.005"), D("-516.129"), D("NaN")])
def test_to_paisa_refuses_finer_than_a_paisa(amount):
    with pytest.raises(MoneyError):
        to_paisa(amount)


def test_to_paisa_rejects_float():
    with pytest.raises(MoneyError):
        to_paisa(5.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("paisa", "expected"),
    [(51613, "516.13"), (50000, "500.00"), (1, "0.01"), (0, "0.00"), (-5, "-0.05"), (-100050, "-1000.50")],
)
def test_from_paisa_and_format_amount(paisa, expected):
    assert str(from_paisa(paisa)) == expected
    assert format_amount(paisa) == expected


@given(st.integers(min_value=-BIGINT, max_value=BIGINT))
def test_paisa_round_trip(paisa):
    amount = from_paisa(paisa)
    assert amount.as_tuple().exponent == -2
    assert to_paisa(amount) == paisa
    assert Fraction(amount) == Fraction(paisa, 100)


# --- parse_amount -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500", "500.00"),
        ("500.0", "500.00"),
        ("500.00", "500.00"),
        ("516.13", "516.13"),
        ("0.01", "0.01"),
        ("  516.13\n", "516.13"),  # surrounding whitespace from a form field
        ("0500", "500.00"),
        ("9999999999999.99", "9999999999999.99"),  # 13 integer digits: the limit
        (500, "500.00"),
        (D("516.13"), "516.13"),
        (D("516.1"), "516.10"),
        (D("5E+2"), "500.00"),  # a Decimal's exponent is not the user's text
    ],
)
def test_parse_amount_accepts(value, expected):
    result = parse_amount(value)
    assert isinstance(result, Decimal)
    assert str(result) == expected


@pytest.mark.parametrize(
    "value",
    [
        # floats, whatever their value
        500.0,
        0.1,
        float("nan"),
        float("inf"),
        # more than two decimal places
        "516.129",
        "1.000",
        "0.001",
        D("516.129"),
        D("1.000"),  # even if the extra places are zeros
        # exponents
        "1e3",
        "1E3",
        "5E+2",
        "1.5e2",
        # not finite
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        D("NaN"),
        D("sNaN"),
        D("Infinity"),
        D("-Infinity"),
        # not numbers / malformed
        "",
        "   ",
        "abc",
        "500 taka",
        "Tk 500",
        "5,000",
        "1 000",
        "500.",
        ".5",
        "+500",
        "--5",
        "5-",
        "0x10",
        "1_000",
        "12345678901234",  # 14 integer digits
        None,
        True,
        False,
        [500],
        b"500",
        Fraction(1, 2),
    ],
)
def test_parse_amount_rejects(value):
    with pytest.raises(MoneyError):
        parse_amount(value)


@pytest.mark.parametrize("value", ["0", "0.00", "-0", 0, D("0"), D("0.00")])
def test_parse_amount_zero_needs_allow_zero(value):
    with pytest.raises(MoneyError):
        parse_amount(value)
    assert parse_amount(value, allow_zero=True) == 0


@pytest.mark.parametrize(("value", "expected"), [("-5", "-5.00"), ("-516.13", "-516.13"), (-5, "-5.00"), (D("-0.01"), "-0.01")])
def test_parse_amount_negative_needs_allow_negative(value, expected):
    with pytest.raises(MoneyError):
        parse_amount(value)
    with pytest.raises(MoneyError):
        parse_amount(value, allow_zero=True)
    assert str(parse_amount(value, allow_negative=True)) == expected


def test_parse_amount_allow_negative_still_rejects_zero():
    with pytest.raises(MoneyError):
        parse_amount("0", allow_negative=True)


def test_money_error_is_a_value_error():
    # Callers at the edge catch ValueError to map it to a 4xx.
    assert issubclass(MoneyError, ValueError)


@given(st.integers(min_value=1, max_value=10**15 - 1))
def test_parse_amount_round_trips_formatted_amounts(paisa):
    assert parse_amount(format_amount(paisa)) == from_paisa(paisa)
    assert parse_amount(format_amount(-paisa), allow_negative=True) == from_paisa(-paisa)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_parse_amount_never_accepts_a_float(value):
    with pytest.raises(MoneyError):
        parse_amount(value)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=999),
)
def test_parse_amount_three_decimal_places_always_rejected(whole, frac):
    with pytest.raises(MoneyError):
        parse_amount(f"{whole}.{frac:03d}")
