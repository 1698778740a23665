"""Charges for a stretch of service (pure).

``price / days_in_period * days_used``, days counted inclusively, rounded once per line
with the one rule in :mod:`ispbill.core.money`. A whole period is charged exactly the
package price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from ispbill.billing.periods import Period, period_containing, periods_between
from ispbill.core.money import Rounding, round_amount


class LineKind(StrEnum):
    PLAN = "plan"
    PRORATION_CHARGE = "proration_charge"
    PRORATION_CREDIT = "proration_credit"
    ADJUSTMENT = "adjustment"
    TAX = "tax"


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    description: str
    amount: Decimal  # positive: the subscriber owes; negative: a credit


def exact_share(price: Decimal | Fraction, period: Period, first: date, last: date) -> Fraction:
    """The unrounded charge for [first, last] inside ``period``."""
    if not (period.start <= first <= last <= period.end):
        raise ValueError("the charged stretch must lie inside the period")
    days = (last - first).days + 1
    return Fraction(price) * days / period.days


def _span(first: date, last: date) -> str:
    return f"{first:%d %b %Y} – {last:%d %b %Y}"


def service_charge(
    *, package_name: str, price: Decimal, first: date, anchor_day: int, rounding: Rounding
) -> tuple[Period, Line]:
    """The line for service from ``first`` to the end of its period.

    A stretch that starts on the period's first day is the plan charge; any later start
    (a mid-period join or a reconnection after being disabled) is prorated.
    """
    period = period_containing(first, anchor_day)
    if first == period.start:
        return period, Line(LineKind.PLAN, f"{package_name}, {_span(period.start, period.end)}", round_amount(price, rounding))
    used = (period.end - first).days + 1
    amount = round_amount(exact_share(price, period, first, period.end), rounding)
    desc = f"{package_name}, {_span(first, period.end)} ({used} of {period.days} days)"
    return Period(first, period.end), Line(LineKind.PRORATION_CHARGE, desc, amount)


def invoiced_price(*, amount: Decimal, charged: Period, period: Period) -> Fraction:
    """The price for ``period`` behind an invoice line that charged ``amount`` for the
    days of ``charged``.

    A line for the whole period stands for its own amount; a prorated one (a mid-period
    join) for its amount per charged day times the period's days, so crediting every
    day it charged gives back exactly ``amount``.
    """
    return Fraction(amount) * period.days / charged.days


def package_change_lines(
    *,
    old_name: str,
    old_prices: Mapping[date, Decimal | Fraction],
    new_name: str,
    new_price: Decimal,
    effective_on: date,
    billed_through: date,
    anchor_day: int,
    rounding: Rounding,
    not_charged: tuple[Period, ...] = (),
) -> list[Line]:
    """Credit the old package and charge the new one for already-billed days.

    Covers every day from ``effective_on`` to ``billed_through`` (a prepaid subscriber
    may already hold next period's invoice), one credit and one charge line per period.
    Each period's unused days are credited at ``old_prices[period start]``, the price
    the subscriber was charged for the old package in that period (see
    :func:`invoiced_price`); the new package is charged at ``new_price``. Stretches
    inside ``not_charged`` (periods whose invoice was voided) are skipped: nothing was
    charged there, so nothing is credited or charged.
    """
    lines: list[Line] = []
    if effective_on > billed_through:
        return lines
    for stretch in periods_between(effective_on, billed_through, anchor_day):
        if any(p.start <= stretch.start and stretch.end <= p.end for p in not_charged):
            continue
        period = period_containing(stretch.start, anchor_day)
        if period.start not in old_prices:
            raise ValueError(f"no old price for the period starting {period.start}")
        used = stretch.days
        span = f"{_span(stretch.start, stretch.end)} ({used} of {period.days} days)"
        credit = round_amount(-exact_share(old_prices[period.start], period, stretch.start, stretch.end), rounding)
        charge = round_amount(exact_share(new_price, period, stretch.start, stretch.end), rounding)
        lines.append(Line(LineKind.PRORATION_CREDIT, f"Unused {old_name}, {span}", credit))
        lines.append(Line(LineKind.PRORATION_CHARGE, f"{new_name}, {span}", charge))
    return lines


def used_service_lines(
    *, package_name: str, price: Decimal, first: date, last: date, anchor_day: int, rounding: Rounding
) -> list[Line]:
    """Charges for service already used in [first, last] (postpaid catch-up)."""
    lines = []
    for stretch in periods_between(first, last, anchor_day):
        period = period_containing(stretch.start, anchor_day)
        if stretch == period:
            lines.append(Line(LineKind.PLAN, f"{package_name}, {_span(period.start, period.end)}", round_amount(price, rounding)))
        else:
            amount = round_amount(exact_share(price, period, stretch.start, stretch.end), rounding)
            desc = f"{package_name}, {_span(stretch.start, stretch.end)} ({stretch.days} of {period.days} days)"
            lines.append(Line(LineKind.PRORATION_CHARGE, desc, amount))
    return lines


def tax_line(lines: list[Line], *, rate_percent: Decimal, name: str, rounding: Rounding) -> Line | None:
    """Tax on the sum of ``lines``, rounded once; ``None`` when no tax is configured."""
    if not rate_percent:
        return None
    base = sum((line.amount for line in lines), Decimal(0))
    amount = round_amount(Fraction(base) * Fraction(rate_percent) / 100, rounding)
    if amount == 0:
        return None
    return Line(LineKind.TAX, f"{name} {rate_percent.normalize():f}%", amount)


def day_before(day: date) -> date:
    return day - timedelta(days=1)
