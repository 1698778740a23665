"""The bKash adapter against the bKash simulator over real HTTP (and HTTPS for SNS)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest

from ispbill.payments.gateways import (
    BkashGateway,
    GatewayRejected,
    GatewayUnavailable,
    StartRequest,
    Status,
    WebhookAck,
)
from ispbill.payments.gateways.bkash import BkashConfig
from ispbill.payments.gateways.sns import DEFAULT_HOST_PATTERN
from ispbill.sim.bkash import BkashSimulator
from ispbill.sim.http import free_port

TOPIC = "arn:aws:sns:ap-southeast-1:123456789012:isp-payments"


@pytest.fixture
def sim(serve, rsa_key):
    s = BkashSimulator(app_key="key-123", app_secret="secret-456", username="isp", password="pw-789",
                       topic_arn=TOPIC, sns_key=rsa_key("bkash-sns"))
    serve(s)
    s.tls = serve(s, tls=True)  # the SNS certificate and SubscribeURL are https
    return s


class Fetcher:
    """The SNS fetcher, trusting the simulator's TLS certificate; records what it fetched."""

    def __init__(self, server):
        self.urls: list[str] = []
        self._context = server.client_ssl_context()

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        response = httpx.get(url, verify=self._context, timeout=5)
        response.raise_for_status()
        return response.content


@pytest.fixture
def fetcher(sim):
    return Fetcher(sim.tls)


@pytest.fixture
def make_gateway(sim, fetcher):
    made = []

    def make(**options) -> BkashGateway:
        config = BkashConfig(base_url=sim.api_base_url, app_key="key-123", app_secret="secret-456", username="isp",
                             password="pw-789", sns_topic_arn=options.pop("topic", TOPIC))
        options.setdefault("timeout", 3.0)
        options.setdefault("sns_host_pattern", r"127\.0\.0\.1")
        options.setdefault("sns_fetch", fetcher)
        gateway = BkashGateway(config, **options)
        made.append(gateway)
        return gateway

    yield make
    for g in made:
        g.close()


@pytest.fixture
def gateway(make_gateway) -> BkashGateway:
    return make_gateway()


def start(gateway, receiver, orders, amount="500.00"):
    reference = orders.new(amount)
    request = StartRequest(reference=reference, amount=Decimal(amount), customer_name="Rahim",
                           customer_phone="+8801712345678", customer_email="r@example.com",
                           return_url_base=receiver.base_url)
    return reference, gateway.start(request)


def paid(gateway, sim, receiver, orders, browser, amount="500.00"):
    reference, started = start(gateway, receiver, orders, amount)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    return reference, started, params


# -- the happy path and its repeats ----------------------------------------------------------

def test_customer_pays_and_execute_confirms(gateway, sim, receiver, orders, browser):
    reference, started = start(gateway, receiver, orders)
    assert started.gateway_reference.startswith("TR0011")
    assert started.redirect_url.startswith(sim.base_url)
    assert sim.payment(started.gateway_reference)["payerReference"] == "01712345678"

    page, _ = browser.page(started.redirect_url)
    assert "Pay" in page and "Cancel" in page
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    assert params["status"] == "success" and params["paymentID"] == started.gateway_reference
    assert receiver.received("/pay/bkash/callback")

    confirmation = gateway.confirm_callback(params, orders.get)

    assert confirmation.status == Status.COMPLETED
    assert re.fullmatch(r"[A-Z0-9]{10}", confirmation.transaction_id)
    assert confirmation.transaction_id == sim.payment(started.gateway_reference)["trxID"]
    assert (confirmation.amount, confirmation.currency, confirmation.reference) == (Decimal("500.00"), "BDT", reference)
    assert confirmation.method_label == "bKash"
    assert confirmation.gateway_reference == started.gateway_reference


def test_repeated_callback_gets_2062_then_query_confirms_the_same_payment(gateway, sim, receiver, orders, browser):
    _, started, params = paid(gateway, sim, receiver, orders, browser)
    first = gateway.confirm_callback(params, orders.get)

    again = gateway.confirm_callback(params, orders.get)

    assert again.status == Status.COMPLETED
    assert again.transaction_id == first.transaction_id
    assert sim.payment(started.gateway_reference)["executions"] == 2  # the second answered 2062
    assert sim.calls("payment/status")


def test_query_by_payment_id(gateway, sim, receiver, orders, browser):
    reference, started, params = paid(gateway, sim, receiver, orders, browser)
    assert gateway.query(started.gateway_reference, orders.get).status == Status.PENDING  # approved, not executed
    gateway.confirm_callback(params, orders.get)

    confirmation = gateway.query(started.gateway_reference, orders.get)

    assert confirmation.status == Status.COMPLETED and confirmation.reference == reference


# -- what the customer may do instead --------------------------------------------------------

def test_customer_cancels(gateway, sim, receiver, orders, browser):
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Cancel"))
    assert params["status"] == "cancel"

    confirmation = gateway.confirm_callback(params, orders.get)

    assert confirmation.status == Status.CANCELLED
    assert confirmation.transaction_id is None
    assert sim.payment(started.gateway_reference)["executions"] == 0


def test_payment_fails(gateway, sim, receiver, orders, browser):
    _, started = start(gateway, receiver, orders)
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Fail"))

    assert gateway.confirm_callback(params, orders.get).status == Status.FAILED


def test_execute_refused_is_failed_with_the_reason(gateway, sim, receiver, orders, browser):
    _, _, params = paid(gateway, sim, receiver, orders, browser)
    sim.next_execute_error = ("2023", "Insufficient Balance")

    confirmation = gateway.confirm_callback(params, orders.get)

    assert confirmation.status == Status.FAILED
    assert "2023" in confirmation.detail


def test_forged_success_callback_does_not_confirm_an_unpaid_payment(gateway, sim, receiver, orders):
    _, started = start(gateway, receiver, orders)  # the customer never approved it

    confirmation = gateway.confirm_callback({"paymentID": started.gateway_reference, "status": "success"}, orders.get)

    assert confirmation.status != Status.COMPLETED
    assert sim.payment(started.gateway_reference)["transactionStatus"] == "Initiated"


# -- timeouts, errors, tokens ----------------------------------------------------------------

def test_execute_timeout_then_query_finds_it_completed(make_gateway, sim, receiver, orders, browser):
    gateway = make_gateway(timeout=0.4)
    _, started, params = paid(gateway, sim, receiver, orders, browser)
    sim.faults.timeout_next(5, path="/execute")  # executes, then the answer is lost

    began = time.monotonic()
    confirmation = gateway.confirm_callback(params, orders.get)

    assert time.monotonic() - began < 2
    assert confirmation.status == Status.COMPLETED
    assert confirmation.transaction_id == sim.payment(started.gateway_reference)["trxID"]
    assert sim.payment(started.gateway_reference)["executions"] == 1


def test_execute_timeout_and_query_down_leaves_it_unknown(make_gateway, sim, receiver, orders, browser):
    gateway = make_gateway(timeout=0.4)
    _, _, params = paid(gateway, sim, receiver, orders, browser)
    sim.faults.timeout_next(5, path="/execute")
    sim.faults.fail_next(503, path="/payment/status")

    with pytest.raises(GatewayUnavailable):
        gateway.confirm_callback(params, orders.get)


@pytest.mark.parametrize("fault", ["5xx", "down", "refused"])
def test_unavailable_gateway(make_gateway, gateway, sim, receiver, orders, fault):
    start(gateway, receiver, orders)  # a token is cached
    if fault == "5xx":
        sim.faults.fail_next(502, path="/create")
    elif fault == "down":
        sim.faults.set_down()
    else:
        gateway = make_gateway()
        gateway.config = replace(gateway.config, base_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(GatewayUnavailable):
        start(gateway, receiver, orders)


def test_token_is_cached_and_granted_again_exactly_once_after_401(gateway, sim, receiver, orders):
    start(gateway, receiver, orders)
    start(gateway, receiver, orders)
    assert sim.grants == 1

    sim.expire_tokens()
    _, started = start(gateway, receiver, orders)  # 401, one grant, retried

    assert started.gateway_reference.startswith("TR0011")
    assert sim.grants == 2
    assert len(sim.calls("/create")) == 4
    start(gateway, receiver, orders)
    assert sim.grants == 2 and sim.refreshes == 0


def test_token_near_expiry_is_refreshed_not_granted(make_gateway, sim, receiver, orders):
    gateway = make_gateway(refresh_margin=timedelta(hours=2))  # always "near expiry"
    start(gateway, receiver, orders)
    start(gateway, receiver, orders)

    assert (sim.grants, sim.refreshes) == (1, 1)


def test_wrong_credentials_are_refused(make_gateway, sim, receiver, orders):
    gateway = make_gateway()
    gateway.config = replace(gateway.config, password="wrong")

    with pytest.raises(GatewayRejected) as caught:
        start(gateway, receiver, orders)
    assert "wrong" not in str(caught.value)


# -- money checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("stored", ["500.01", "499.99"])
def test_one_paisa_difference_is_rejected(gateway, sim, receiver, orders, browser, stored):
    reference, _, params = paid(gateway, sim, receiver, orders, browser)
    orders[reference] = (Decimal(stored), "BDT")

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback(params, orders.get)

    assert caught.value.code == "amount_mismatch"
    assert caught.value.confirmation.amount == Decimal("500.00")


def test_currency_and_unknown_reference_are_rejected(gateway, sim, receiver, orders, browser):
    reference, _, params = paid(gateway, sim, receiver, orders, browser)
    orders[reference] = (Decimal("500.00"), "USD")
    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback(params, orders.get)
    assert caught.value.code == "currency_mismatch"

    with pytest.raises(GatewayRejected) as caught:
        gateway.confirm_callback(params, {}.get)
    assert caught.value.code == "unknown_reference"


# -- refunds ---------------------------------------------------------------------------------

def test_refund_part_then_refuse_more_than_paid(gateway, sim, receiver, orders, browser):
    _, started, params = paid(gateway, sim, receiver, orders, browser)
    confirmation = gateway.confirm_callback(params, orders.get)

    refund = gateway.refund(confirmation.transaction_id, Decimal("200.00"), "plan downgrade",
                            gateway_reference=started.gateway_reference)

    assert refund["status"] == "completed" and re.fullmatch(r"[A-Z0-9]{10}", refund["refund_id"])
    assert refund["amount"] == Decimal("200.00")
    status = gateway.refund_status(confirmation.transaction_id, gateway_reference=started.gateway_reference)
    assert status["refund_id"] == refund["refund_id"]
    with pytest.raises(GatewayRejected):
        gateway.refund(confirmation.transaction_id, Decimal("300.01"), "too much", gateway_reference=started.gateway_reference)


def test_refund_accepted_pending_then_completed(gateway, sim, receiver, orders, browser):
    _, started, params = paid(gateway, sim, receiver, orders, browser)
    trx_id = gateway.confirm_callback(params, orders.get).transaction_id
    payment_id = started.gateway_reference
    sim.refunds_complete = False

    refund = gateway.refund(trx_id, Decimal("200.00"), "plan downgrade", gateway_reference=payment_id)

    assert refund["status"] == "pending" and re.fullmatch(r"[A-Z0-9]{10}", refund["refund_id"])
    assert refund["amount"] == Decimal("200.00") and refund["raw"]["transactionStatus"] == "Initiated"
    waiting = gateway.refund_status(trx_id, gateway_reference=payment_id)
    assert (waiting["status"], waiting["refund_id"], waiting["amount"]) == ("pending", refund["refund_id"], Decimal("200.00"))

    sim.finish_refund(refund["refund_id"], "Completed")
    done = gateway.refund_status(trx_id, gateway_reference=payment_id)

    assert (done["status"], done["refund_id"], done["amount"]) == ("completed", refund["refund_id"], Decimal("200.00"))
    assert done["raw"]["transactionStatus"] == "Completed" and done["raw"]["completedTime"]
    with pytest.raises(GatewayRejected):  # the 200.00 went back: only 300.00 is left
        gateway.refund(trx_id, Decimal("300.01"), "too much", gateway_reference=payment_id)


@pytest.mark.parametrize("ending", ["Failed", "Cancelled"])
def test_refund_accepted_pending_then_failed(gateway, sim, receiver, orders, browser, ending):
    _, started, params = paid(gateway, sim, receiver, orders, browser)
    trx_id = gateway.confirm_callback(params, orders.get).transaction_id
    payment_id = started.gateway_reference
    sim.refunds_complete = False
    refund = gateway.refund(trx_id, Decimal("500.00"), "charged twice", gateway_reference=payment_id)
    assert refund["status"] == "pending"

    sim.finish_refund(refund["refund_id"], ending)
    failed = gateway.refund_status(trx_id, gateway_reference=payment_id)

    assert (failed["status"], failed["refund_id"], failed["amount"]) == ("failed", refund["refund_id"], Decimal("500.00"))
    assert failed["raw"]["transactionStatus"] == ending
    # The money stayed with the merchant: all of it can be refunded again.
    sim.refunds_complete = True
    again = gateway.refund(trx_id, Decimal("500.00"), "charged twice", gateway_reference=payment_id)
    assert again["status"] == "completed" and again["refund_id"] != refund["refund_id"]


# -- the SNS webhook -------------------------------------------------------------------------

def completed_payment(gateway, sim, receiver, orders, browser, amount="500.00"):
    reference, started, params = paid(gateway, sim, receiver, orders, browser, amount)
    gateway.confirm_callback(params, orders.get)
    return reference, started.gateway_reference


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_notification_delivered_and_verified(gateway, sim, receiver, orders, browser, version):
    reference, payment_id = completed_payment(gateway, sim, receiver, orders, browser)

    status = sim.fire_sns_notification(receiver.base_url + "/webhooks/bkash", payment_id, signature_version=version)
    assert status == 200
    (delivered,) = receiver.received("/webhooks/bkash")

    confirmation = gateway.verify_webhook(delivered.headers, delivered.body, orders.get)

    assert confirmation.status == Status.COMPLETED
    assert confirmation.transaction_id == sim.payment(payment_id)["trxID"]
    assert (confirmation.amount, confirmation.currency, confirmation.reference) == (Decimal("500.00"), "BDT", reference)
    assert confirmation.raw["envelope"]["MessageId"] == delivered.headers["x-amz-sns-message-id"]


def test_simulator_notifies_completed_payments_by_itself(gateway, sim, receiver, orders, browser):
    sim.notify_url = receiver.base_url + "/webhooks/bkash"
    reference, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    deadline = time.monotonic() + 3
    while not sim.sns_deliveries and time.monotonic() < deadline:
        time.sleep(0.02)

    assert sim.sns_deliveries == [(payment_id, 200)]
    (delivered,) = receiver.received("/webhooks/bkash")
    confirmation = gateway.verify_webhook(delivered.headers, delivered.body, orders.get)
    assert confirmation.status == Status.COMPLETED and confirmation.reference == reference


def test_sns_certificate_is_fetched_once(gateway, sim, receiver, orders, browser, fetcher):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    for _ in range(3):
        headers, body = sim.sns_notification(payment_id)
        gateway.verify_webhook(headers, body, orders.get)

    assert fetcher.urls == [sim.signing_cert_url]
    assert sim.signing_cert_url.startswith("https://")


def test_sns_payment_without_our_reference_needs_review(gateway, sim, receiver, orders, browser):
    reference, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    message = {**sim.webhook_message(payment_id), "merchantInvoiceNumber": ""}

    confirmation = gateway.verify_webhook(*sim.sns_notification(message=message), orders.get)

    assert confirmation.status == Status.NEEDS_REVIEW and confirmation.reference is None


def test_sns_amount_one_paisa_off_is_rejected(gateway, sim, receiver, orders, browser):
    reference, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    orders[reference] = (Decimal("500.01"), "BDT")

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*sim.sns_notification(payment_id), orders.get)
    assert caught.value.code == "amount_mismatch"


def test_sns_subscription_confirmation_visits_subscribe_url(gateway, sim, receiver):
    assert sim.fire_sns(receiver.base_url + "/webhooks/bkash", sim.sns_subscription_confirmation()) == 200
    (delivered,) = receiver.received("/webhooks/bkash")

    ack = gateway.verify_webhook(delivered.headers, delivered.body, {}.get)

    assert isinstance(ack, WebhookAck)
    assert len(sim.confirmed_subscriptions) == 1


def _tampered(headers_body, **changes):
    headers, body = headers_body
    envelope = json.loads(body)
    envelope.update(changes)
    return headers, json.dumps(envelope).encode()


def test_forged_sns_signature_is_rejected(gateway, sim, receiver, orders, browser):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    headers, body = sim.sns_notification(payment_id)
    message = json.loads(json.loads(body)["Message"])
    forged = _tampered((headers, body), Message=json.dumps({**message, "amount": "5000.00"}))

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*forged, orders.get)
    assert caught.value.code == "bad_signature"


def test_sns_signature_version_must_match_the_hash(gateway, sim, receiver, orders, browser):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    signed_sha1 = sim.sns_notification(payment_id, signature_version="1")

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*_tampered(signed_sha1, SignatureVersion="2"), orders.get)
    assert caught.value.code == "bad_signature"


def test_forged_subscription_confirmation_is_not_followed(gateway, sim):
    elsewhere = sim.tls.base_url + "/sns/?" + urlencode({"Action": "ConfirmSubscription", "TopicArn": TOPIC, "Token": "x"})
    forged = _tampered(sim.sns_subscription_confirmation(), SubscribeURL=elsewhere)

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*forged, {}.get)
    assert caught.value.code == "bad_signature"
    assert sim.confirmed_subscriptions == []


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example.com/SimpleNotificationService-1.pem",  # another host
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",  # a look-alike
        "https://user@127.0.0.1/SimpleNotificationService-1.pem",  # credentials in the URL
        "cert-http",  # plain http on the right host
        "cert-no-pem",  # not a .pem
    ],
)
def test_bad_certificate_url_is_rejected_before_fetching(gateway, sim, receiver, orders, browser, fetcher, cert_url):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    if cert_url == "cert-http":
        cert_url = sim.signing_cert_url.replace(sim.tls.base_url, sim.base_url)
        assert cert_url.startswith("http://127.0.0.1")
    elif cert_url == "cert-no-pem":
        cert_url = sim.signing_cert_url[: -len(".pem")] + ".txt"

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*sim.sns_notification(payment_id, cert_url=cert_url), orders.get)

    assert caught.value.code == "bad_cert_url"
    assert fetcher.urls == []


def test_production_host_rule_refuses_the_simulator(make_gateway, sim, receiver, orders, browser, fetcher):
    gateway = make_gateway(sns_host_pattern=DEFAULT_HOST_PATTERN)
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*sim.sns_notification(payment_id), orders.get)
    assert caught.value.code == "bad_cert_url" and fetcher.urls == []


def test_wrong_topic_is_rejected(gateway, sim, receiver, orders, browser):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    other_topic = "arn:aws:sns:ap-southeast-1:999999999999:someone-else"

    with pytest.raises(GatewayRejected) as caught:
        gateway.verify_webhook(*sim.sns_notification(payment_id, topic_arn=other_topic), orders.get)
    assert caught.value.code == "wrong_topic"


def test_message_type_header_must_agree(gateway, sim, receiver, orders, browser):
    _, payment_id = completed_payment(gateway, sim, receiver, orders, browser)
    headers, body = sim.sns_notification(payment_id)

    with pytest.raises(GatewayRejected):
        gateway.verify_webhook({**headers, "x-amz-sns-message-type": "SubscriptionConfirmation"}, body, orders.get)
    with pytest.raises(GatewayRejected):
        gateway.verify_webhook(headers, b"not json", orders.get)
