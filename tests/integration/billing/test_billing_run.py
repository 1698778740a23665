"""The daily billing run against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing import jobs, ledger
from ispbill.billing.models import Invoice, InvoiceLine, LedgerEntry
from ispbill.subscribers.services import update_subscriber

from .billing_support import (
    assert_ledger_consistent,
    at,
    bill,
    configure,
    invoices_of,
    line_summary,
    make_package,
    make_subscriber,
    refreshed,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def home():
    return make_package("Home 10M", "1000.00")


# -- calendar mode ------------------------------------------------------------------------

def test_calendar_month_is_one_plan_line_at_the_package_price(home):
    sub = make_subscriber(home, date(2026, 11, 1))

    assert bill(date(2026, 10, 24)).issued == 0  # lead window (7 days) not open yet
    result = bill(date(2026, 10, 25))

    assert result.issued == 1
    (inv,) = invoices_of(sub)
    assert inv.number == "INV-2026-000001"
    assert inv.kind == "recurring"
    assert inv.package_id == home.pk
    assert (inv.period_start, inv.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    assert inv.issued_on == date(2026, 10, 25)
    assert inv.issued_at == at(date(2026, 10, 25))
    assert inv.due_on == date(2026, 11, 1)  # due rule: period start + 0 days
    assert (inv.total_paisa, inv.amount_due_paisa, inv.status) == (100000, 100000, "open")
    (line,) = inv.lines.all()
    assert (line.position, line.kind, line.amount_paisa) == (1, "plan", 100000)
    assert line.description == "Home 10M, 01 Nov 2026 – 30 Nov 2026"
    assert refreshed(sub).billed_through == date(2026, 11, 30)
    assert ledger.balance(sub.pk) == 100000
    assert list(LedgerEntry.objects.filter(subscriber=sub).values_list("kind", "amount_paisa", "invoice_id")) == [
        ("invoice", 100000, inv.pk)
    ]
    assert_ledger_consistent()


def test_mid_month_join_is_prorated_from_the_joining_day(home):
    november = make_subscriber(home, date(2026, 11, 16))
    december = make_subscriber(home, date(2026, 12, 16))

    bill(date(2026, 11, 16))
    (nov_inv,) = invoices_of(november)
    assert (nov_inv.period_start, nov_inv.period_end) == (date(2026, 11, 16), date(2026, 11, 30))
    assert line_summary(nov_inv) == [("proration_charge", 50000)]  # 1000.00 / 30 * 15
    assert nov_inv.lines.get().description == "Home 10M, 16 Nov 2026 – 30 Nov 2026 (15 of 30 days)"
    assert nov_inv.due_on == date(2026, 11, 16)

    bill(date(2026, 12, 9))  # lead window for 16 Dec opens on 9 Dec
    (dec_inv,) = invoices_of(december)
    assert (dec_inv.period_start, dec_inv.period_end) == (date(2026, 12, 16), date(2026, 12, 31))
    assert line_summary(dec_inv) == [("proration_charge", 51613)]  # 1000.00 / 31 * 16 = 516.129
    assert dec_inv.total_paisa == 51613
    assert dec_inv.due_on == date(2026, 12, 16)
    # The joiner's next invoice is a whole month.
    bill(date(2026, 12, 25))
    assert [i.total_paisa for i in invoices_of(december)] == [51613, 100000]
    assert invoices_of(december)[1].period_start == date(2027, 1, 1)


# -- anniversary mode ---------------------------------------------------------------------

def test_anniversary_periods_from_31_january_clamp_to_the_end_of_february(home):
    configure(billing_mode="anniversary")
    sub = make_subscriber(home, date(2027, 1, 31))

    bill(date(2027, 1, 31))
    bill(date(2027, 2, 21))  # 28 Feb - 7 days
    bill(date(2027, 3, 24))  # 31 Mar - 7 days
    bill(date(2027, 4, 23))  # 30 Apr - 7 days

    periods = [(i.period_start, i.period_end) for i in invoices_of(sub)]
    assert periods == [
        (date(2027, 1, 31), date(2027, 2, 27)),
        (date(2027, 2, 28), date(2027, 3, 30)),
        (date(2027, 3, 31), date(2027, 4, 29)),
        (date(2027, 4, 30), date(2027, 5, 30)),
    ]
    # Every anniversary period is a whole period: the plan price, never prorated.
    assert [line_summary(i) for i in invoices_of(sub)] == [[("plan", 100000)]] * 4
    assert bill(date(2027, 4, 23)).issued == 0


def test_subscriber_level_anniversary_mode_overrides_the_calendar_default(home):
    sub = make_subscriber(home, date(2026, 11, 15), billing_mode="anniversary")
    calendar_sub = make_subscriber(home, date(2026, 11, 15))

    bill(date(2026, 11, 15))

    (inv,) = invoices_of(sub)
    assert (inv.period_start, inv.period_end) == (date(2026, 11, 15), date(2026, 12, 14))
    assert line_summary(inv) == [("plan", 100000)]
    (cal,) = invoices_of(calendar_sub)
    assert (cal.period_start, cal.period_end) == (date(2026, 11, 15), date(2026, 11, 30))
    assert line_summary(cal) == [("proration_charge", 53333)]  # 1000 / 30 * 16 = 533.33


# -- terms, lead days, due dates, tax -----------------------------------------------------

def test_postpaid_invoice_is_issued_the_day_after_the_period_ends(home):
    configure(payment_terms="postpaid")
    sub = make_subscriber(home, date(2026, 11, 16))

    assert bill(date(2026, 11, 16)).issued == 0
    assert bill(date(2026, 11, 30)).issued == 0
    bill(date(2026, 12, 1))

    (inv,) = invoices_of(sub)
    assert (inv.period_start, inv.period_end, inv.issued_on) == (date(2026, 11, 16), date(2026, 11, 30), date(2026, 12, 1))
    assert line_summary(inv) == [("proration_charge", 50000)]
    assert inv.due_on == date(2026, 12, 1)  # never due before it is issued

    assert bill(date(2026, 12, 31)).issued == 0
    bill(date(2027, 1, 1))
    dec = invoices_of(sub)[1]
    assert (dec.period_start, dec.period_end, dec.issued_on) == (date(2026, 12, 1), date(2026, 12, 31), date(2027, 1, 1))
    assert line_summary(dec) == [("plan", 100000)]
    assert dec.number == "INV-2027-000001"


def test_lead_days_decide_when_the_next_invoice_is_issued(home):
    configure(invoice_lead_days=3)
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    assert len(invoices_of(sub)) == 1

    assert bill(date(2026, 11, 27)).issued == 0
    assert bill(date(2026, 11, 28)).issued == 1  # 1 Dec - 3 days
    assert invoices_of(sub)[1].period_start == date(2026, 12, 1)

    configure(invoice_lead_days=0)
    assert bill(date(2026, 12, 31)).issued == 0
    assert bill(date(2027, 1, 1)).issued == 1


@pytest.mark.parametrize(
    ("due_rule", "due_days", "expected"),
    [
        ("period_start", 0, date(2026, 12, 1)),
        ("period_start", 10, date(2026, 12, 11)),
        ("after_issue", 0, date(2026, 11, 24)),
        ("after_issue", 5, date(2026, 11, 29)),
    ],
)
def test_due_date_follows_the_due_rule(home, due_rule, due_days, expected):
    configure(due_rule=due_rule, due_days=due_days)
    sub = make_subscriber(home, date(2026, 12, 1))

    bill(date(2026, 11, 24))

    (inv,) = invoices_of(sub)
    assert inv.issued_on == date(2026, 11, 24)
    assert inv.due_on == expected


def test_tax_is_one_line_on_the_sum_of_the_charges(home):
    configure(tax_name="VAT", tax_rate=Decimal("5"))
    whole = make_subscriber(home, date(2026, 12, 1))
    joiner = make_subscriber(home, date(2026, 12, 16))

    bill(date(2026, 12, 9))

    (w,) = invoices_of(whole)
    assert line_summary(w) == [("plan", 100000), ("tax", 5000)]
    assert w.lines.get(kind="tax").description == "VAT 5%"
    assert w.total_paisa == w.amount_due_paisa == 105000
    (j,) = invoices_of(joiner)
    assert line_summary(j) == [("proration_charge", 51613), ("tax", 2581)]  # 5% of 516.13 = 25.8065
    assert j.total_paisa == 54194
    assert_ledger_consistent()


# -- subscriber status --------------------------------------------------------------------

def test_suspended_subscribers_are_invoiced_and_disabled_ones_are_not(home):
    active = make_subscriber(home, date(2026, 12, 1))
    suspended = make_subscriber(home, date(2026, 12, 1), status="suspended")
    disabled = make_subscriber(home, date(2026, 12, 1), status="disabled")

    assert bill(date(2026, 11, 24)).issued == 2

    assert len(invoices_of(active)) == 1
    assert len(invoices_of(suspended)) == 1
    assert invoices_of(disabled) == []
    assert refreshed(disabled).billed_through is None


def test_reenabled_subscriber_is_billed_from_the_reenable_day_not_for_disabled_months(home):
    sub = make_subscriber(home, date(2026, 10, 1))
    bill(date(2026, 10, 1))
    update_subscriber(subscriber_id=sub.pk, today=date(2026, 10, 20), status="disabled")

    for day in (date(2026, 10, 25), date(2026, 11, 24), date(2026, 12, 25), date(2027, 1, 10)):
        assert bill(day).issued == 0

    update_subscriber(subscriber_id=sub.pk, today=date(2027, 1, 15), status="active")
    assert refreshed(sub).billed_through == date(2027, 1, 14)
    bill(date(2027, 1, 15))

    oct_inv, jan_inv = invoices_of(sub)
    assert (oct_inv.period_start, oct_inv.period_end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert (jan_inv.period_start, jan_inv.period_end) == (date(2027, 1, 15), date(2027, 1, 31))
    assert line_summary(jan_inv) == [("proration_charge", 54839)]  # 1000 / 31 * 17 = 548.387
    bill(date(2027, 1, 25))
    assert invoices_of(sub)[-1].period_start == date(2027, 2, 1)
    assert len(invoices_of(sub)) == 3


def test_subscriber_several_periods_behind_gets_one_invoice_per_period(home):
    sub = make_subscriber(home, date(2026, 8, 1))
    other = make_subscriber(home, date(2026, 11, 10))

    result = bill(date(2026, 11, 25))

    assert result.issued == 7  # Aug, Sep, Oct, Nov, Dec for `sub`; 10-30 Nov and Dec for `other`
    periods = [(i.period_start, i.period_end) for i in invoices_of(sub)]
    assert periods == [
        (date(2026, 8, 1), date(2026, 8, 31)),
        (date(2026, 9, 1), date(2026, 9, 30)),
        (date(2026, 10, 1), date(2026, 10, 31)),
        (date(2026, 11, 1), date(2026, 11, 30)),
        (date(2026, 12, 1), date(2026, 12, 31)),
    ]
    assert all(line_summary(i) == [("plan", 100000)] for i in invoices_of(sub))
    assert [line_summary(i) for i in invoices_of(other)] == [[("proration_charge", 70000)], [("plan", 100000)]]
    assert ledger.balance(sub.pk) == 500000
    assert refreshed(sub).billed_through == date(2026, 12, 31)
    assert_ledger_consistent()


# -- numbering and idempotence ------------------------------------------------------------

def test_invoice_numbers_are_gapless_and_restart_each_year(home):
    subs = [make_subscriber(home, date(2026, 12, 1)) for _ in range(3)]

    bill(date(2026, 11, 24))  # December invoices
    bill(date(2026, 12, 25))  # January invoices, still issued in 2026
    bill(date(2027, 1, 25))  # February invoices, issued in 2027

    numbers = list(Invoice.objects.order_by("id").values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 7)] + [f"INV-2027-{n:06d}" for n in range(1, 4)]
    feb = [invoices_of(s)[-1] for s in subs]
    assert {i.number for i in feb} == {"INV-2027-000001", "INV-2027-000002", "INV-2027-000003"}
    assert all(i.period_start == date(2027, 2, 1) for i in feb)


def test_running_twice_issues_nothing_the_second_time(home):
    for day in (date(2026, 11, 1), date(2026, 11, 16), date(2026, 12, 1)):
        make_subscriber(home, day)
    make_subscriber(home, date(2026, 9, 1))

    first = bill(date(2026, 11, 25))
    counts = (Invoice.objects.count(), InvoiceLine.objects.count(), LedgerEntry.objects.count())
    second = bill(date(2026, 11, 25))
    earlier = bill(date(2026, 11, 20))

    assert first.issued == 9  # Sep-Dec (4) + Nov, Dec (2) + 16-30 Nov, Dec (2) + Dec (1)
    assert second.issued == 0
    assert earlier.issued == 0
    assert (Invoice.objects.count(), InvoiceLine.objects.count(), LedgerEntry.objects.count()) == counts
    assert bill(date(2026, 11, 26)).issued == 0


# -- time zone ----------------------------------------------------------------------------

def test_billing_job_takes_the_date_from_dhaka_local_time(home):
    """00:30 in Dhaka on 24 Nov is 18:30 UTC on 23 Nov: the lead window is open in Dhaka."""
    sub = make_subscriber(home, date(2026, 12, 1))

    before = at(date(2026, 11, 23), 23, 30)  # 17:30 UTC, 23 Nov
    after = at(date(2026, 11, 24), 0, 30)  # 18:30 UTC, 23 Nov
    assert (before.day, before.hour, after.day, after.hour) == (23, 17, 23, 18)

    assert jobs.billing_run(before).startswith("2026-11-23")  # the job's date is Dhaka's
    assert invoices_of(sub) == []

    assert jobs.billing_run(after).startswith("2026-11-24")
    (inv,) = invoices_of(sub)
    assert inv.issued_on == date(2026, 11, 24)
    assert inv.issued_at == after
    assert inv.period_start == date(2026, 12, 1)
