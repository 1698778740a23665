"""A gateway payment is written to the audit log once, by the gateway; a repeat of the
same notification writes nothing more."""

from __future__ import annotations

import pytest

from ispbill.audit.models import ActorKind, AuditEvent
from ispbill.payments.models import Payment

from .conftest import forward
from .pay_support import assert_paid_once, ipn, press, start

pytestmark = pytest.mark.django_db


def test_gateway_payment_is_audited_once(client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    notification = ipn(receiver)

    first = forward(client, notification)
    again = forward(client, notification)

    assert (first.json()["outcome"], again.json()["outcome"]) == ("accepted", "duplicate")
    payment = assert_paid_once(world.sub, gateway="sslcommerz", method_label="Visa")
    (event,) = AuditEvent.objects.filter(action__startswith="payment.")
    assert (event.action, event.actor_kind, event.actor_id) == ("payment.receive", ActorKind.GATEWAY, None)
    assert (event.target_type, event.target_id, event.subscriber_id) == ("payment", payment.pk, world.sub.pk)
    assert event.after == {"amount_paisa": 100000, "gateway": "sslcommerz", "transaction_id": payment.transaction_id,
                           "status": "completed"}
    assert event.summary == "Visa payment credited"
    assert Payment.objects.count() == 1
