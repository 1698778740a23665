"""The IPN and the browser's return for one payment arriving at the same moment, each
processed in its own request and transaction (PostgreSQL: real row locks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from ispbill.billing import ledger
from ispbill.billing.models import LedgerEntry
from ispbill.notifications.models import Message
from ispbill.payments.models import InboundWebhook, Payment

from .conftest import forward
from .pay_support import ipn, press, start

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_ipn_and_browser_return_racing_credit_once(world, sslcommerz, receiver, browser):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent transactions (PostgreSQL)")
    url = start(Client(), world.token(), "sslcommerz")
    press(browser, url, "Pay")
    requests = [ipn(receiver), receiver.received("/pay/sslcommerz/success")[-1]] * 2
    barrier = threading.Barrier(len(requests))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def deliver(request):
        try:
            barrier.wait(timeout=5)
            statuses.append(forward(Client(), request).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert errors == [] and sorted(statuses) == [200] * 4
    (payment,) = Payment.objects.all()
    assert payment.status == "completed"
    assert LedgerEntry.objects.filter(payment=payment).count() == 1
    assert Message.objects.filter(payment=payment, kind="receipt").count() == 2
    assert sorted(InboundWebhook.objects.values_list("outcome", flat=True)) == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert ledger.balance(world.sub.pk) == 0 and ledger.ledger_discrepancies() == []
