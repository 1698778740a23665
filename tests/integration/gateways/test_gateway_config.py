"""Configuration from the environment, and secrets kept out of reprs, errors and logs."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from ispbill.payments.gateways import (
    BkashGateway,
    Confirmation,
    GatewayNotConfigured,
    GatewayRejected,
    NagadGateway,
    SslcommerzGateway,
    StartRequest,
    Status,
    configured_gateways,
    ensure_matches,
)
from ispbill.payments.gateways.base import RedactSecrets
from ispbill.payments.gateways.sns import string_to_sign
from ispbill.sim.bkash import BkashSimulator
from ispbill.sim.nagad import NagadSimulator
from ispbill.sim.sslcommerz import SslcommerzSimulator

BKASH_SECRET, BKASH_PASSWORD, BKASH_APP_KEY = "bk-app-secret-Q7Z", "bk-password-W3X", "bk-app-key-R5Y"
STORE_PASSWORD = "store-password-K9J"


def _pem_private(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def environ(rsa_key, tmp_path):
    key_file = tmp_path / "merchant.pem"
    key_file.write_text(_pem_private(rsa_key("nagad-merchant")))
    return {
        "BKASH_BASE_URL": "https://tokenized.sandbox.bka.sh/v1.2.0-beta", "BKASH_APP_KEY": BKASH_APP_KEY,
        "BKASH_APP_SECRET": BKASH_SECRET, "BKASH_USERNAME": "isp-user", "BKASH_PASSWORD": BKASH_PASSWORD,
        "BKASH_SNS_TOPIC_ARN": "arn:aws:sns:ap-southeast-1:123456789012:isp",
        "NAGAD_BASE_URL": "https://api.mynagad.com/api/dfs", "NAGAD_MERCHANT_ID": "683002007104225",
        "NAGAD_MERCHANT_PRIVATE_KEY": str(key_file), "NAGAD_PG_PUBLIC_KEY": _pem_public(rsa_key("nagad-pg")),
        "SSLCOMMERZ_BASE_URL": "https://sandbox.sslcommerz.com", "SSLCOMMERZ_STORE_ID": "isp01",
        "SSLCOMMERZ_STORE_PASSWORD": STORE_PASSWORD,
    }


def test_all_configured(environ):
    found = configured_gateways(environ)

    assert sorted(found) == ["bkash", "nagad", "sslcommerz"]
    assert isinstance(found["bkash"], BkashGateway)
    assert isinstance(found["nagad"], NagadGateway)
    assert isinstance(found["sslcommerz"], SslcommerzGateway)
    for g in found.values():
        g.close()


@pytest.mark.parametrize(
    ("unset", "left"),
    [
        ("BKASH_SNS_TOPIC_ARN", ["nagad", "sslcommerz"]),
        ("BKASH_PASSWORD", ["nagad", "sslcommerz"]),
        ("NAGAD_PG_PUBLIC_KEY", ["bkash", "sslcommerz"]),
        ("SSLCOMMERZ_STORE_PASSWORD", ["bkash", "nagad"]),
    ],
)
@pytest.mark.parametrize("how", ["missing", "blank"])
def test_only_complete_configurations_are_listed(environ, unset, left, how):
    if how == "missing":
        del environ[unset]
    else:
        environ[unset] = "   "

    assert sorted(configured_gateways(environ)) == left


def test_nothing_configured():
    assert configured_gateways({}) == {}


def test_from_env_names_what_is_missing_but_never_values(environ):
    del environ["BKASH_USERNAME"]
    with pytest.raises(GatewayNotConfigured) as caught:
        BkashGateway.from_env(environ)
    assert "BKASH_USERNAME" in str(caught.value)
    assert BKASH_SECRET not in str(caught.value) and BKASH_PASSWORD not in str(caught.value)


def test_set_but_unusable_key_raises(environ):
    environ["NAGAD_PG_PUBLIC_KEY"] = "not a key at all"
    with pytest.raises(GatewayNotConfigured) as caught:
        configured_gateways(environ)
    assert "NAGAD_PG_PUBLIC_KEY" in str(caught.value) and "not a key at all" not in str(caught.value)


def test_configured_gateways_reads_os_environ_when_not_given(environ, monkeypatch):
    for name in environ:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSLCOMMERZ_BASE_URL", environ["SSLCOMMERZ_BASE_URL"])
    monkeypatch.setenv("SSLCOMMERZ_STORE_ID", "isp01")
    monkeypatch.setenv("SSLCOMMERZ_STORE_PASSWORD", STORE_PASSWORD)

    assert list(configured_gateways()) == ["sslcommerz"]


def test_reprs_hide_secrets(environ):
    found = configured_gateways(environ)
    merchant_key_body = environ["NAGAD_PG_PUBLIC_KEY"].splitlines()[1]
    shown = " ".join(repr(x) for g in found.values() for x in (g, g.config))

    for secret in (BKASH_SECRET, BKASH_PASSWORD, BKASH_APP_KEY, "isp-user", STORE_PASSWORD, merchant_key_body):
        assert secret not in shown
    assert "PRIVATE" not in shown
    for g in found.values():
        g.close()


def test_secrets_stay_out_of_logs_during_real_flows(environ, serve, rsa_key, receiver, orders, browser, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "ispbill"):
        caplog.set_level(logging.DEBUG, logger=name)

    # bKash: grant, 401, grant again, execute.
    bkash_sim = BkashSimulator(app_key=BKASH_APP_KEY, app_secret=BKASH_SECRET, username="isp-user",
                               password=BKASH_PASSWORD, sns_key=rsa_key("bkash-sns"))
    serve(bkash_sim)
    bkash = BkashGateway.from_env({**environ, "BKASH_BASE_URL": bkash_sim.api_base_url}, timeout=3)
    reference = orders.new()
    request = StartRequest(reference=reference, amount=Decimal("500.00"), customer_name="A", customer_phone="",
                           customer_email="", return_url_base=receiver.base_url)
    started = bkash.start(request)
    bkash_sim.expire_tokens()
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    assert bkash.confirm_callback(params, orders.get).status == Status.COMPLETED
    tokens = list(bkash_sim.tokens) + list(bkash_sim.refresh_tokens)
    assert len(bkash_sim.tokens) == 2
    bad = BkashGateway.from_env({**environ, "BKASH_BASE_URL": bkash_sim.api_base_url, "BKASH_APP_SECRET": "wrong-secret-Z"})
    with pytest.raises(GatewayRejected) as bkash_error:
        bad.start(request)

    # SSLCommerz: the store password travels in validation query strings.
    ssl_sim = SslcommerzSimulator(stores={"isp01": STORE_PASSWORD})
    serve(ssl_sim)
    ssl = SslcommerzGateway.from_env({**environ, "SSLCOMMERZ_BASE_URL": ssl_sim.base_url}, timeout=3)
    reference = orders.new()
    started = ssl.start(StartRequest(reference=reference, amount=Decimal("500.00"), customer_name="A",
                                     customer_phone="01712345678", customer_email="a@example.com",
                                     return_url_base=receiver.base_url))
    fields = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    confirmation = ssl.confirm_callback(fields, orders.get)
    ssl.refund(confirmation.transaction_id, Decimal("1.00"), "test")

    # Nagad: keys from a file and PEM text.
    nagad_sim = NagadSimulator(pg_key=rsa_key("nagad-pg"))
    nagad_sim.register_merchant(environ["NAGAD_MERCHANT_ID"], _pem_public(rsa_key("nagad-merchant")))
    serve(nagad_sim)
    nagad = NagadGateway.from_env({**environ, "NAGAD_BASE_URL": nagad_sim.api_base_url}, timeout=3)
    reference = orders.new()
    started = nagad.start(StartRequest(reference=reference, amount=Decimal("500.00"), customer_name="A",
                                       customer_phone="", customer_email="", return_url_base=receiver.base_url))
    params = browser.back_to_merchant(browser.press(started.redirect_url, "Pay"))
    assert nagad.confirm_callback(params, orders.get).status == Status.COMPLETED

    text = caplog.text
    assert "validationserverAPI.php" in text  # httpx did log the calls...
    assert "store_passwd=[redacted]" in text  # ...with the password masked
    private_body = _pem_private(rsa_key("nagad-merchant")).splitlines()[1]
    secrets = [BKASH_SECRET, BKASH_PASSWORD, BKASH_APP_KEY, STORE_PASSWORD, "wrong-secret-Z", private_body, *tokens]
    for secret in secrets:
        assert secret not in text
        assert secret not in str(bkash_error.value)
        for g in (bkash, ssl, nagad, bad):
            assert secret not in repr(g) and secret not in repr(g.config)
        assert secret not in repr(bkash._store)
    for g in (bkash, ssl, nagad, bad):
        g.close()


def test_redaction_filter_masks_credential_parameters():
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"',
                               ("GET", httpx.URL("https://x/api?val_id=1&store_passwd=hunter2&format=json"), "200 OK"), None)

    RedactSecrets().filter(record)

    assert "hunter2" not in record.getMessage()
    assert "val_id=1" in record.getMessage() and "store_passwd=[redacted]" in record.getMessage()


# -- the shared rules ------------------------------------------------------------------------

def _confirmation(status=Status.COMPLETED, amount="500.00", currency="BDT", reference="INV1"):
    return Confirmation(status=status, transaction_id="TRX1", amount=Decimal(amount) if amount else None,
                        currency=currency, reference=reference, method_label="bKash", risk=None, raw={})


@pytest.mark.parametrize(
    ("stored", "code"),
    [
        ((Decimal("500.01"), "BDT"), "amount_mismatch"),
        ((Decimal("499.99"), "BDT"), "amount_mismatch"),
        ((Decimal("500.001"), "BDT"), "amount_mismatch"),
        ((Decimal("500.00"), "USD"), "currency_mismatch"),
        (None, "unknown_reference"),
    ],
)
def test_ensure_matches_refuses_any_difference(stored, code):
    with pytest.raises(GatewayRejected) as caught:
        ensure_matches(_confirmation(), lambda ref: stored)
    assert caught.value.code == code
    assert caught.value.confirmation.transaction_id == "TRX1"


def test_ensure_matches_accepts_equal_values_and_ignores_unpaid():
    assert ensure_matches(_confirmation(amount="500"), lambda ref: (Decimal("500.00"), "bdt")).status == "completed"
    assert ensure_matches(_confirmation(status=Status.FAILED, amount=None), {}.get).status == Status.FAILED
    with pytest.raises(TypeError):
        ensure_matches(_confirmation(), lambda ref: (500.0, "BDT"))


@pytest.mark.parametrize("reference", ["", "ABC\n", "A" * 21, "INV-1", "ইনভয়েস"])
def test_start_request_refuses_bad_references(reference):
    with pytest.raises(ValueError):
        StartRequest(reference=reference, amount=Decimal("1.00"), customer_name="", customer_phone="",
                     customer_email="", return_url_base="https://isp.example")


@pytest.mark.parametrize("amount", [Decimal("1.001"), Decimal("0"), Decimal("-5"), Decimal("NaN"), 10, 10.5])
def test_start_request_refuses_bad_amounts(amount):
    with pytest.raises(ValueError):
        StartRequest(reference="INV1", amount=amount, customer_name="", customer_phone="", customer_email="",
                     return_url_base="https://isp.example")


def test_start_request_formats_and_trims():
    request = StartRequest(reference="INV1", amount=Decimal("500"), customer_name="", customer_phone="",
                           customer_email="", return_url_base="https://isp.example/")
    assert request.amount_text == "500.00" and request.return_url_base == "https://isp.example"


def test_sns_string_to_sign_follows_the_key_order():
    envelope = {"Type": "Notification", "TopicArn": "arn:t", "Timestamp": "2026-01-01T00:00:00.000Z",
                "MessageId": "m-1", "Message": '{"a":1}', "Signature": "x", "SigningCertURL": "y"}
    assert string_to_sign(envelope) == (
        b'Message\n{"a":1}\nMessageId\nm-1\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n'
    )
    assert b"Subject\nHi\n" in string_to_sign({**envelope, "Subject": "Hi"})
