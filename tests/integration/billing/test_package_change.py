"""Package changes through the service: upgrade, downgrade, preview, scheduling, refusals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing import jobs, ledger
from ispbill.billing.models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    NumberSequence,
    PackageChange,
)
from ispbill.billing.services import apply_scheduled_package_changes, change_package
from ispbill.core.errors import DomainError, NotFound
from ispbill.payments.services import record_payment
from ispbill.plans.services import update_package
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

NOV_16 = date(2026, 11, 16)


@pytest.fixture
def basic():
    return make_package("Basic", "1000.00")


@pytest.fixture
def premium():
    return make_package("Premium", "1500.00")


def change(sub, package, effective_on, today=None, preview=False):
    today = today or effective_on
    return change_package(
        subscriber_id=sub.pk, package_id=package.pk, effective_on=effective_on, preview=preview, today=today, now=at(today)
    )


def lines_of(outcome) -> list[tuple[str, str, Decimal]]:
    return [(str(line.kind), line.description, line.amount) for line in outcome.lines]


def row_counts() -> dict[str, int]:
    models = (Invoice, InvoiceLine, CreditNote, CreditNoteLine, LedgerEntry, PackageChange, NumberSequence)
    return {m.__name__: m.objects.count() for m in models}


def test_upgrade_mid_period_invoices_the_difference(basic, premium):
    configure(due_days=5)
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    outcome = change(sub, premium, NOV_16)

    assert outcome.document == "invoice"
    assert lines_of(outcome) == [
        ("proration_credit", "Unused Basic, 16 Nov 2026 – 30 Nov 2026 (15 of 30 days)", Decimal("-500.00")),
        ("proration_charge", "Premium, 16 Nov 2026 – 30 Nov 2026 (15 of 30 days)", Decimal("750.00")),
    ]
    assert outcome.total == Decimal("250.00")
    inv = outcome.invoice
    assert inv.number == "INV-2026-000002"
    assert inv.kind == "adjustment"
    assert inv.package_id == premium.pk
    assert (inv.period_start, inv.period_end, inv.issued_on) == (NOV_16, date(2026, 11, 30), NOV_16)
    assert inv.due_on == date(2026, 11, 21)  # period start + 5 days
    assert (inv.total_paisa, inv.amount_due_paisa, inv.status) == (25000, 25000, "open")
    assert list(inv.lines.values_list("position", "kind", "amount_paisa")) == [
        (1, "proration_credit", -50000),
        (2, "proration_charge", 75000),
    ]
    after = refreshed(sub)
    assert after.package_id == premium.pk
    assert after.billed_through == date(2026, 11, 30)
    pc = PackageChange.objects.get()
    assert (pc.old_package_id, pc.new_package_id, pc.effective_on, pc.invoice_id) == (basic.pk, premium.pk, NOV_16, inv.pk)
    assert pc.applied_at == at(NOV_16)
    assert ledger.balance(sub.pk) == 125000

    bill(date(2026, 11, 24))
    dec = invoices_of(sub)[-1]
    assert (dec.period_start, dec.total_paisa, dec.package_id) == (date(2026, 12, 1), 150000, premium.pk)
    assert_ledger_consistent()


def test_upgrade_after_next_period_is_invoiced_covers_both_periods(basic, premium):
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    bill(date(2026, 11, 24))  # December already invoiced at the old price

    outcome = change(sub, premium, date(2026, 11, 25))

    assert [(k, a) for k, _, a in lines_of(outcome)] == [
        ("proration_credit", Decimal("-200.00")),
        ("proration_charge", Decimal("300.00")),
        ("proration_credit", Decimal("-1000.00")),
        ("proration_charge", Decimal("1500.00")),
    ]
    assert outcome.total == Decimal("600.00")
    assert (outcome.invoice.period_start, outcome.invoice.period_end) == (date(2026, 11, 25), date(2026, 12, 31))
    assert refreshed(sub).billed_through == date(2026, 12, 31)
    assert bill(date(2026, 11, 25)).issued == 0
    assert_ledger_consistent()


def test_upgrade_with_tax_adds_a_tax_line_on_the_difference(basic, premium):
    configure(tax_rate=Decimal("5"))
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    outcome = change(sub, premium, NOV_16)

    assert [(k, a) for k, _, a in lines_of(outcome)] == [
        ("proration_credit", Decimal("-500.00")),
        ("proration_charge", Decimal("750.00")),
        ("tax", Decimal("12.50")),
    ]
    assert outcome.invoice.total_paisa == 26250


def test_downgrade_issues_a_credit_note_and_the_credit_pays_the_next_invoice(basic, premium):
    sub = make_subscriber(premium, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    record_payment(subscriber_id=sub.pk, amount=Decimal("1500.00"), method="cash", received_at=at(date(2026, 11, 2)))

    outcome = change(sub, basic, NOV_16)

    assert outcome.document == "credit_note"
    assert outcome.invoice is None
    assert outcome.total == Decimal("-250.00")
    note = outcome.credit_note
    assert note.number == "CN-2026-000001"
    assert note.total_paisa == 25000
    assert note.invoice_id is None
    assert note.reason == "Package change to Basic"
    assert list(note.lines.values_list("kind", "amount_paisa")) == [("proration_credit", -75000), ("proration_charge", 50000)]
    assert Invoice.objects.count() == 1  # no invoice for a downgrade
    assert refreshed(sub).package_id == basic.pk
    assert ledger.unapplied_credit(sub.pk) == 25000
    assert ledger.balance(sub.pk) == -25000

    bill(date(2026, 11, 24))

    dec = invoices_of(sub)[-1]
    assert (dec.total_paisa, dec.amount_due_paisa, dec.status) == (100000, 75000, "partially_paid")
    assert ledger.unapplied_credit(sub.pk) == 0
    assert_ledger_consistent()


def test_downgrade_credit_goes_to_an_unpaid_invoice_first(basic, premium):
    sub = make_subscriber(premium, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    change(sub, basic, NOV_16)

    (nov,) = invoices_of(sub)
    assert (nov.amount_due_paisa, nov.status) == (125000, "partially_paid")
    assert ledger.unapplied_credit(sub.pk) == 0
    assert_ledger_consistent()


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_preview_returns_the_same_lines_and_writes_nothing(basic, premium, direction):
    old, new = (basic, premium) if direction == "upgrade" else (premium, basic)
    sub = make_subscriber(old, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    bill(date(2026, 11, 24))
    before = row_counts()
    sub_before = refreshed(sub)

    preview = change(sub, new, NOV_16, today=date(2026, 11, 25), preview=True)

    assert row_counts() == before
    sub_after = refreshed(sub)
    assert (sub_after.package_id, sub_after.billed_through) == (sub_before.package_id, sub_before.billed_through)
    assert preview.invoice is None and preview.credit_note is None and preview.change is None

    real = change(sub, new, NOV_16, today=date(2026, 11, 25))

    assert lines_of(preview) == lines_of(real)
    assert preview.total == real.total
    assert preview.document == real.document == ("invoice" if direction == "upgrade" else "credit_note")
    assert len(preview.lines) == 4


def test_future_change_is_scheduled_and_applied_on_its_day(basic, premium):
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    first = change(sub, premium, date(2026, 12, 5), today=date(2026, 11, 20))
    outcome = change(sub, premium, date(2026, 12, 1), today=date(2026, 11, 20))  # replaces the first

    assert first.document == outcome.document == "scheduled"
    assert outcome.invoice is None and outcome.credit_note is None
    pending = PackageChange.objects.get()
    assert (pending.effective_on, pending.applied_at, pending.new_package_id) == (date(2026, 12, 1), None, premium.pk)
    assert refreshed(sub).package_id == basic.pk

    bill(date(2026, 11, 24))  # December is invoiced at the price of the package in force
    assert invoices_of(sub)[-1].total_paisa == 100000
    assert apply_scheduled_package_changes(today=date(2026, 11, 30), now=at(date(2026, 11, 30))) == 0
    assert refreshed(sub).package_id == basic.pk

    jobs.billing_run(at(date(2026, 12, 1), 0, 30))  # applies today's changes, then bills

    assert refreshed(sub).package_id == premium.pk
    pending.refresh_from_db()
    assert pending.applied_at == at(date(2026, 12, 1), 0, 30)
    adj = Invoice.objects.get(kind="adjustment")
    assert pending.invoice_id == adj.pk
    assert list(adj.lines.values_list("kind", "amount_paisa")) == [("proration_credit", -100000), ("proration_charge", 150000)]
    assert (adj.period_start, adj.period_end, adj.issued_on) == (date(2026, 12, 1), date(2026, 12, 31), date(2026, 12, 1))
    # Applying again is a no-op; January is billed at the new price.
    assert apply_scheduled_package_changes(today=date(2026, 12, 2), now=at(date(2026, 12, 2))) == 0
    bill(date(2026, 12, 25))
    assert invoices_of(sub)[-1].total_paisa == 150000
    assert_ledger_consistent()


def test_postpaid_change_bills_the_used_days_at_the_old_price(basic, premium):
    configure(payment_terms="postpaid")
    sub = make_subscriber(basic, date(2026, 11, 1))

    outcome = change(sub, premium, NOV_16)

    assert outcome.document == "invoice"
    assert [(k, a) for k, _, a in lines_of(outcome)] == [("proration_charge", Decimal("500.00"))]
    assert (outcome.invoice.period_start, outcome.invoice.period_end) == (date(2026, 11, 1), date(2026, 11, 15))
    assert refreshed(sub).billed_through == date(2026, 11, 15)

    bill(date(2026, 12, 1))
    nov_rest = invoices_of(sub)[-1]
    assert (nov_rest.period_start, nov_rest.period_end, nov_rest.total_paisa) == (NOV_16, date(2026, 11, 30), 75000)
    assert_ledger_consistent()


def reprice(package, price: str) -> None:
    update_package(package_id=package.pk, price=Decimal(price))


def test_upgrade_credits_each_period_at_the_price_it_was_invoiced_at(basic, premium):
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))  # November at 1000.00
    reprice(basic, "1234.56")
    bill(date(2026, 11, 24))  # December at 1234.56
    reprice(basic, "1300.00")

    preview = change(sub, premium, date(2026, 11, 18), today=date(2026, 11, 25), preview=True)
    outcome = change(sub, premium, date(2026, 11, 18), today=date(2026, 11, 25))

    assert lines_of(outcome) == lines_of(preview) == [
        ("proration_credit", "Unused Basic, 18 Nov 2026 – 30 Nov 2026 (13 of 30 days)", Decimal("-433.33")),
        ("proration_charge", "Premium, 18 Nov 2026 – 30 Nov 2026 (13 of 30 days)", Decimal("650.00")),
        ("proration_credit", "Unused Basic, 01 Dec 2026 – 31 Dec 2026 (31 of 31 days)", Decimal("-1234.56")),
        ("proration_charge", "Premium, 01 Dec 2026 – 31 Dec 2026 (31 of 31 days)", Decimal("1500.00")),
    ]
    assert outcome.total == preview.total == Decimal("482.11")
    assert list(outcome.invoice.lines.values_list("amount_paisa", flat=True)) == [-43333, 65000, -123456, 150000]
    assert outcome.invoice.total_paisa == 48211
    assert_ledger_consistent()


def test_downgrade_credits_exactly_what_a_mid_period_join_was_invoiced(basic, premium):
    sub = make_subscriber(premium, date(2026, 12, 16))
    bill(date(2026, 12, 16))
    (joined,) = invoices_of(sub)
    assert line_summary(joined) == [("proration_charge", 77419)]  # 1500.00 / 31 * 16
    reprice(premium, "1800.00")

    outcome = change(sub, basic, date(2026, 12, 16), today=date(2026, 12, 20))

    assert [(k, a) for k, _, a in lines_of(outcome)] == [
        ("proration_credit", Decimal("-774.19")),  # the whole invoiced amount, not 1800.00 / 31 * 16
        ("proration_charge", Decimal("516.13")),
    ]
    assert outcome.document == "credit_note"
    assert outcome.credit_note.total_paisa == 25806
    assert_ledger_consistent()


def test_scheduled_downgrade_credits_the_invoiced_price(basic, premium):
    sub = make_subscriber(premium, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    bill(date(2026, 11, 24))  # December at 1500.00
    reprice(premium, "1800.00")

    scheduled = change(sub, basic, date(2026, 12, 1), today=date(2026, 11, 26))
    assert apply_scheduled_package_changes(today=date(2026, 12, 1), now=at(date(2026, 12, 1), 0, 30)) == 1

    note = CreditNote.objects.get()
    assert [(line.kind, line.amount) for line in scheduled.lines] == [
        ("proration_credit", Decimal("-1500.00")),
        ("proration_charge", Decimal("1000.00")),
    ]
    assert list(note.lines.values_list("kind", "amount_paisa")) == [("proration_credit", -150000), ("proration_charge", 100000)]
    assert note.total_paisa == 50000
    assert_ledger_consistent()


def test_without_an_invoice_line_the_credit_is_at_the_current_price(basic, premium):
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    InvoiceLine.objects.filter(invoice__subscriber_id=sub.pk).delete()  # as invoices issued before lines were kept
    reprice(basic, "1200.00")

    outcome = change(sub, premium, NOV_16)

    assert [(k, a) for k, _, a in lines_of(outcome)] == [
        ("proration_credit", Decimal("-600.00")),
        ("proration_charge", Decimal("750.00")),
    ]


def test_second_change_credits_the_days_at_what_the_first_change_charged(basic, premium):
    gold = make_package("Gold", "2000.00")
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    change(sub, premium, date(2026, 11, 11))  # 21-30 Nov now cost Premium's 1500.00, not the invoiced 1000.00

    outcome = change(sub, gold, date(2026, 11, 21))

    assert [(k, a) for k, _, a in lines_of(outcome)] == [
        ("proration_credit", Decimal("-500.00")),  # 1500.00 / 30 * 10
        ("proration_charge", Decimal("666.67")),
    ]
    assert_ledger_consistent()


def test_refused_changes_write_nothing(basic, premium):
    sub = make_subscriber(basic, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    before = row_counts()

    with pytest.raises(DomainError) as same:
        change(sub, basic, NOV_16)
    with pytest.raises(DomainError) as unknown:
        change_package(subscriber_id=sub.pk, package_id=10**9, effective_on=NOV_16, preview=False, today=NOV_16, now=at(NOV_16))
    with pytest.raises(NotFound) as no_sub:
        change_package(subscriber_id=10**9, package_id=premium.pk, effective_on=NOV_16, preview=False, today=NOV_16, now=at(NOV_16))
    with pytest.raises(DomainError) as too_early:
        change(sub, premium, date(2026, 10, 31), today=NOV_16)

    assert (same.value.status, same.value.code) == (422, "same_package")
    assert (unknown.value.status, unknown.value.code) == (422, "unknown_package")
    assert (no_sub.value.status, no_sub.value.code) == (404, "subscriber_not_found")
    assert (too_early.value.status, too_early.value.code) == (422, "effective_on_before_activation")

    update_subscriber(subscriber_id=sub.pk, today=NOV_16, status="disabled")
    with pytest.raises(DomainError) as disabled:
        change(sub, premium, NOV_16)
    assert (disabled.value.status, disabled.value.code) == (409, "subscriber_disabled")
    assert row_counts() == before
    assert refreshed(sub).package_id == basic.pk
