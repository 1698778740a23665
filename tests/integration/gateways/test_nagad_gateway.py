"""The Nagad adapter against the Nagad simulator over real HTTP."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from ispbill.payments.gateways import (
    GatewayNotConfigured,
    GatewayRejected,
    GatewayUnavailable,
    NagadGateway,
    NotSupported,
    StartRequest,
    Status,
)
from ispbill.payments.gateways.nagad import NagadConfig, load_private_key, load_public_key
from ispbill.sim.nagad import NagadSimulator

MERCHANT = "683002007104225"


def private_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ).decode()


def public_pem(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode()


@pytest.fixture
def make_sim(serve, rsa_key):
    def make(**options) -> NagadSimulator:
        sim = NagadSimulator(pg_key=rsa_key("nagad-pg"), **options)
        sim.register_merchant(MERCHANT, public_pem(rsa_key("nagad-merchant")))
        serve(sim)
        return sim

    return make


@pytest.fixture
def sim(make_sim) -> NagadSimulator:
    return make_sim()


@pytest.fixture
def make_gateway(sim, rsa_key):
    made = []

    def make(simulator=None, *, merchant_key="nagad-merchant", signature_hash="sha256", **options) -> NagadGateway:
        s = simulator or sim
        config = NagadConfig(
            base_url=s.api_base_url, merchant_id=MERCHANT,
            merchant_private_key=load_private_key(private_pem(rsa_key(merchant_key))),
            pg_public_key=load_public_key(s.pg_public_key_pem), signature_hash=signature_hash,
        )
        options.setdefault("timeout", 3.0)
        gateway = NagadGateway(config, **options)
        made.append(gateway)
        return gateway

    yield make
    for g in made:
        g.close()


@pytest.fixture
def gateway(make_gateway) -> NagadGateway:
    return make_gateway()


def start(gateway, receiver, orders, amount="500.00"):
    reference = orders.new(amount)
    started = gateway.start(StartRequest(
        reference=reference, amount=Decimal(amount), customer_name="Karim", customer_phone="01812345678",
        customer_email="k@example.com", return_url_base=receiver.base_url, client_ip="103.4.145.2",
    ))
    return reference, started


def test_customer_pays_and_verify_confirms(gateway, sim, receiver, orders, browser):
    reference, started = start(gateway, receiver, orders)
    assert started.redirect_url.startswith(sim.base_url + "/check-out/")
    assert started.raw["initialize"]["paymentReferenceId"] == started.gateway_reference
    init = sim.calls("/check-out/initialize/")[0]
    assert init.headers["x-km-ip-v4"] == "103.4.145.2" and init.headers["x-km-api-version"] == "v-0.2.0"

    page, _ = browser.page(started.redirect_url)
    assert "Pay" in page and "Cancel" in page
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    assert params["status"] == "Success" and params["order_id"] == reference
    assert receiver.received("/pay/nagad/callback")

    confirmation = gateway.confirm_callback(params, orders.get)

    assert confirmation.status == Status.COMPLETED
    assert confirmation.transaction_id == params["issuer_payment_ref"] == sim.payment(started.gateway_reference)["issuerPaymentRefNo"]
    assert (confirmation.amount, confirmation.currency, confirmation.reference) == (Decimal("500.00"), "BDT", reference)
    assert confirmation.method_label == "Nagad"
    assert gateway.query(started.gateway_reference, orders.get).transaction_id == confirmation.transaction_id


@pytest.mark.parametrize(("button", "status"), [("Cancel", Status.CANCELLED), ("Fail", Status.FAILED)])
def test_customer_cancels_or_payment_fails(gateway, receiver, orders, browser, button, status):
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, button))

    confirmation = gateway.confirm_callback(params, orders.get)

    assert confirmation.status == status and confirmation.transaction_id is None


def test_forged_success_callback_is_not_believed(gateway, sim, receiver, orders):
    reference, started = start(gateway, receiver, orders)  # the customer has not paid
    forged = {"merchant": MERCHANT, "order_id": reference, "payment_ref_id": started.gateway_reference,
              "status": "Success", "status_code": "00_0000_000", "issuer_payment_ref": "FAKE1234"}

    confirmation = gateway.confirm_callback(forged, orders.get)

    assert confirmation.status == Status.PENDING


def test_callback_naming_another_order_is_rejected(gateway, receiver, orders, browser):
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback({**params, "order_id": "SOMEONEELSE1"}, orders.get)
    assert caught.value.code == "reference_mismatch"


def test_sha1_signatures_when_both_sides_use_them(make_sim, make_gateway, receiver, orders, browser):
    sim = make_sim(signature_hash="sha1")
    gateway = make_gateway(sim, signature_hash="sha1")
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))

    assert gateway.confirm_callback(params, orders.get).status == Status.COMPLETED


def test_our_bad_signature_is_refused_with_058(make_gateway, sim, receiver, orders):
    gateway = make_gateway(merchant_key="not-the-registered-key")

    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)

    assert caught.value.code == "gateway_refused"
    assert caught.value.gateway_code == "16_0006_058"
    assert not sim.payments


def test_wrong_hash_is_refused_with_058(make_gateway, receiver, orders):
    gateway = make_gateway(signature_hash="sha1")  # the simulator expects SHA256

    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)
    assert caught.value.gateway_code == "16_0006_058"


def test_tampered_response_signature_is_rejected(gateway, sim, receiver, orders):
    sim.tamper_next_response()

    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)

    assert caught.value.code == "bad_signature"
    assert not sim.calls("/check-out/complete/")


def test_challenge_must_echo(gateway, sim, receiver, orders):
    sim.wrong_challenge_next()

    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)
    assert caught.value.code == "challenge_mismatch"


def test_missing_headers_get_064_and_the_error_envelope(sim):
    response = httpx.post(f"{sim.api_base_url}/check-out/initialize/{MERCHANT}/ORDER12345", json={})

    assert response.status_code == 400
    assert response.json()["reason"] == "16_0006_064"
    assert response.json()["message"]


def test_duplicate_order_id_today_is_refused(gateway, receiver, orders):
    reference, _ = start(gateway, receiver, orders)
    again = StartRequest(reference=reference, amount=Decimal("500.00"), customer_name="K", customer_phone="",
                         customer_email="", return_url_base=receiver.base_url)

    with pytest.raises(GatewayRejected) as caught:
        gateway.start(again)
    assert caught.value.gateway_code == "16_0006_083"


def test_clock_far_off_is_refused_with_076(make_gateway, receiver, orders):
    gateway = make_gateway(now=lambda: datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)
    assert caught.value.gateway_code == "16_0006_076"


@pytest.mark.parametrize("stored", ["500.01", "499.99"])
def test_one_paisa_difference_is_rejected(gateway, receiver, orders, browser, stored):
    reference, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    orders[reference] = (Decimal(stored), "BDT")

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback(params, orders.get)
    assert caught.value.code == "amount_mismatch"


def test_verify_timeout_is_unknown_and_a_later_query_confirms(make_gateway, sim, receiver, orders, browser):
    gateway = make_gateway(timeout=0.4)
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    sim.faults.timeout_next(5, path="/verify/payment/")

    began = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        gateway.confirm_callback(params, orders.get)
    assert time.monotonic() - began < 2

    assert gateway.query(started.gateway_reference, orders.get).status == Status.COMPLETED


def test_gateway_down_and_5xx_are_unavailable(gateway, sim, receiver, orders):
    sim.faults.fail_next(500, path="/initialize/")
    with pytest.raises(GatewayUnavailable):
        start(gateway, receiver, orders)
    sim.faults.set_down()
    with pytest.raises(GatewayUnavailable):
        start(gateway, receiver, orders)


def test_unknown_payment_reference_is_refused_with_055(gateway, orders):
    with pytest.raises(GatewayRejected) as caught:
        gateway.query("NOSUCHREFERENCE", orders.get)
    assert caught.value.gateway_code == "16_0006_055"


def test_no_webhook_and_no_refund(gateway):
    with pytest.raises(NotSupported):
        gateway.verify_webhook({}, b"", {}.get)
    with pytest.raises(NotSupported):
        gateway.refund("TRX", Decimal("1.00"), "r")


def test_order_id_shorter_than_five_is_refused_locally(gateway, receiver):
    with pytest.raises(ValueError):
        gateway.start(StartRequest(reference="AB12", amount=Decimal("10.00"), customer_name="", customer_phone="",
                                   customer_email="", return_url_base=receiver.base_url))


# -- keys from the environment ---------------------------------------------------------------

def test_keys_load_from_pem_text_file_and_bare_base64(rsa_key, tmp_path):
    key = rsa_key("nagad-merchant")
    pem = private_pem(key)
    path = tmp_path / "merchant.pem"
    path.write_text(pem)
    bare = "".join(line for line in public_pem(key).splitlines() if "-----" not in line)
    numbers = key.public_key().public_numbers()

    assert load_private_key(pem).private_numbers() == key.private_numbers()
    assert load_private_key(str(path)).private_numbers() == key.private_numbers()
    assert load_public_key(bare).public_numbers() == numbers
    bare_private = "".join(line for line in pem.splitlines() if "-----" not in line)
    assert load_private_key(bare_private).private_numbers() == key.private_numbers()


def test_unusable_key_is_named_but_not_shown(rsa_key):
    secret_text = "TOPSECRETNOTAKEY" * 4
    with pytest.raises(GatewayNotConfigured) as caught:
        load_private_key(secret_text)
    assert "NAGAD_MERCHANT_PRIVATE_KEY" in str(caught.value) and secret_text not in str(caught.value)
    garbage = base64.b64encode(b"garbage" * 10).decode()
    with pytest.raises(GatewayNotConfigured) as caught:
        load_public_key(garbage)
    assert garbage not in str(caught.value)
