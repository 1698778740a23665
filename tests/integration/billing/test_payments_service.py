"""Recording payments: allocation to the oldest open invoice, partial payment, credit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing import ledger
from ispbill.billing.models import LedgerEntry
from ispbill.core.errors import Conflict, DomainError, NotFound
from ispbill.payments.models import Payment
from ispbill.payments.services import record_payment

from .billing_support import assert_ledger_consistent, at, bill, invoices_of, make_package, make_subscriber

pytestmark = pytest.mark.django_db

NOV_25 = date(2026, 11, 25)


@pytest.fixture
def home():
    return make_package("Home 10M", "1000.00")


def pay(sub, amount: str, day: date = NOV_25, **kwargs):
    payment, created = record_payment(
        subscriber_id=sub.pk, amount=Decimal(amount), method="cash", received_at=at(day), **kwargs
    )
    return payment, created


def dues(sub) -> list[tuple[int, str]]:
    return [(i.amount_due_paisa, i.status) for i in invoices_of(sub)]


def test_payment_goes_to_the_oldest_open_invoice_first(home):
    sub = make_subscriber(home, date(2026, 9, 1))
    bill(NOV_25)  # Sep, Oct, Nov, Dec
    assert dues(sub) == [(100000, "open")] * 4

    payment, created = pay(sub, "1500.00")

    assert created
    assert dues(sub) == [(0, "paid"), (50000, "partially_paid"), (100000, "open"), (100000, "open")]
    sep, oct_, _, _ = invoices_of(sub)
    assert list(payment.ledger_entries.order_by("id").values_list("invoice_id", "amount_paisa")) == [
        (sep.pk, -100000),
        (oct_.pk, -50000),
    ]

    pay(sub, "2000.00")
    assert dues(sub) == [(0, "paid"), (0, "paid"), (0, "paid"), (50000, "partially_paid")]
    assert ledger.balance(sub.pk) == 50000
    assert ledger.unapplied_credit(sub.pk) == 0
    assert_ledger_consistent()


def test_partial_payment_leaves_the_invoice_partially_paid(home):
    sub = make_subscriber(home, date(2026, 11, 16))
    bill(date(2026, 11, 16))  # 500.00

    pay(sub, "123.45")

    (inv,) = invoices_of(sub)
    assert (inv.total_paisa, inv.amount_due_paisa, inv.status) == (50000, 37655, "partially_paid")
    pay(sub, "376.55")
    inv.refresh_from_db()
    assert (inv.amount_due_paisa, inv.status) == (0, "paid")
    assert ledger.balance(sub.pk) == 0
    assert_ledger_consistent()


def test_overpayment_is_kept_as_credit_and_applied_to_the_next_invoice(home):
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    payment, _ = pay(sub, "1300.00", date(2026, 11, 5))

    (nov,) = invoices_of(sub)
    assert (nov.amount_due_paisa, nov.status) == (0, "paid")
    assert list(payment.ledger_entries.order_by("id").values_list("invoice_id", "amount_paisa")) == [
        (nov.pk, -100000),
        (None, -30000),
    ]
    assert ledger.unapplied_credit(sub.pk) == 30000
    assert ledger.balance(sub.pk) == -30000

    bill(date(2026, 11, 24))  # December invoice: the credit pays part of it at once

    dec = invoices_of(sub)[1]
    assert (dec.total_paisa, dec.amount_due_paisa, dec.status) == (100000, 70000, "partially_paid")
    assert ledger.unapplied_credit(sub.pk) == 0
    assert ledger.balance(sub.pk) == 70000
    assert set(LedgerEntry.objects.filter(subscriber=sub, kind="credit_applied").values_list("invoice_id", "amount_paisa")) == {
        (None, 30000),
        (dec.pk, -30000),
    }
    assert_ledger_consistent()


def test_credit_larger_than_the_next_invoice_pays_it_and_the_rest_waits(home):
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    pay(sub, "3500.00", date(2026, 11, 2))

    bill(date(2026, 11, 24))
    bill(date(2026, 12, 25))

    assert dues(sub) == [(0, "paid"), (0, "paid"), (0, "paid")]
    assert ledger.unapplied_credit(sub.pk) == 50000
    bill(date(2027, 1, 25))
    assert dues(sub)[-1] == (50000, "partially_paid")
    assert ledger.unapplied_credit(sub.pk) == 0
    assert_ledger_consistent()


def test_payment_before_any_invoice_is_credit(home):
    sub = make_subscriber(home, date(2026, 12, 1))
    pay(sub, "1000.00")
    assert ledger.balance(sub.pk) == -100000

    bill(date(2026, 11, 24))

    assert dues(sub) == [(0, "paid")]
    assert ledger.balance(sub.pk) == 0
    assert_ledger_consistent()


def test_same_idempotency_key_returns_the_recorded_payment(home):
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    first, created = pay(sub, "400.00", idempotency_key="till-7-0001")
    again, created_again = pay(sub, "400.00", idempotency_key="till-7-0001")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Payment.objects.count() == 1
    assert invoices_of(sub)[0].amount_due_paisa == 60000
    with pytest.raises(Conflict) as exc:
        pay(sub, "500.00", idempotency_key="till-7-0001")
    assert exc.value.code == "duplicate_reference"
    assert Payment.objects.count() == 1
    assert_ledger_consistent()


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"amount": Decimal("0")}, DomainError, "invalid_amount"),
        ({"amount": Decimal("-5.00")}, DomainError, "invalid_amount"),
        ({"method": "cheque"}, DomainError, "invalid_method"),
        ({"subscriber_id": 10**9}, NotFound, "subscriber_not_found"),
        ({"idempotency_key": "k" * 101}, DomainError, "invalid_idempotency_key"),
    ],
)
def test_rejected_payment_writes_nothing(home, kwargs, error, code):
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    args = {"subscriber_id": sub.pk, "amount": Decimal("100.00"), "method": "cash", "received_at": at(NOV_25)} | kwargs

    with pytest.raises(error) as exc:
        record_payment(**args)

    assert exc.value.code == code
    assert Payment.objects.count() == 0
    assert LedgerEntry.objects.count() == 1
