"""When an invoice is issued and when it falls due (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from ispbill.billing.periods import BillingMode, Period, anchor_day_for, period_containing
from ispbill.core.money import Rounding


class PaymentTerms(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class DueRule(StrEnum):
    PERIOD_START = "period_start"  # due `due_days` after the billed stretch starts
    AFTER_ISSUE = "after_issue"  # due `due_days` after the invoice is issued


@dataclass(frozen=True, slots=True)
class BillingPolicy:
    mode: BillingMode = BillingMode.CALENDAR
    billing_day: int = 1
    terms: PaymentTerms = PaymentTerms.PREPAID
    invoice_lead_days: int = 7
    due_rule: DueRule = DueRule.PERIOD_START
    due_days: int = 0
    grace_days: int = 3
    rounding: Rounding = Rounding.PAISA
    tax_rate: Decimal = Decimal(0)
    tax_name: str = "VAT"

    def anchor_day(self, *, activated_on: date, mode: BillingMode | str | None = None) -> int:
        return anchor_day_for(mode or self.mode, billing_day=self.billing_day, activated_on=activated_on)


@dataclass(frozen=True, slots=True)
class NextInvoice:
    coverage: Period  # the days this invoice bills
    issue_on: date  # first date on which it may be issued


def next_invoice(policy: BillingPolicy, *, billed_through: date | None, activated_on: date, anchor_day: int) -> NextInvoice:
    """The next recurring invoice after ``billed_through`` and when to issue it."""
    first = activated_on if billed_through is None or billed_through < activated_on else billed_through + timedelta(days=1)
    period = period_containing(first, anchor_day)
    coverage = Period(first, period.end)
    if policy.terms is PaymentTerms.PREPAID:
        issue_on = first - timedelta(days=policy.invoice_lead_days)
    else:
        issue_on = period.end + timedelta(days=1)
    return NextInvoice(coverage, issue_on)


def due_on(policy: BillingPolicy, *, coverage_start: date, issued_on: date) -> date:
    base = coverage_start if policy.due_rule is DueRule.PERIOD_START else issued_on
    return max(issued_on, base + timedelta(days=policy.due_days))


def latest_candidate_billed_through(policy: BillingPolicy, today: date) -> date:
    """An upper bound on ``billed_through`` for subscribers who may need an invoice today.

    Prepaid: exact (next stretch starts within the lead days). Postpaid: a superset that
    the caller narrows with :func:`next_invoice`.
    """
    if policy.terms is PaymentTerms.PREPAID:
        return today + timedelta(days=policy.invoice_lead_days - 1)
    return today - timedelta(days=2)
