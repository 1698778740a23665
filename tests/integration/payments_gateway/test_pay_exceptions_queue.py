"""The exceptions queue through the API: payments held for review listed, matched to a
subscriber, rejected, refunded (bKash, SSLCommerz; Nagad cannot) with the ledger kept
right; stored webhooks listed and replayed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ispbill.billing import ledger
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.notifications.models import Message
from ispbill.payments import gateway_services
from ispbill.payments.models import Payment, PaymentAttempt, Refund
from ispbill.payments.services import record_payment

from ..api.api_support import JsonClient
from .conftest import forward
from .pay_support import ipn, paid_with, press, returned, start

pytestmark = pytest.mark.django_db


def post_sns(client, message):
    headers, body = message
    headers = dict(headers)
    return client.post("/webhooks/bkash", body, content_type=headers.pop("Content-Type"), headers=headers)


@pytest.fixture
def wallet_payment(client, world, bkash, receiver, browser):
    """A verified bKash webhook for money paid without our invoice number (straight to
    the merchant wallet): held for staff, with no subscriber."""
    url = start(client, world.token(), "bkash")
    params = press(browser, url, "Pay")
    gateway_services.gateway_for("bkash").confirm_callback(params, gateway_services.expected_for("bkash"))
    payment_id = PaymentAttempt.objects.get().gateway_reference
    message = {**bkash.webhook_message(payment_id), "merchantInvoiceNumber": ""}
    response = post_sns(client, bkash.sns_notification(message=message))
    assert response.status_code == 200 and response.json()["outcome"] == "accepted"
    return Payment.objects.get()


def test_held_payment_is_listed_for_staff(api, world, wallet_payment):
    response = api.get("/payments", status="needs_review")

    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item["id"] == wallet_payment.pk and item["status"] == "needs_review"
    assert item["subscriber"] is None and item["allocations"] == []
    assert (item["gateway"], item["method_label"], item["amount"]) == ("bkash", "bKash", "1000.00")
    assert item["transaction_id"] == wallet_payment.transaction_id
    assert item["review_reason"].startswith("unknown_reference")
    assert api.get("/payments", status="completed").json()["count"] == 0
    assert not LedgerEntry.objects.filter(kind="payment").exists()


def test_staff_match_a_held_payment(api, world, wallet_payment):
    response = api.post(f"/payments/{wallet_payment.pk}/match", {"subscriber": world.sub.pk, "note": "customer called"})

    assert response.status_code == 200, response.content
    body = response.json()
    invoice = Invoice.objects.get(subscriber=world.sub)
    assert body["status"] == "completed" and body["subscriber"] == world.sub.pk
    assert body["allocations"] == [{"invoice": invoice.pk, "amount": "1000.00"}]
    assert (invoice.amount_due_paisa, invoice.status) == (0, "paid")
    assert sorted(Message.objects.filter(payment=wallet_payment, kind="receipt").values_list("channel", flat=True)) == ["email", "sms"]
    assert ledger.ledger_discrepancies() == []
    again = api.post(f"/payments/{wallet_payment.pk}/match", {"subscriber": world.sub.pk})
    assert again.status_code == 409 and again.json()["code"] == "payment_not_in_review"
    assert ledger.balance(world.sub.pk) == 0


def test_the_return_for_our_attempt_matches_the_held_payment_by_itself(client, world, wallet_payment, receiver):
    """The wallet webhook came first; then bKash confirms the same trxID for one of our
    attempts (same amount): it is credited to that subscriber, once."""
    response = returned(client, receiver, "/pay/bkash/callback")

    assert "Payment received" in response.content.decode()
    wallet_payment.refresh_from_db()
    assert (wallet_payment.status, wallet_payment.subscriber_id) == ("completed", world.sub.pk)
    assert Payment.objects.count() == 1 and ledger.balance(world.sub.pk) == 0
    assert PaymentAttempt.objects.get().payment_id == wallet_payment.pk


def test_match_refuses_unknown_subscribers_and_bad_bodies(api, world, wallet_payment):
    assert api.post(f"/payments/{wallet_payment.pk}/match", {"subscriber": 999_999}).json()["code"] == "subscriber_not_found"
    assert api.post(f"/payments/{wallet_payment.pk}/match", {"subscriber": world.sub.pk, "x": 1}).status_code == 422
    assert api.post("/payments/999999/match", {"subscriber": world.sub.pk}).status_code == 404
    assert Payment.objects.get().status == "needs_review"


def test_staff_reject_a_held_payment(api, world, wallet_payment):
    response = api.post(f"/payments/{wallet_payment.pk}/reject", {"reason": "not our customer"})

    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert "not our customer" in Payment.objects.get().notes
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert api.post(f"/payments/{wallet_payment.pk}/reject", {"reason": "again"}).status_code == 409
    assert api.post(f"/payments/{wallet_payment.pk}/reject", {"reason": ""}).status_code == 422


def test_a_rejected_payment_is_refunded_in_full(api, client, world, sslcommerz, receiver, browser):
    sslcommerz.risky = True
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    forward(client, ipn(receiver))
    held = Payment.objects.get()
    assert held.status == "needs_review"
    api.post(f"/payments/{held.pk}/reject", {"reason": "card flagged as stolen"})
    part = api.post(f"/payments/{held.pk}/refund", {"amount": "10.00", "reason": "x"})
    assert part.status_code == 422 and part.json()["code"] == "refund_must_be_full"

    response = api.post(f"/payments/{held.pk}/refund", {"amount": "1000.00", "reason": "sent back"})

    assert response.status_code == 201, response.content
    assert (response.json()["payment"]["status"], response.json()["payment"]["refunded"]) == ("refunded", "1000.00")
    assert list(sslcommerz.refunds.values())[0]["amount"] == "1000.00"
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert ledger.balance(world.sub.pk) == 100_000 and ledger.ledger_discrepancies() == []


def test_a_wallet_payment_without_payment_id_is_refunded_in_the_portal(api, world, wallet_payment):
    response = api.post(f"/payments/{wallet_payment.pk}/refund", {"amount": "1000.00", "reason": "not ours"})

    assert response.status_code == 501 and "merchant portal" in response.json()["message"]
    assert Payment.objects.get().status == "needs_review"


def test_refund_of_a_bkash_payment_reopens_the_invoice(api, client, world, bkash, receiver, browser):
    payment = paid_with("bkash", client, world, receiver, browser)

    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "300.00", "reason": "charged twice"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["refund"]["status"] == "completed" and body["refund"]["amount"] == "300.00"
    assert body["refund"]["gateway_refund_id"] == bkash.payment(payment.gateway_reference)["refunds"][0]["refundTrxID"]
    assert (body["payment"]["status"], body["payment"]["refunded"]) == ("partially_refunded", "300.00")
    invoice = Invoice.objects.get(subscriber=world.sub)
    assert body["payment"]["allocations"] == [{"invoice": invoice.pk, "amount": "700.00"}]
    assert (invoice.amount_due_paisa, invoice.status) == (30_000, "partially_paid")
    assert ledger.balance(world.sub.pk) == 30_000
    assert sum(LedgerEntry.objects.filter(payment=payment).values_list("amount_paisa", flat=True)) == -70_000
    assert ledger.ledger_discrepancies() == []

    too_much = api.post(f"/payments/{payment.pk}/refund", {"amount": "700.01", "reason": "x"})
    assert too_much.status_code == 422 and too_much.json()["code"] == "refund_too_large"
    rest = api.post(f"/payments/{payment.pk}/refund", {"amount": "700.00", "reason": "closing the account"})
    assert rest.json()["payment"]["status"] == "refunded" and rest.json()["payment"]["allocations"] == []
    invoice.refresh_from_db()
    assert (invoice.amount_due_paisa, invoice.status) == (100_000, "open")
    assert Refund.objects.count() == 2 and ledger.ledger_discrepancies() == []


def test_refund_takes_unapplied_credit_first(api, client, world, sslcommerz, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    record_payment(subscriber_id=world.sub.pk, amount=Decimal("200.00"), method="cash", received_at=fixed_clock.now())
    assert ledger.unapplied_credit(world.sub.pk) == 20_000

    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "300.00", "reason": "overcharged"})

    assert response.status_code == 201, response.content
    assert response.json()["refund"]["status"] == "pending"  # SSLCommerz completes refunds later
    assert sslcommerz.refunds
    assert ledger.unapplied_credit(world.sub.pk) == 0
    invoice = Invoice.objects.get(subscriber=world.sub)
    assert (invoice.amount_due_paisa, invoice.status) == (10_000, "partially_paid")
    assert ledger.balance(world.sub.pk) == 10_000 and ledger.ledger_discrepancies() == []


def test_nagad_cannot_refund(api, client, world, nagad, receiver, browser):
    payment = paid_with("nagad", client, world, receiver, browser)

    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "100.00", "reason": "x"})

    assert response.status_code == 501 and response.json()["code"] == "not_supported"
    assert "merchant portal" in response.json()["message"]
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("completed", 0)
    assert ledger.balance(world.sub.pk) == 0


def test_cash_payments_are_not_refunded_through_a_gateway(api, world, fixed_clock):
    payment, _ = record_payment(subscriber_id=world.sub.pk, amount=Decimal("100.00"), method="cash", received_at=fixed_clock.now())

    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "100.00", "reason": "x"})

    assert response.status_code == 501


# -- stored webhooks -------------------------------------------------------------------------

def test_webhooks_are_listed_and_filtered(api, client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    forward(client, ipn(receiver))
    client.post("/webhooks/sslcommerz/ipn", "tran_id=X", content_type="application/x-www-form-urlencoded")
    returned(client, receiver, "/pay/sslcommerz/success")

    everything = api.get("/webhooks").json()
    rejected = api.get("/webhooks", gateway="sslcommerz", outcome="rejected").json()

    assert everything["count"] == 3
    assert [w["outcome"] for w in everything["items"]] == ["duplicate", "rejected", "accepted"]
    (item,) = rejected["items"]
    assert (item["kind"], item["method"], item["path"], item["body"]) == ("ipn", "POST", "/webhooks/sslcommerz/ipn", "tran_id=X")
    accepted = everything["items"][-1]
    assert accepted["attempt"] == PaymentAttempt.objects.get().reference
    assert accepted["payment"] == Payment.objects.get().pk
    assert api.get("/webhooks", gateway="bkash").json()["count"] == 0
    assert api.get(f"/webhooks/{item['id']}").json() == item


def test_replaying_an_accepted_webhook_credits_nothing_twice(api, client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    stored = forward(client, ipn(receiver)).json()["id"]

    response = api.post(f"/webhooks/{stored}/replay")

    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "accepted" and body["replays"] == 1
    assert "replayed" in body["outcome_detail"] and "duplicate" in body["outcome_detail"]
    assert Payment.objects.count() == 1 and ledger.balance(world.sub.pk) == 0
    assert api.post("/webhooks/999999/replay").status_code == 404


def test_replaying_a_webhook_that_failed_credits_it(api, client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    sslcommerz.faults.fail_next(503, path="validationserverAPI")
    first = forward(client, ipn(receiver))
    assert first.status_code == 503 and first.json()["outcome"] == "error"
    assert PaymentAttempt.objects.get().status == "pending"

    response = api.post(f"/webhooks/{first.json()['id']}/replay")

    assert response.json()["outcome"] == "accepted"
    assert Payment.objects.get().status == "completed" and ledger.balance(world.sub.pk) == 0


def test_webhooks_need_a_token(world):
    assert JsonClient().get("/webhooks").status_code == 401
    assert JsonClient().post("/payments/1/match", {"subscriber": 1}).status_code == 401
