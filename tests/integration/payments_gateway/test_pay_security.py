"""Forged, tampered, misdirected and replayed messages: each is answered 4xx (or, for
an exact repeat, "duplicate"), kept as an InboundWebhook with its outcome, and credits
nothing."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from ispbill.billing import ledger
from ispbill.payments import gateway_services
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt
from ispbill.sim.sslcommerz import sslcommerz_sign

from ..billing.billing_support import bill
from .conftest import NOV_1, STORE_PASSWORD, forward
from .pay_support import assert_nothing_credited, ipn, post_form, press, returned, start

pytestmark = pytest.mark.django_db


def post_sns(client, message):
    headers, body = message
    headers = dict(headers)
    return client.post("/webhooks/bkash", body, content_type=headers.pop("Content-Type"), headers=headers)


def assert_refused(response, status: int, code: str, payments_before: int = 0):
    assert response.status_code == status, response.content
    assert response.json()["outcome"] == "rejected" and response.json()["code"] == code
    stored = InboundWebhook.objects.get(pk=response.json()["id"])
    assert stored.outcome == "rejected" and stored.outcome_detail.startswith(code)
    assert stored.body  # kept as it arrived
    assert Payment.objects.count() == payments_before
    assert ledger.ledger_discrepancies() == []


@pytest.fixture
def executed_bkash(client, world, bkash, receiver, browser):
    """A bKash payment the customer approved and the gateway executed, not recorded by
    us (so a forged or misdirected notification about it has something to be about)."""
    url = start(client, world.token(), "bkash")
    params = press(browser, url, "Pay")
    gateway_services.gateway_for("bkash").confirm_callback(params, gateway_services.expected_for("bkash"))
    return PaymentAttempt.objects.get().gateway_reference


# -- bKash SNS -------------------------------------------------------------------------------

def test_forged_sns_signature(client, world, bkash, executed_bkash):
    headers, body = bkash.sns_notification(executed_bkash)
    envelope = json.loads(body)
    message = json.loads(envelope["Message"])
    envelope["Message"] = json.dumps({**message, "amount": "5000.00"})

    response = post_sns(client, (headers, json.dumps(envelope).encode()))

    assert_refused(response, 403, "bad_signature")
    assert_nothing_credited(world.sub)


def test_sns_with_wrong_topic(client, world, bkash, executed_bkash):
    other = "arn:aws:sns:ap-southeast-1:999999999999:someone-else"

    response = post_sns(client, bkash.sns_notification(executed_bkash, topic_arn=other))

    assert_refused(response, 403, "wrong_topic")
    assert_nothing_credited(world.sub)


def test_sns_certificate_on_another_host(client, world, bkash, executed_bkash):
    response = post_sns(client, bkash.sns_notification(executed_bkash, cert_url="https://evil.example.com/SimpleNotificationService-1.pem"))

    assert_refused(response, 403, "bad_cert_url")
    assert bkash.fetcher.urls == []
    assert_nothing_credited(world.sub)


def test_sns_that_is_not_json(client, world, bkash):
    response = client.post("/webhooks/bkash", "hello", content_type="text/plain")

    assert_refused(response, 400, "malformed")


def test_replayed_sns_is_a_duplicate(client, world, bkash, executed_bkash):
    message = bkash.sns_notification(executed_bkash)
    first = post_sns(client, message)
    again = [post_sns(client, message) for _ in range(2)]

    assert (first.status_code, first.json()["outcome"]) == (200, "accepted")
    assert [(r.status_code, r.json()["outcome"]) for r in again] == [(200, "duplicate")] * 2
    assert Payment.objects.filter(status="completed").count() == 1
    assert ledger.balance(world.sub.pk) == 0


# -- SSLCommerz IPN --------------------------------------------------------------------------

@pytest.fixture
def signed_ipn(client, world, sslcommerz, receiver, browser):
    """A genuine IPN for the subscriber's payment, not yet delivered to us."""
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    return dict(parse_qsl(ipn(receiver).body.decode(), keep_blank_values=True))


@pytest.mark.parametrize(("name", "value"), [
    ("amount", "1000.01"),  # one paisa more
    ("amount", "999.99"),  # one paisa less
    ("status", "VALID "),
    ("risk_level", "0 "),
    ("bank_tran_id", "261125999999"),
])
def test_tampered_ipn_field(client, world, signed_ipn, name, value):
    response = post_form(client, "/webhooks/sslcommerz/ipn", {**signed_ipn, name: value})

    assert_refused(response, 403, "bad_signature")
    assert_nothing_credited(world.sub)


def test_unsigned_ipn(client, world, signed_ipn):
    unsigned = {k: v for k, v in signed_ipn.items() if k not in ("verify_sign", "verify_sign_sha2")}

    assert_refused(post_form(client, "/webhooks/sslcommerz/ipn", unsigned), 403, "bad_signature")


def test_ipn_moved_onto_another_subscribers_tran_id(client, world, sslcommerz, receiver, browser, signed_ipn):
    """Subscriber B's genuine IPN, its tran_id changed to subscriber A's open attempt:
    refused by the signature; and even re-signed (as if the store password leaked), the
    validation API says the val_id belongs to another tran_id."""
    bob = world.subscriber()
    bill(NOV_1)
    start(client, world.token(bob), "sslcommerz")
    bobs_attempt = PaymentAttempt.objects.get(subscriber=bob)
    moved = {**signed_ipn, "tran_id": bobs_attempt.reference}

    assert_refused(post_form(client, "/webhooks/sslcommerz/ipn", moved), 403, "bad_signature")

    keys = moved["verify_key"].split(",")
    resigned = {**moved, "verify_sign": sslcommerz_sign(moved, keys, STORE_PASSWORD, "md5"),
                "verify_sign_sha2": sslcommerz_sign(moved, keys, STORE_PASSWORD, "sha256")}
    assert_refused(post_form(client, "/webhooks/sslcommerz/ipn", resigned), 400, "reference_mismatch")
    assert ledger.balance(bob.pk) == 100_000
    assert_nothing_credited(world.sub)
    assert PaymentAttempt.objects.get(subscriber=bob).status == "started"


def test_replay_of_an_old_ipn_is_a_duplicate(client, world, signed_ipn):
    first = post_form(client, "/webhooks/sslcommerz/ipn", signed_ipn)
    replays = [post_form(client, "/webhooks/sslcommerz/ipn", signed_ipn) for _ in range(3)]

    assert first.status_code == 200 and first.json()["outcome"] == "accepted"
    assert [(r.status_code, r.json()["outcome"]) for r in replays] == [(200, "duplicate")] * 3
    assert Payment.objects.count() == 1 and ledger.balance(world.sub.pk) == 0
    assert InboundWebhook.objects.filter(outcome="duplicate").count() == 3


def test_ipn_for_a_tran_id_we_never_issued(client, world, sslcommerz):
    fields = {"tran_id": "PNOTOURS", "val_id": "x", "status": "VALID", "amount": "1000.00"}
    keys = list(fields)
    fields.update(verify_key=",".join(keys), verify_sign=sslcommerz_sign(fields, keys, STORE_PASSWORD, "md5"))

    response = post_form(client, "/webhooks/sslcommerz/ipn", fields)

    assert_refused(response, 400, "gateway_refused")  # the validation API knows no such val_id
    assert_nothing_credited(world.sub)


def test_secrets_in_headers_are_not_stored(client, world, signed_ipn):
    client.post("/webhooks/sslcommerz/ipn", "x=1", content_type="application/x-www-form-urlencoded",
                headers={"Authorization": "Bearer hunter2", "Cookie": "sessionid=s3cret"})

    stored = InboundWebhook.objects.get()
    assert stored.headers["Authorization"] == "[redacted]" and stored.headers["Cookie"] == "[redacted]"
    assert "hunter2" not in json.dumps(stored.headers) and "s3cret" not in json.dumps(stored.headers)
    assert stored.source_ip == "127.0.0.1"


def test_browser_return_that_was_tampered_with(client, world, sslcommerz, receiver, browser, signed_ipn):
    (request,) = receiver.received("/pay/sslcommerz/success")
    fields = dict(parse_qsl(request.body.decode(), keep_blank_values=True))

    response = post_form(client, "/pay/sslcommerz/success", {**fields, "amount": "10.00"})

    assert response.status_code == 400 and "Payment not completed" in response.content.decode()
    assert InboundWebhook.objects.get().outcome == "rejected"
    assert_nothing_credited(world.sub)
    # The untouched return still works.
    assert "Payment received" in returned(client, receiver, "/pay/sslcommerz/success").content.decode()
    forward(client, ipn(receiver))
    assert Payment.objects.filter(status="completed").count() == 1
