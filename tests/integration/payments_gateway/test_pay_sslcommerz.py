"""SSLCommerz through our routes: /pay/<token>/start, the IPN at
/webhooks/sslcommerz/ipn and the browser returns at /pay/sslcommerz/{success,fail,cancel},
against the SSLCommerz simulator."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ispbill.billing import ledger
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt

from .conftest import forward
from .pay_support import (
    CONFIRMING,
    NOT_COMPLETED,
    RECEIVED,
    assert_nothing_credited,
    assert_paid_once,
    ipn,
    page_text,
    post_form,
    press,
    returned,
    start,
)

pytestmark = pytest.mark.django_db


def test_session_points_back_at_our_routes(client, world, sslcommerz, receiver):
    start(client, world.token(), "sslcommerz")
    (session,) = sslcommerz.sessions.values()
    base = receiver.base_url
    assert (session["success_url"], session["fail_url"], session["cancel_url"], session["ipn_url"]) == (
        f"{base}/pay/sslcommerz/success", f"{base}/pay/sslcommerz/fail", f"{base}/pay/sslcommerz/cancel",
        f"{base}/webhooks/sslcommerz/ipn",
    )
    attempt = PaymentAttempt.objects.get()
    assert (session["tran_id"], session["amount"]) == (attempt.reference, "1000.00")
    assert session["cus_email"] == "rahim@example.com"


def test_ipn_valid_then_browser_return_validated_credits_once(client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")

    by_ipn = forward(client, ipn(receiver))
    by_browser = returned(client, receiver, "/pay/sslcommerz/success")

    assert by_ipn.status_code == 200 and by_ipn.json()["outcome"] == "accepted"
    assert RECEIVED in page_text(by_browser)
    payment = assert_paid_once(world.sub, gateway="sslcommerz", method_label="Visa")
    reference = PaymentAttempt.objects.get().reference
    assert payment.transaction_id == sslcommerz.transaction(reference)["bank_tran_id"]
    assert sslcommerz.transaction(reference)["validations"] == 2  # VALID, then VALIDATED
    assert list(InboundWebhook.objects.order_by("id").values_list("kind", "outcome")) == [
        ("ipn", "accepted"), ("callback", "duplicate"),
    ]


def test_browser_return_before_the_ipn_credits_once(client, world, sslcommerz, receiver, browser):
    sslcommerz.ipn_order = "off"
    url = start(client, world.token(), "sslcommerz")
    fields = press(browser, url, "Pay")

    by_browser = returned(client, receiver, "/pay/sslcommerz/success")
    late_ipn = post_form(client, "/webhooks/sslcommerz/ipn", fields)  # the same signed fields, by the gateway

    assert RECEIVED in page_text(by_browser)
    assert late_ipn.status_code == 200 and late_ipn.json()["outcome"] == "duplicate"
    assert_paid_once(world.sub, gateway="sslcommerz")


def test_old_ipn_replayed_credits_nothing_more(client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    forward(client, ipn(receiver))

    replayed = [forward(client, ipn(receiver)) for _ in range(3)]

    assert [(r.status_code, r.json()["outcome"]) for r in replayed] == [(200, "duplicate")] * 3
    assert_paid_once(world.sub, gateway="sslcommerz")


def test_rocket_is_shown_as_rocket(client, api, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay", method="rocket")

    forward(client, ipn(receiver))
    response = returned(client, receiver, "/pay/sslcommerz/success")

    assert "Paid with Rocket" in page_text(response)
    payment = assert_paid_once(world.sub, gateway="sslcommerz", method_label="Rocket")
    assert api.get(f"/payments/{payment.pk}").json()["method_label"] == "Rocket"


@pytest.mark.parametrize(("button", "path", "status"), [("Cancel", "cancel", "cancelled"), ("Fail", "fail", "failed")])
def test_customer_cancels_or_payment_fails(client, world, sslcommerz, receiver, browser, button, path, status):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, button)

    assert forward(client, ipn(receiver)).status_code == 200
    response = returned(client, receiver, f"/pay/sslcommerz/{path}")

    assert NOT_COMPLETED in page_text(response)
    assert PaymentAttempt.objects.get().status == status
    assert_nothing_credited(world.sub)


def test_risky_payment_waits_for_staff(client, world, sslcommerz, receiver, browser):
    sslcommerz.risky = True
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")

    by_ipn = forward(client, ipn(receiver))
    by_browser = returned(client, receiver, "/pay/sslcommerz/success")

    assert by_ipn.status_code == 200 and by_ipn.json()["outcome"] == "accepted"
    assert CONFIRMING in page_text(by_browser)
    (payment,) = Payment.objects.all()
    assert (payment.status, payment.subscriber_id, payment.amount_paisa) == ("needs_review", world.sub.pk, 100_000)
    assert payment.review_reason.startswith("gateway_review: risk_level 1")
    assert not LedgerEntry.objects.filter(payment=payment).exists()
    assert Invoice.objects.get(subscriber=world.sub).status == "open"
    assert PaymentAttempt.objects.get().status == "needs_review"
    assert ledger.ledger_discrepancies() == []


def test_amount_the_gateway_reports_differs_by_one_paisa_from_the_attempt(client, world, sslcommerz, receiver, browser):
    """The gateway (verified) says 1000.00 moved; our attempt asked for 999.99: the money
    is kept for staff, nothing is applied."""
    url = start(client, world.token(), "sslcommerz")
    PaymentAttempt.objects.update(amount_paisa=99_999)
    press(browser, url, "Pay")

    response = forward(client, ipn(receiver))

    assert response.status_code == 200
    (payment,) = Payment.objects.all()
    assert payment.status == "needs_review" and payment.review_reason.startswith("amount_mismatch")
    assert payment.amount_paisa == 100_000
    assert_nothing_credited(world.sub)


def _pay_attempt_of(client, world, sslcommerz, receiver, browser, sub, amount_paisa: int) -> None:
    """Pay ``amount_paisa`` through SSLCommerz for ``sub``, as if the attempt had been
    made for that amount (say the subscriber chose to pay part, or in advance)."""
    url = start(client, world.token(sub), "sslcommerz")
    attempt = PaymentAttempt.objects.filter(subscriber=sub).latest("id")
    PaymentAttempt.objects.filter(pk=attempt.pk).update(amount_paisa=amount_paisa)
    sslcommerz.sessions[attempt.gateway_reference]["amount"] = f"{amount_paisa / 100:.2f}"
    press(browser, url, "Pay")
    assert forward(client, receiver.received("/webhooks/sslcommerz/ipn")[-1]).status_code == 200


def test_partial_payment_leaves_the_invoice_partly_paid(client, world, sslcommerz, receiver, browser):
    _pay_attempt_of(client, world, sslcommerz, receiver, browser, world.sub, 60_000)

    invoice = Invoice.objects.get(subscriber=world.sub)
    assert (invoice.amount_due_paisa, invoice.status) == (40_000, "partially_paid")
    assert ledger.ledger_discrepancies() == []


def test_overpayment_becomes_credit(client, world, sslcommerz, receiver, browser):
    _pay_attempt_of(client, world, sslcommerz, receiver, browser, world.sub, 150_000)

    assert Invoice.objects.get(subscriber=world.sub).status == "paid"
    assert ledger.balance(world.sub.pk) == -50_000 and ledger.unapplied_credit(world.sub.pk) == 50_000
    assert ledger.ledger_discrepancies() == []


def test_browser_fields_are_never_believed(client, world, sslcommerz, receiver, browser):
    url = start(client, world.token(), "sslcommerz")
    fields = press(browser, url, "Cancel")
    attempt = PaymentAttempt.objects.get()
    forged = {k: v for k, v in fields.items() if not k.startswith("verify_")}
    forged.update(status="VALID", val_id="261125000000forged", amount="1000.00")

    response = post_form(client, "/pay/sslcommerz/success", forged)

    assert response.status_code == 400 and NOT_COMPLETED in page_text(response)
    assert "INVALID_TRANSACTION" in InboundWebhook.objects.get().outcome_detail
    assert attempt.reference == dict(parse_qsl(InboundWebhook.objects.get().body))["tran_id"]
    assert_nothing_credited(world.sub)
