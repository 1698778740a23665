"""Two workers following up the same refund at the same moment, each in its own
transaction (PostgreSQL: real row locks): the gateway's answer is applied once."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from ispbill.audit.models import AuditEvent
from ispbill.billing import ledger
from ispbill.billing.models import LedgerEntry
from ispbill.payments import refund_services
from ispbill.payments.models import Payment, Refund
from ispbill.payments.services import refund_payment

from .conftest import forward
from .pay_support import ipn, press, start

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("gateway_says", "expected"), [("refunded", "completed"), ("cancelled", "failed")])
def test_two_workers_apply_the_answer_once(client, world, sslcommerz, receiver, browser, fixed_clock, gateway_says,
                                           expected):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent transactions (PostgreSQL)")
    sslcommerz.refunds_complete = False
    press(browser, start(client, world.token(), "sslcommerz"), "Pay")
    forward(client, ipn(receiver))
    payment = Payment.objects.get()
    pending = refund_payment(payment_id=payment.pk, amount=Decimal("400.00"), reason="asked", now=fixed_clock.now())
    sslcommerz.finish_refund(pending.gateway_refund_id, gateway_says)
    now = fixed_clock.now() + timedelta(minutes=5)
    workers = 4
    barrier = threading.Barrier(workers)
    results: list[str] = []
    errors: list[BaseException] = []

    def follow_up(worker: int):
        try:
            barrier.wait(timeout=5)
            if worker % 2:
                results.append(refund_services.follow_up_refunds(now=now))
            else:
                results.append(refund_services.check_refund(refund_id=pending.pk, now=now)[1])
        except BaseException as exc:  # a refused "check now" (already settled) is a fine outcome
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=follow_up, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert all(getattr(e, "code", None) == "refund_not_pending" for e in errors), errors
    applied = [r for r in results if r == expected or r.endswith(f"1 {expected}")]
    assert len(applied) == 1, results
    done = Refund.objects.get()
    assert done.status == expected and done.checks == 1
    assert AuditEvent.objects.filter(action=f"refund.{'complete' if expected == 'completed' else 'fail'}").count() == 1
    payment.refresh_from_db()
    refunded = 40_000 if expected == "completed" else 0
    assert payment.refunded_paisa == refunded
    assert sum(LedgerEntry.objects.filter(payment=payment, kind="refund").values_list("amount_paisa", flat=True)) == refunded
    assert ledger.balance(world.sub.pk) == refunded and ledger.ledger_discrepancies() == []
