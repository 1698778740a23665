"""bKash through our routes: the payment page, /pay/<token>/start, /pay/bkash/callback
and the SNS webhook /webhooks/bkash, against the bKash simulator."""

from __future__ import annotations

import pytest
from django.test import Client

from ispbill.payments import gateway_services
from ispbill.payments.models import GatewayToken, InboundWebhook, Payment, PaymentAttempt

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


def test_the_payment_page_offers_only_configured_gateways(client, world, receiver, monkeypatch):
    token = world.token()
    assert "Online payment is not available yet" in page_text(client.get(f"/pay/{token}"))
    response = client.post(f"/pay/{token}/start", {"gateway": "bkash"})
    assert response.status_code == 404 and not PaymentAttempt.objects.exists()


def test_customer_pays_with_bkash(client, world, bkash, receiver, browser):
    token = world.token()
    page = page_text(client.get(f"/pay/{token}"))
    assert buttons(page) == ["Pay with bKash"]

    url = start(client, token, "bkash")

    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.amount_paisa, attempt.gateway, attempt.subscriber_id) == ("started", 100_000, "bkash", world.sub.pk)
    assert url.startswith(bkash.base_url) and attempt.gateway_reference.startswith("TR0011")
    assert bkash.payment(attempt.gateway_reference)["merchantInvoiceNumber"] == attempt.reference
    assert bkash.payment(attempt.gateway_reference)["callbackURL"] == receiver.base_url + "/pay/bkash/callback"

    params = press(browser, url, "Pay")
    assert params["status"] == "success"
    response = returned(client, receiver, "/pay/bkash/callback")

    assert response.status_code == 200 and RECEIVED in page_text(response)
    payment = assert_paid_once(world.sub, gateway="bkash", method_label="bKash")
    assert payment.transaction_id == bkash.payment(attempt.gateway_reference)["trxID"]
    assert payment.gateway_reference == attempt.gateway_reference and payment.reference == attempt.reference
    assert payment.transaction_id in page_text(response)
    (stored,) = InboundWebhook.objects.all()
    assert (stored.kind, stored.method, stored.outcome, stored.payment_id) == ("callback", "GET", "accepted", payment.pk)
    assert "paymentID=" in stored.path
    # The token is cached in the database, encrypted.
    (cached,) = GatewayToken.objects.all()
    assert cached.id_token and cached.id_token not in bkash.tokens


def test_the_webhook_and_a_repeated_return_credit_nothing_more(client, world, bkash, receiver, browser):
    url = start(client, world.token(), "bkash")
    press(browser, url, "Pay")
    returned(client, receiver, "/pay/bkash/callback")
    payment_id = PaymentAttempt.objects.get().gateway_reference

    headers, body = bkash.sns_notification(payment_id)
    response = client.post("/webhooks/bkash", body, content_type=headers.pop("Content-Type"), headers=headers)
    again = returned(client, receiver, "/pay/bkash/callback")  # the customer reloads the page

    assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    assert RECEIVED in page_text(again)
    assert_paid_once(world.sub, gateway="bkash")
    assert list(InboundWebhook.objects.order_by("id").values_list("kind", "outcome")) == [
        ("callback", "accepted"), ("sns", "duplicate"), ("callback", "duplicate"),
    ]


def test_the_webhook_first_then_the_return(client, world, bkash, receiver, browser):
    """The execute went through but our answer to the browser was lost before anything was
    recorded; bKash's SNS webhook credits the payment, the late return finds it."""
    url = start(client, world.token(), "bkash")
    params = press(browser, url, "Pay")
    adapter = gateway_services.gateway_for("bkash")
    adapter.confirm_callback(params, gateway_services.expected_for("bkash"))  # executed, never settled
    payment_id = PaymentAttempt.objects.get().gateway_reference

    headers, body = bkash.sns_notification(payment_id, signature_version="2")
    response = client.post("/webhooks/bkash", body, content_type=headers.pop("Content-Type"), headers=headers)
    late = returned(client, receiver, "/pay/bkash/callback")

    assert response.status_code == 200 and response.json()["outcome"] == "accepted"
    assert RECEIVED in page_text(late)
    assert_paid_once(world.sub, gateway="bkash")
    assert InboundWebhook.objects.get(kind="callback").outcome == "duplicate"


def test_sns_subscription_confirmation_is_followed(client, world, bkash, receiver):
    headers, body = bkash.sns_subscription_confirmation()

    response = client.post("/webhooks/bkash", body, content_type=headers.pop("Content-Type"), headers=headers)

    assert response.status_code == 200 and response.json()["outcome"] == "accepted"
    assert len(bkash.confirmed_subscriptions) == 1
    assert InboundWebhook.objects.get().outcome_detail == "subscription confirmed"


@pytest.mark.parametrize(("button", "status"), [("Fail", "failed"), ("Cancel", "cancelled")])
def test_payment_fails_or_is_cancelled(client, world, bkash, receiver, browser, button, status):
    url = start(client, world.token(), "bkash")
    press(browser, url, button)

    response = returned(client, receiver, "/pay/bkash/callback")

    assert response.status_code == 200 and NOT_COMPLETED in page_text(response)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == status and attempt.payment is None
    assert not Payment.objects.exists()
    assert_nothing_credited(world.sub)
    assert InboundWebhook.objects.get().outcome == "accepted"


def test_a_later_completion_wins_over_a_cancel(client, world, bkash, receiver, browser):
    """The customer cancelled in one tab and paid in another: the payment counts."""
    url = start(client, world.token(), "bkash")
    attempt = PaymentAttempt.objects.get()
    forged_cancel = client.get("/pay/bkash/callback", {"paymentID": attempt.gateway_reference, "status": "cancel"})
    assert NOT_COMPLETED in page_text(forged_cancel)
    assert PaymentAttempt.objects.get().status == "cancelled"

    press(browser, url, "Pay")
    response = returned(client, receiver, "/pay/bkash/callback")

    assert RECEIVED in page_text(response)
    assert_paid_once(world.sub, gateway="bkash")


def test_forged_success_return_credits_nothing(client, world, bkash, receiver):
    start(client, world.token(), "bkash")  # never approved by the customer
    attempt = PaymentAttempt.objects.get()

    response = client.get("/pay/bkash/callback", {"paymentID": attempt.gateway_reference, "status": "success"})

    assert NOT_COMPLETED in page_text(response)
    assert_nothing_credited(world.sub)


def test_a_return_for_a_payment_we_never_created_never_reaches_bkash(client, world, bkash):
    before = len(bkash.requests)

    response = client.get("/pay/bkash/callback", {"paymentID": "TR0011NOTOURS00000000001", "status": "success"})

    assert response.status_code == 400 and NOT_COMPLETED in page_text(response)
    assert len(bkash.requests) == before  # no token grant, no execute, no query
    stored = InboundWebhook.objects.get()
    assert (stored.outcome, stored.outcome_detail.split(":")[0]) == ("rejected", "unknown_payment")
    assert not Payment.objects.exists()
    assert_nothing_credited(world.sub)


def test_execute_times_out_then_query_finds_the_payment(client, world, bkash, receiver, browser):
    gateway_services.set_adapter_options("bkash", sns_host_pattern=r"127\.0\.0\.1", sns_fetch=bkash.fetcher, timeout=0.4)
    url = start(client, world.token(), "bkash")
    press(browser, url, "Pay")
    bkash.faults.timeout_next(5, path="/execute")  # executes, the answer is lost

    response = returned(client, receiver, "/pay/bkash/callback")

    assert RECEIVED in page_text(response)
    payment = assert_paid_once(world.sub, gateway="bkash")
    assert bkash.payment(payment.gateway_reference)["executions"] == 1
    assert bkash.calls("payment/status")


def test_nothing_due_is_a_clear_page(client, world, bkash, receiver, browser):
    url = start(client, world.token(), "bkash")
    press(browser, url, "Pay")
    returned(client, receiver, "/pay/bkash/callback")

    response = client.post(f"/pay/{world.token()}/start", {"gateway": "bkash"})

    assert response.status_code == 409 and "Nothing is due" in page_text(response)
    assert PaymentAttempt.objects.count() == 1


def test_the_start_form_is_csrf_protected(world, bkash, receiver):
    strict = Client(enforce_csrf_checks=True)
    token = world.token()
    assert strict.post(f"/pay/{token}/start", {"gateway": "bkash"}).status_code == 403

    page = strict.get(f"/pay/{token}")
    csrf = page.cookies["csrftoken"].value
    response = strict.post(f"/pay/{token}/start", {"gateway": "bkash", "csrfmiddlewaretoken": csrf})

    assert response.status_code == 303 and response["Location"].startswith(bkash.base_url)
    assert response["Referrer-Policy"] == "no-referrer"


def test_bad_links_and_gateways_are_refused(client, world, bkash, receiver):
    assert client.post("/pay/not-a-token/start", {"gateway": "bkash"}).status_code == 404
    assert client.post(f"/pay/{world.token()}/start", {"gateway": "paypal"}).status_code == 404
    assert client.get(f"/pay/{world.token()}/start").status_code == 405
    assert not PaymentAttempt.objects.exists()


def test_gateway_down_when_starting(client, world, bkash, receiver):
    bkash.faults.set_down()

    response = client.post(f"/pay/{world.token()}/start", {"gateway": "bkash"})

    assert response.status_code == 503 and "not answering" in page_text(response)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "failed" and "gateway_http_error" in attempt.last_error


def test_confirming_page_when_the_gateway_is_down(client, world, bkash, receiver, browser):
    url = start(client, world.token(), "bkash")
    press(browser, url, "Pay")
    bkash.faults.set_down()

    response = returned(client, receiver, "/pay/bkash/callback")

    assert response.status_code == 200 and CONFIRMING in page_text(response)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "pending" and attempt.next_check_at is not None
    assert InboundWebhook.objects.get().outcome == "error"
    assert_nothing_credited(world.sub)


def test_token_is_shared_through_the_database_and_granted_again_after_401(client, world, bkash, receiver):
    start(client, world.token(), "bkash")
    # A new adapter (another process, say) reads the cached token instead of granting one.
    gateway_services.set_adapter_options("bkash", sns_host_pattern=r"127\.0\.0\.1", sns_fetch=bkash.fetcher, timeout=2.0)
    start(client, world.token(), "bkash")
    assert bkash.grants == 1
    stored = GatewayToken.objects.get().id_token

    bkash.expire_tokens()  # bKash answers 401: one new grant, stored for everyone
    start(client, world.token(), "bkash")

    assert bkash.grants == 2 and GatewayToken.objects.get().id_token != stored
    assert PaymentAttempt.objects.filter(status="started").count() == 3
