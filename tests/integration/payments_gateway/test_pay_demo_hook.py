"""``ispbill serve --demo-gateways`` lets the bKash adapter accept the local simulator's
SNS certificate (ISPBILL_DEMO_GATEWAYS=1 + ISPBILL_DEMO_SNS_CERT), outside production
only, through ``gateway_services.set_adapter_options``."""

from __future__ import annotations

import logging

import pytest

from ispbill.payments import gateway_services
from ispbill.sim.http import self_signed_tls_certificate


@pytest.fixture
def demo_env(monkeypatch):
    cert, _ = self_signed_tls_certificate()
    monkeypatch.setenv(gateway_services.DEMO_FLAG, "1")
    monkeypatch.setenv(gateway_services.DEMO_SNS_CERT, cert.decode())
    monkeypatch.setattr(gateway_services, "_demo_checked", False)
    yield
    gateway_services.set_adapter_options("bkash")


def bkash_options() -> dict:
    return dict(gateway_services._adapter_options.get("bkash", {}))


def test_demo_flag_trusts_the_simulator_certificate_on_localhost(demo_env, settings):
    settings.PRODUCTION = False
    gateway_services._apply_demo_options()
    options = bkash_options()
    assert options["sns_host_pattern"] == r"127\.0\.0\.1|localhost"
    assert callable(options["sns_fetch"])
    gateway_services._apply_demo_options()  # once per process
    assert bkash_options() == options


def test_demo_flag_is_ignored_in_production(demo_env, settings, caplog):
    settings.PRODUCTION = True
    with caplog.at_level(logging.ERROR, logger="ispbill.payments"):
        gateway_services._apply_demo_options()
    assert bkash_options() == {}
    assert "production" in caplog.text


def test_without_the_flag_nothing_changes(demo_env, settings, monkeypatch):
    settings.PRODUCTION = False
    monkeypatch.delenv(gateway_services.DEMO_FLAG)
    gateway_services._apply_demo_options()
    assert bkash_options() == {}


def test_options_set_explicitly_win(demo_env, settings):
    settings.PRODUCTION = False
    gateway_services.set_adapter_options("bkash", timeout=3.0)
    gateway_services._apply_demo_options()
    assert bkash_options() == {"timeout": 3.0}
