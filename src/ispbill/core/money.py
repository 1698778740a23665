"""Money: integer paisa in storage, ``Decimal`` in code, one rounding rule.

Every amount that leaves a calculation goes through :func:`round_amount`; nothing in
ispbill rounds money anywhere else. Half-up is applied symmetrically (away from zero on
a tie), so a credit is always the exact negative of the matching charge.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from fractions import Fraction

CURRENCY = "BDT"
PAISA = Decimal("0.01")
_TAKA = Decimal("1")
_AMOUNT_RE = re.compile(r"^-?[0-9]{1,13}(\.[0-9]{1,2})?$")


class Rounding(StrEnum):
    """Rounding unit an ISP bills in."""

    PAISA = "paisa"
    TAKA = "taka"

    @property
    def unit(self) -> Decimal:
        return PAISA if self is Rounding.PAISA else _TAKA


class MoneyError(ValueError):
    """An amount that cannot be money (not a number, too many decimals, a float)."""


def round_amount(value: Decimal | Fraction | int, rounding: Rounding | str = Rounding.PAISA) -> Decimal:
    """Round ``value`` half-up to the ISP's unit; the result always has two places."""
    unit = Rounding(rounding).unit
    if isinstance(value, Fraction):
        with localcontext() as ctx:
            ctx.prec = 60
            value = Decimal(value.numerator) / Decimal(value.denominator)
    elif isinstance(value, float):
        raise MoneyError("float amounts are not accepted")
    return Decimal(value).quantize(unit, rounding=ROUND_HALF_UP).quantize(PAISA)


def to_paisa(amount: Decimal) -> int:
    """Convert a rounded amount to integer paisa; refuses anything finer than a paisa."""
    if isinstance(amount, float):
        raise MoneyError("float amounts are not accepted")
    if not Decimal(amount).is_finite():
        raise MoneyError(f"{amount} is not a finite amount")
    scaled = Decimal(amount) * 100
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more than two decimal places")
    return int(scaled)


def from_paisa(paisa: int) -> Decimal:
    """Integer paisa to a two-place ``Decimal``."""
    return (Decimal(int(paisa)) / 100).quantize(PAISA)


def format_amount(paisa: int) -> str:
    """Paisa as the API's decimal string, e.g. ``51613`` -> ``"516.13"``."""
    return f"{from_paisa(paisa):.2f}"


def format_taka(paisa: int) -> str:
    """Paisa as shown to people: ``৳ 1,234.56`` (a minus sign for negative amounts), exactly."""
    amount = from_paisa(int(paisa))
    sign = "−" if amount < 0 else ""
    return f"{sign}৳ {abs(amount):,.2f}"


def parse_amount(value: object, *, allow_negative: bool = False, allow_zero: bool = False) -> Decimal:
    """Parse user input into a two-place ``Decimal``.

    Accepts strings like ``"500"``, ``"516.13"``, ints and Decimals; rejects floats,
    more than two decimal places, exponents, NaN/Infinity and (unless allowed) zero or
    negative amounts.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("amount must be a decimal string such as \"500.00\"")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError("amount must be a finite number")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MoneyError("amount must be a decimal string such as \"500.00\"")
    if not _AMOUNT_RE.match(text):
        raise MoneyError(f"'{value}' is not an amount with at most two decimal places")
    try:
        amount = Decimal(text).quantize(PAISA)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes this
        raise MoneyError(f"'{value}' is not a number") from exc
    if amount == 0:
        amount = abs(amount)  # "-0" is zero, not a negative amount
    if amount < 0 and not allow_negative:
        raise MoneyError("amount must not be negative")
    if amount == 0 and not allow_zero:
        raise MoneyError("amount must be greater than zero")
    return amount
