"""The SSLCommerz adapter against the SSLCommerz simulator over real HTTP."""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest

from ispbill.payments.gateways import (
    GatewayRejected,
    GatewayUnavailable,
    SslcommerzGateway,
    StartRequest,
    Status,
)
from ispbill.payments.gateways.sslcommerz import SslcommerzConfig, method_label
from ispbill.sim.sslcommerz import SslcommerzSimulator

STORE, PASSWORD = "ispbd01", "ispbd01@ssl"


@pytest.fixture
def sim(serve) -> SslcommerzSimulator:
    s = SslcommerzSimulator(stores={STORE: PASSWORD})
    serve(s)
    return s


@pytest.fixture
def make_gateway(sim):
    made = []

    def make(**options) -> SslcommerzGateway:
        options.setdefault("timeout", 3.0)
        g = SslcommerzGateway(SslcommerzConfig(base_url=sim.base_url, store_id=STORE, store_password=PASSWORD), **options)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.fixture
def gateway(make_gateway) -> SslcommerzGateway:
    return make_gateway()


def start(gateway, receiver, orders, amount="500.00"):
    reference = orders.new(amount)
    started = gateway.start(StartRequest(
        reference=reference, amount=Decimal(amount), customer_name="Salma", customer_phone="01912345678",
        customer_email="s@example.com", return_url_base=receiver.base_url,
    ))
    return reference, started


def pay(gateway, receiver, orders, browser, button="Pay", method="visa"):
    """Start, press ``button`` on the hosted page; returns (reference, IPN request, browser fields)."""
    reference, started = start(gateway, receiver, orders)
    fields = browser.back_to_merchant(browser.press(started.redirect_url, button, method=method))
    (ipn,) = receiver.received("/webhooks/sslcommerz/ipn")
    back = {"Pay": "success", "Cancel": "cancel", "Fail": "fail"}[button]
    assert receiver.received(f"/pay/sslcommerz/{back}")
    return reference, ipn, fields


def test_ipn_then_browser_return_confirm_the_same_payment(gateway, sim, receiver, orders, browser):
    reference, started = start(gateway, receiver, orders)
    page, _ = browser.page(started.redirect_url)
    assert "Pay" in page and "Cancel" in page
    fields = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    (ipn,) = receiver.received("/webhooks/sslcommerz/ipn")
    assert fields["verify_sign"] and fields["verify_sign_sha2"]

    by_ipn = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)
    by_browser = gateway.confirm_callback(fields, orders.get)  # VALIDATED now: still confirms

    for confirmation in (by_ipn, by_browser):
        assert confirmation.status == Status.COMPLETED
        assert (confirmation.amount, confirmation.currency, confirmation.reference) == (Decimal("500.00"), "BDT", reference)
        assert confirmation.method_label == "Visa"
    assert by_ipn.raw["status"] == "VALID" and by_browser.raw["status"] == "VALIDATED"
    assert by_ipn.transaction_id == by_browser.transaction_id == sim.transaction(reference)["bank_tran_id"]
    assert by_ipn.gateway_reference == fields["val_id"]


def test_rocket_is_shown_as_rocket(gateway, receiver, orders, browser):
    _, ipn, fields = pay(gateway, receiver, orders, browser, method="rocket")
    assert fields["card_type"] == "DBBLMOBILEB-Dbbl Mobile Banking"

    confirmation = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)

    assert confirmation.status == Status.COMPLETED
    assert confirmation.method_label == "Rocket"


@pytest.mark.parametrize(
    ("card_type", "brand", "issuer", "label"),
    [
        ("DBBLMOBILEB-Dbbl Mobile Banking", "MOBILEBANKING", "DBBL Mobile Banking", "Rocket"),
        ("BKASH-BKash", "MOBILEBANKING", "", "bKash"),
        ("NAGAD-Nagad", "MOBILEBANKING", "", "Nagad"),
        ("VISA-Dutch Bangla", "VISA", "", "Visa"),
        ("MASTER-City Bank", "MASTERCARD", "", "Mastercard"),
        ("IBBL-Islami Bank", "IB", "", "Islami Bank"),
        ("", "", "DBBL Mobile Banking", "Rocket"),
    ],
)
def test_method_labels(card_type, brand, issuer, label):
    assert method_label(card_type, brand, issuer) == label


def test_risky_payment_needs_review(gateway, sim, receiver, orders, browser):
    sim.risky = True
    _, ipn, _ = pay(gateway, receiver, orders, browser)

    confirmation = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)

    assert confirmation.status == Status.NEEDS_REVIEW
    assert confirmation.risk == "Risky"
    assert confirmation.transaction_id


@pytest.mark.parametrize(("button", "status"), [("Cancel", Status.CANCELLED), ("Fail", Status.FAILED)])
def test_customer_cancels_or_payment_fails(gateway, receiver, orders, browser, button, status):
    reference, ipn, fields = pay(gateway, receiver, orders, browser, button=button)

    by_ipn = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)
    by_browser = gateway.confirm_callback(fields, orders.get)

    assert by_ipn.status == by_browser.status == status
    assert by_ipn.reference == reference and by_ipn.transaction_id is None


def test_tampered_ipn_field_is_rejected(gateway, receiver, orders, browser):
    _, ipn, _ = pay(gateway, receiver, orders, browser)
    fields = dict(parse_qsl(ipn.body.decode(), keep_blank_values=True))

    for name, value in [("amount", "5000.00"), ("tran_id", "OTHER1"), ("val_id", "X1")]:
        forged = urlencode({**fields, name: value}).encode()
        with pytest.raises(GatewayRejected) as caught:
            gateway.verify_webhook(ipn.headers, forged, orders.get)
        assert caught.value.code == "bad_signature"


def test_sha2_signature_is_checked_too(gateway, receiver, orders, browser):
    _, ipn, _ = pay(gateway, receiver, orders, browser)
    fields = dict(parse_qsl(ipn.body.decode(), keep_blank_values=True))
    forged = urlencode({**fields, "verify_sign_sha2": "0" * 64}).encode()

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(ipn.headers, forged, orders.get)
    assert caught.value.code == "bad_signature"


def test_unsigned_ipn_is_rejected(gateway, receiver, orders, browser):
    _, ipn, _ = pay(gateway, receiver, orders, browser)
    fields = dict(parse_qsl(ipn.body.decode(), keep_blank_values=True))
    for drop in ("verify_sign", "verify_key"):
        unsigned = urlencode({k: v for k, v in fields.items() if k != drop}).encode()
        with pytest.raises(GatewayRejected):
            gateway.verify_webhook(ipn.headers, unsigned, orders.get)


def test_forged_unsigned_browser_success_is_checked_with_the_gateway(gateway, receiver, orders):
    reference, _ = start(gateway, receiver, orders)

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback({"tran_id": reference, "val_id": "260101000000forged", "status": "VALID",
                                  "amount": "500.00"}, orders.get)
    assert caught.value.gateway_code == "INVALID_TRANSACTION"


def test_val_id_of_another_order_is_rejected(gateway, receiver, orders, browser):
    _, _, fields = pay(gateway, receiver, orders, browser)
    other = orders.new()

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback({"tran_id": other, "val_id": fields["val_id"], "status": "VALID"}, orders.get)
    assert caught.value.code == "reference_mismatch"


@pytest.mark.parametrize("stored", ["500.01", "499.99"])
def test_one_paisa_difference_is_rejected(gateway, receiver, orders, browser, stored):
    reference, ipn, _ = pay(gateway, receiver, orders, browser)
    orders[reference] = (Decimal(stored), "BDT")

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(ipn.headers, ipn.body, orders.get)
    assert caught.value.code == "amount_mismatch"


def test_query_by_tran_id(gateway, receiver, orders, browser):
    reference, _ = start(gateway, receiver, orders)
    assert gateway.query(reference, orders.get).status == Status.PENDING  # nothing paid yet

    reference, ipn, _ = pay(gateway, receiver, orders, browser)
    confirmation = gateway.query(reference, orders.get)

    assert confirmation.status == Status.COMPLETED and confirmation.reference == reference


def test_refund_is_accepted_and_completes(gateway, receiver, orders, browser):
    _, ipn, _ = pay(gateway, receiver, orders, browser)
    confirmation = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)

    refund = gateway.refund(confirmation.transaction_id, Decimal("100.00"), "duplicate payment")

    assert refund["status"] == "pending" and refund["refund_id"]
    assert gateway.refund_status(refund["refund_id"])["status"] == "completed"
    with pytest.raises(GatewayRejected):
        gateway.refund(confirmation.transaction_id, Decimal("400.01"), "more than paid")


def test_session_refused_for_bad_store_credentials(make_gateway, sim, receiver, orders):
    gateway = SslcommerzGateway(SslcommerzConfig(base_url=sim.base_url, store_id=STORE, store_password="wrong-pass"))
    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)
    assert "wrong-pass" not in str(caught.value)
    gateway.close()


def test_validation_timeout_is_unknown(make_gateway, sim, receiver, orders, browser):
    gateway = make_gateway(timeout=0.4)
    _, ipn, _ = pay(gateway, receiver, orders, browser)
    sim.faults.timeout_next(5, path="validationserverAPI")

    began = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        gateway.verify_webhook(ipn.headers, ipn.body, orders.get)
    assert time.monotonic() - began < 2


def test_gateway_down_is_unavailable(gateway, sim, receiver, orders):
    sim.faults.set_down()
    with pytest.raises(GatewayUnavailable):
        start(gateway, receiver, orders)


def test_ipn_may_arrive_after_the_browser(gateway, sim, receiver, orders, browser):
    sim.ipn_order = "after"
    reference, started = start(gateway, receiver, orders)
    fields = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))

    first = gateway.confirm_callback(fields, orders.get)
    deadline = time.monotonic() + 3
    while not receiver.received("/webhooks/sslcommerz/ipn") and time.monotonic() < deadline:
        time.sleep(0.02)
    (ipn,) = receiver.received("/webhooks/sslcommerz/ipn")
    second = gateway.verify_webhook(ipn.headers, ipn.body, orders.get)

    assert first.status == second.status == Status.COMPLETED
    assert first.transaction_id == second.transaction_id
