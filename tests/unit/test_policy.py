"""billing/policy.py: what the next invoice covers, when it is issued and falls due."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispbill.billing.periods import BillingMode, Period, period_containing
from ispbill.billing.policy import (
    BillingPolicy,
    DueRule,
    PaymentTerms,
    due_on,
    latest_candidate_billed_through,
    next_invoice,
)
from ispbill.core.money import Rounding

from . import oracle

PREPAID, POSTPAID = PaymentTerms.PREPAID, PaymentTerms.POSTPAID
ONE_DAY = timedelta(days=1)

days_ = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
anchors = st.integers(min_value=1, max_value=31)
lead_days = st.integers(min_value=0, max_value=31)


def d(iso: str) -> date:
    return date.fromisoformat(iso)


def test_defaults():
    p = BillingPolicy()
    assert p.mode is BillingMode.CALENDAR
    assert p.billing_day == 1
    assert p.terms is PREPAID
    assert p.invoice_lead_days == 7
    assert p.due_rule is DueRule.PERIOD_START
    assert p.due_days == 0
    assert p.grace_days == 3
    assert p.rounding is Rounding.PAISA
    assert p.tax_rate == 0


@pytest.mark.parametrize(
    ("policy", "activated_on", "mode", "expected"),
    [
        (BillingPolicy(), "2026-11-16", None, 1),
        (BillingPolicy(billing_day=10), "2026-11-16", None, 10),
        (BillingPolicy(mode=BillingMode.ANNIVERSARY), "2026-11-16", None, 16),
        (BillingPolicy(mode=BillingMode.ANNIVERSARY), "2028-02-29", None, 29),
        # a per-subscriber mode overrides the ISP's
        (BillingPolicy(), "2026-11-16", BillingMode.ANNIVERSARY, 16),
        (BillingPolicy(mode=BillingMode.ANNIVERSARY, billing_day=5), "2026-11-16", "calendar", 5),
    ],
)
def test_anchor_day(policy, activated_on, mode, expected):
    assert policy.anchor_day(activated_on=d(activated_on), mode=mode) == expected


# --- next_invoice -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "lead", "billed_through", "activated_on", "anchor", "coverage", "issue_on"),
    [
        # prepaid: the first invoice covers activation to period end
        (PREPAID, 7, None, "2026-11-16", 1, ("2026-11-16", "2026-11-30"), "2026-11-09"),
        (PREPAID, 7, None, "2026-11-01", 1, ("2026-11-01", "2026-11-30"), "2026-10-25"),
        # then whole periods, issued lead days ahead
        (PREPAID, 7, "2026-11-30", "2026-11-16", 1, ("2026-12-01", "2026-12-31"), "2026-11-24"),
        (PREPAID, 0, "2026-11-30", "2026-11-16", 1, ("2026-12-01", "2026-12-31"), "2026-12-01"),
        (PREPAID, 10, "2026-12-31", "2026-11-16", 1, ("2027-01-01", "2027-01-31"), "2026-12-22"),
        # billed through a day inside a period: the rest of that period
        (PREPAID, 7, "2026-11-20", "2026-11-01", 1, ("2026-11-21", "2026-11-30"), "2026-11-14"),
        # billed_through before (re)activation: start from activation
        (PREPAID, 7, "2026-10-31", "2026-11-16", 1, ("2026-11-16", "2026-11-30"), "2026-11-09"),
        # anniversary anchor 31: the clamped February period
        (PREPAID, 7, "2026-01-30", "2025-12-31", 31, ("2026-01-31", "2026-02-27"), "2026-01-24"),
        (PREPAID, 7, "2026-02-27", "2025-12-31", 31, ("2026-02-28", "2026-03-30"), "2026-02-21"),
        # postpaid: issued the day after the covered stretch ends
        (POSTPAID, 7, None, "2026-11-16", 1, ("2026-11-16", "2026-11-30"), "2026-12-01"),
        (POSTPAID, 7, "2026-11-30", "2026-11-16", 1, ("2026-12-01", "2026-12-31"), "2027-01-01"),
        (POSTPAID, 0, "2026-11-20", "2026-11-01", 1, ("2026-11-21", "2026-11-30"), "2026-12-01"),
        (POSTPAID, 7, "2026-11-14", "2026-10-15", 15, ("2026-11-15", "2026-12-14"), "2026-12-15"),
    ],
)
def test_next_invoice_table(terms, lead, billed_through, activated_on, anchor, coverage, issue_on):
    policy = BillingPolicy(terms=terms, invoice_lead_days=lead)
    result = next_invoice(
        policy,
        billed_through=d(billed_through) if billed_through else None,
        activated_on=d(activated_on),
        anchor_day=anchor,
    )
    assert result.coverage == Period(d(coverage[0]), d(coverage[1]))
    assert result.issue_on == d(issue_on)


@given(
    terms=st.sampled_from(list(PaymentTerms)),
    lead=lead_days,
    activated_on=days_,
    anchor=anchors,
    n=st.integers(min_value=1, max_value=15),
)
def test_successive_invoices_leave_no_gap_and_no_overlap(terms, lead, activated_on, anchor, n):
    policy = BillingPolicy(terms=terms, invoice_lead_days=lead)
    billed_through = None
    expected_start = activated_on
    for i in range(n):
        inv = next_invoice(policy, billed_through=billed_through, activated_on=activated_on, anchor_day=anchor)
        assert inv.coverage.start == expected_start
        period_start, period_end = oracle.reference_period(inv.coverage.start, anchor)
        assert inv.coverage.end == period_end  # never crosses a period boundary
        if i > 0:
            assert inv.coverage.start == period_start  # after the first, whole periods
        if terms is PREPAID:
            assert inv.issue_on == inv.coverage.start - timedelta(days=lead)
        else:
            assert inv.issue_on == inv.coverage.end + ONE_DAY
        billed_through = inv.coverage.end
        expected_start = billed_through + ONE_DAY


# --- due_on -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "due_days", "coverage_start", "issued_on", "expected"),
    [
        # prepaid, due when the period starts
        (DueRule.PERIOD_START, 0, "2026-12-01", "2026-11-24", "2026-12-01"),
        (DueRule.PERIOD_START, 5, "2026-12-01", "2026-11-24", "2026-12-06"),
        # postpaid with PERIOD_START: the start is long past; never due before issue
        (DueRule.PERIOD_START, 5, "2026-12-01", "2027-01-01", "2027-01-01"),
        (DueRule.PERIOD_START, 45, "2026-12-01", "2027-01-01", "2027-01-15"),
        # an invoice issued late (a first invoice on activation day)
        (DueRule.PERIOD_START, 0, "2026-11-16", "2026-11-20", "2026-11-20"),
        # AFTER_ISSUE counts from the issue date, whatever the coverage
        (DueRule.AFTER_ISSUE, 7, "2026-12-01", "2026-11-24", "2026-12-01"),
        (DueRule.AFTER_ISSUE, 0, "2026-12-01", "2026-11-24", "2026-11-24"),
        (DueRule.AFTER_ISSUE, 10, "2026-12-01", "2027-01-01", "2027-01-11"),
        (DueRule.AFTER_ISSUE, 3, "2026-12-01", "2026-12-30", "2027-01-02"),
    ],
)
def test_due_on_table(rule, due_days, coverage_start, issued_on, expected):
    policy = BillingPolicy(due_rule=rule, due_days=due_days)
    assert due_on(policy, coverage_start=d(coverage_start), issued_on=d(issued_on)) == d(expected)


@given(
    rule=st.sampled_from(list(DueRule)),
    due_days=st.integers(min_value=0, max_value=60),
    coverage_start=days_,
    issue_offset=st.integers(min_value=-60, max_value=60),
)
def test_due_on_is_never_before_issue(rule, due_days, coverage_start, issue_offset):
    issued_on = coverage_start + timedelta(days=issue_offset)
    policy = BillingPolicy(due_rule=rule, due_days=due_days)
    result = due_on(policy, coverage_start=coverage_start, issued_on=issued_on)
    base = coverage_start if rule is DueRule.PERIOD_START else issued_on
    assert result >= issued_on
    assert result == max(issued_on, base + timedelta(days=due_days))


# --- latest_candidate_billed_through ------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "lead", "today", "expected"),
    [
        (PREPAID, 7, "2026-11-24", "2026-11-30"),  # December's invoice is due to be issued
        (PREPAID, 0, "2026-12-01", "2026-11-30"),
        (PREPAID, 1, "2026-12-01", "2026-12-01"),
        (POSTPAID, 7, "2027-01-01", "2026-12-30"),
    ],
)
def test_latest_candidate_billed_through_table(terms, lead, today, expected):
    policy = BillingPolicy(terms=terms, invoice_lead_days=lead)
    assert latest_candidate_billed_through(policy, d(today)) == d(expected)


def test_postpaid_bound_is_tight():
    # A one-day stretch billed through its day before the period end is issued the day
    # after the period ends: billed_through == today - 2, exactly the bound.
    policy = BillingPolicy(terms=POSTPAID)
    inv = next_invoice(policy, billed_through=d("2026-11-29"), activated_on=d("2026-11-01"), anchor_day=1)
    assert inv.coverage == Period(d("2026-11-30"), d("2026-11-30"))
    assert inv.issue_on == d("2026-12-01")
    assert latest_candidate_billed_through(policy, inv.issue_on) == d("2026-11-29")


@given(
    terms=st.sampled_from(list(PaymentTerms)),
    lead=lead_days,
    activated_on=days_,
    billed_offset=st.integers(min_value=-40, max_value=400),
    today_offset=st.integers(min_value=-60, max_value=60),
    anchor=anchors,
)
def test_latest_candidate_billed_through_is_an_upper_bound(terms, lead, activated_on, billed_offset, today_offset, anchor):
    """Nobody whose next invoice may be issued today is left out by the bound."""
    policy = BillingPolicy(terms=terms, invoice_lead_days=lead)
    billed_through = activated_on + timedelta(days=billed_offset)
    inv = next_invoice(policy, billed_through=billed_through, activated_on=activated_on, anchor_day=anchor)
    today = inv.issue_on + timedelta(days=today_offset)
    bound = latest_candidate_billed_through(policy, today)
    if inv.issue_on <= today:
        assert billed_through <= bound
    # Prepaid, with billing under way, the bound is exact: nobody beyond it is due.
    if terms is PREPAID and billed_through >= activated_on:
        assert (inv.issue_on <= today) == (billed_through <= bound)


@given(
    terms=st.sampled_from(list(PaymentTerms)),
    lead=lead_days,
    day=days_,
    anchor=anchors,
)
def test_bound_admits_the_subscriber_on_their_issue_day(terms, lead, day, anchor):
    # Billed through the end of the period containing `day`: on the issue day of the
    # next invoice, the subscriber is a candidate.
    policy = BillingPolicy(terms=terms, invoice_lead_days=lead)
    billed_through = period_containing(day, anchor).end
    activated_on = billed_through - timedelta(days=40)
    inv = next_invoice(policy, billed_through=billed_through, activated_on=activated_on, anchor_day=anchor)
    assert billed_through <= latest_candidate_billed_through(policy, inv.issue_on)
    if terms is PREPAID:
        # and not the day before
        assert billed_through > latest_candidate_billed_through(policy, inv.issue_on - ONE_DAY)
