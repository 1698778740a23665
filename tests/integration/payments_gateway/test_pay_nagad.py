"""Nagad through our routes: /pay/<token>/start and /pay/nagad/callback against the
Nagad simulator (RSA-encrypted and signed initialize/complete, verify)."""

from __future__ import annotations

import pytest

from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt

from .conftest import NAGAD_MERCHANT, pem_public
from .pay_support import (
    CONFIRMING,
    NOT_COMPLETED,
    RECEIVED,
    assert_nothing_credited,
    assert_paid_once,
    buttons,
    page_text,
    press,
    returned,
    start,
)

pytestmark = pytest.mark.django_db


def test_customer_pays_with_nagad(client, world, nagad, receiver, browser):
    token = world.token()
    assert buttons(page_text(client.get(f"/pay/{token}"))) == ["Pay with Nagad"]

    url = start(client, token, "nagad")
    attempt = PaymentAttempt.objects.get()
    assert url.startswith(nagad.base_url + "/check-out/")
    assert nagad.payment(attempt.gateway_reference)["orderId"] == attempt.reference
    assert nagad.payment(attempt.gateway_reference)["amount"] == "1000.00"
    assert nagad.calls("/check-out/initialize/")[0].headers["x-km-ip-v4"] == "127.0.0.1"  # the customer's address

    params = press(browser, url, "Pay")
    response = returned(client, receiver, "/pay/nagad/callback")

    assert params["status"] == "Success"
    assert RECEIVED in page_text(response)
    payment = assert_paid_once(world.sub, gateway="nagad", method_label="Nagad")
    assert payment.transaction_id == params["issuer_payment_ref"] == nagad.payment(attempt.gateway_reference)["issuerPaymentRefNo"]
    assert nagad.calls("/verify/payment/")  # the browser's word was checked with Nagad
    assert InboundWebhook.objects.get().outcome == "accepted"


@pytest.mark.parametrize(("button", "status"), [("Cancel", "cancelled"), ("Fail", "failed")])
def test_customer_cancels_or_payment_fails(client, world, nagad, receiver, browser, button, status):
    url = start(client, world.token(), "nagad")
    press(browser, url, button)

    response = returned(client, receiver, "/pay/nagad/callback")

    assert NOT_COMPLETED in page_text(response)
    assert PaymentAttempt.objects.get().status == status
    assert_nothing_credited(world.sub)


def test_forged_success_callback_credits_nothing(client, world, nagad, receiver):
    start(client, world.token(), "nagad")
    attempt = PaymentAttempt.objects.get()

    response = client.get("/pay/nagad/callback", {
        "merchant": NAGAD_MERCHANT, "order_id": attempt.reference, "payment_ref_id": attempt.gateway_reference,
        "status": "Success", "issuer_payment_ref": "FAKE1234",
    })

    # Nagad says the order is Ready (not paid, not failed): nothing credited, asked again later.
    assert CONFIRMING in page_text(response)
    assert_nothing_credited(world.sub)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "pending" and attempt.next_check_at is not None


def test_answer_with_a_bad_signature_is_refused(client, world, nagad, receiver):
    nagad.tamper_next_response()  # Nagad's initialize answer no longer verifies

    response = client.post(f"/pay/{world.token()}/start", {"gateway": "nagad"})

    assert response.status_code == 502 and "could not start" in page_text(response)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "failed" and "bad_signature" in attempt.last_error
    assert not Payment.objects.exists()


def test_our_signature_refused_by_nagad_058(client, world, nagad, receiver, rsa_key):
    nagad.register_merchant(NAGAD_MERCHANT, pem_public(rsa_key("someone-else")))  # Nagad holds another key

    response = client.post(f"/pay/{world.token()}/start", {"gateway": "nagad"})

    assert response.status_code == 502
    assert "16_0006_058" in PaymentAttempt.objects.get().last_error
    assert not Payment.objects.exists()
