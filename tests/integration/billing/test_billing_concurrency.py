"""Concurrent writers on PostgreSQL: two billing runs at once, racing payments.

Each test starts its threads on a barrier so they really overlap, and every thread
closes its own database connection when it is done.
"""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from ispbill.billing import ledger
from ispbill.billing.models import Invoice, NumberSequence
from ispbill.billing.services import run_billing
from ispbill.core.errors import Conflict
from ispbill.payments.models import Payment
from ispbill.payments.services import record_payment

from .billing_support import at, bill, invoices_of, make_package, make_subscriber

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

NOV_24 = date(2026, 11, 24)


def run_together(*calls):
    """Run each callable in its own thread, all released at once; returns results or exceptions."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def worker(i, fn):
        try:
            barrier.wait(timeout=30)
            outcomes[i] = fn()
        except BaseException as exc:  # handed back to the test
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    return outcomes


@pytest.mark.parametrize("batch_size", [50, 5000])
def test_two_billing_runs_at_once_issue_each_invoice_once_with_gapless_numbers(batch_size):
    home = make_package("Home 10M", "1000.00")
    subs = [make_subscriber(home, date(2026, 12, 1)) for _ in range(300)]

    def run():
        return run_billing(today=NOV_24, now=at(NOV_24), batch_size=batch_size)

    first, second = run_together(run, run)

    for outcome in (first, second):
        assert not isinstance(outcome, BaseException), repr(outcome)
    assert first.issued + second.issued == len(subs)
    assert Invoice.objects.count() == len(subs)
    assert Invoice.objects.values("subscriber_id").distinct().count() == len(subs)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, len(subs) + 1)]
    assert NumberSequence.objects.get(scope="invoice:INV-2026-#").next_value == len(subs) + 1
    assert ledger.ledger_discrepancies() == []
    assert run().issued == 0


@pytest.mark.parametrize("same", ["idempotency_key", "gateway_transaction"])
def test_the_same_payment_sent_twice_at_once_is_recorded_once(same):
    home = make_package("Home 10M", "1000.00")
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))

    for round_ in range(5):
        if same == "idempotency_key":
            ids = {"idempotency_key": f"retry-{round_}"}
        else:
            ids = {"gateway": "bkash", "transaction_id": f"TX{round_}"}

        def pay():
            return record_payment(
                subscriber_id=sub.pk, amount=Decimal("100.00"), method="manual_mfs",
                received_at=at(date(2026, 11, 5)), **ids,
            )

        a, b = run_together(pay, pay)

        assert not isinstance(a, BaseException), repr(a)
        assert not isinstance(b, BaseException), repr(b)
        assert a[0].pk == b[0].pk
        assert sorted([a[1], b[1]]) == [False, True]
        assert Payment.objects.count() == round_ + 1

    (nov,) = invoices_of(sub)
    assert (nov.amount_due_paisa, nov.status) == (50000, "partially_paid")
    assert ledger.ledger_discrepancies() == []


def test_one_idempotency_key_for_two_subscribers_at_once_credits_only_one():
    home = make_package("Home 10M", "1000.00")
    one, two = make_subscriber(home, date(2026, 11, 1)), make_subscriber(home, date(2026, 11, 1))

    def pay(sub):
        return lambda: record_payment(
            subscriber_id=sub.pk, amount=Decimal("100.00"), method="cash", received_at=at(date(2026, 11, 5)),
            idempotency_key="shared-key",
        )

    outcomes = run_together(pay(one), pay(two))

    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    recorded = [o for o in outcomes if isinstance(o, tuple)]
    assert len(conflicts) == 1 and len(recorded) == 1, outcomes
    assert conflicts[0].code == "duplicate_reference"
    assert Payment.objects.count() == 1
    assert ledger.balance(one.pk) + ledger.balance(two.pk) == -10000


def test_two_different_payments_at_once_are_both_allocated_oldest_first():
    home = make_package("Home 10M", "1000.00")
    sub = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    bill(NOV_24)  # November and December open, 1000.00 each

    def pay(amount):
        return lambda: record_payment(
            subscriber_id=sub.pk, amount=Decimal(amount), method="cash", received_at=at(date(2026, 11, 25))
        )

    a, b = run_together(pay("700.00"), pay("800.00"))

    assert a[1] and b[1]
    assert [(i.amount_due_paisa, i.status) for i in invoices_of(sub)] == [(0, "paid"), (50000, "partially_paid")]
    assert ledger.balance(sub.pk) == 50000
    assert ledger.unapplied_credit(sub.pk) == 0
    assert ledger.ledger_discrepancies() == []


def test_billing_run_racing_overpayments_keeps_the_ledger_straight():
    home = make_package("Home 10M", "1000.00")
    subs = [make_subscriber(home, date(2026, 11, 1)) for _ in range(100)]
    bill(date(2026, 11, 1))  # November for everyone

    def pay_all():
        for sub in subs:
            record_payment(subscriber_id=sub.pk, amount=Decimal("1500.00"), method="cash", received_at=at(NOV_24))

    def run():
        return run_billing(today=NOV_24, now=at(NOV_24), batch_size=10)

    paid, result = run_together(pay_all, run)

    assert paid is None, repr(paid)
    assert result.issued == len(subs)
    assert ledger.ledger_discrepancies() == []
    for sub in subs:
        # Whichever came first, December is half paid and no credit is left lying around.
        assert [(i.amount_due_paisa, i.status) for i in invoices_of(sub)] == [(0, "paid"), (50000, "partially_paid")]
        assert ledger.unapplied_credit(sub.pk) == 0
        assert ledger.balance(sub.pk) == 50000


def test_a_payment_does_not_wait_for_another_subscriber_on_the_same_package():
    """Locking a subscriber must not lock the package row they share with everyone else."""
    home = make_package("Home 10M", "1000.00")
    busy, other = make_subscriber(home, date(2026, 11, 1)), make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    holding, done = threading.Event(), threading.Event()

    def hold_busy_subscriber():
        with transaction.atomic():
            ledger.lock_subscriber(busy.pk)
            holding.set()
            done.wait(timeout=10)

    def pay_other():
        assert holding.wait(timeout=10)
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                return record_payment(
                    subscriber_id=other.pk, amount=Decimal("100.00"), method="cash", received_at=at(NOV_24)
                )
        finally:
            done.set()

    held, paid = run_together(hold_busy_subscriber, pay_other)

    assert held is None, repr(held)
    assert not isinstance(paid, BaseException), repr(paid)
    assert paid[1] is True
    assert invoices_of(other)[0].amount_due_paisa == 90000
