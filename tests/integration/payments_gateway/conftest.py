"""Gateway payments end to end: our routes (Django test client) against the gateway
simulators over real HTTP (``sim.http.serve_in_thread``).

Our public URL (``ISPBILL_PUBLIC_URL``) is a recording server: what the gateways send
there (the browser's return, the IPN) is recorded and then handed to our routes through
the test client, in whatever order a test wants.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.test import Client

from ispbill.api.tokens import issue_token
from ispbill.payments import gateway_services, links
from ispbill.payments.gateways import GATEWAYS
from ispbill.sim.bkash import BkashSimulator
from ispbill.sim.http import Request
from ispbill.sim.nagad import NagadSimulator
from ispbill.sim.sslcommerz import SslcommerzSimulator

from ..api.api_support import JsonClient
from ..billing.billing_support import bill, make_package, make_subscriber
from ..gateways.conftest import Receiver, rsa_key, serve  # noqa: F401  (shared simulator fixtures)
from ..gateways.hosted_pages import Browser

TOPIC = "arn:aws:sns:ap-southeast-1:123456789012:isp-payments"
BKASH = {"app_key": "key-123", "app_secret": "secret-456", "username": "isp", "password": "pw-789"}
NAGAD_MERCHANT = "683002007104225"
STORE, STORE_PASSWORD = "ispbd01", "ispbd01@ssl"
NOV_1 = date(2026, 11, 1)


@pytest.fixture
def receiver(serve, settings) -> Receiver:
    r = Receiver()
    serve(r)
    settings.ISPBILL_PUBLIC_URL = r.base_url
    return r


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture
def client() -> Client:
    return Client()


def forward(client: Client, request: Request):
    """Hand a request the gateway (or the customer's browser) sent to our public URL to
    our routes."""
    if request.method == "GET":
        return client.get(request.path, request.query)
    headers = {k: v for k, v in request.headers.items() if k not in ("content-type", "content-length", "host")}
    return client.generic(request.method, request.path, request.body,
                          content_type=request.headers.get("content-type", "application/octet-stream"), headers=headers)


@pytest.fixture(autouse=True)
def _no_gateway_environment(monkeypatch):
    """Only what a test configures is offered; adapter options never leak between tests."""
    for cls in GATEWAYS.values():
        for name in cls.env_vars:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NAGAD_SIGNATURE_HASH", raising=False)
    yield
    for name in GATEWAYS:
        gateway_services.set_adapter_options(name)


class Fetcher:
    """The SNS certificate fetcher, trusting the simulator's TLS certificate."""

    def __init__(self, server):
        self.urls: list[str] = []
        self._context = server.client_ssl_context()

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        response = httpx.get(url, verify=self._context, timeout=5)
        response.raise_for_status()
        return response.content


@pytest.fixture
def bkash(serve, rsa_key, monkeypatch, receiver):
    sim = BkashSimulator(**BKASH, topic_arn=TOPIC, sns_key=rsa_key("bkash-sns"))
    serve(sim)
    sim.tls = serve(sim, tls=True)
    for name, value in {
        "BKASH_BASE_URL": sim.api_base_url, "BKASH_APP_KEY": BKASH["app_key"], "BKASH_APP_SECRET": BKASH["app_secret"],
        "BKASH_USERNAME": BKASH["username"], "BKASH_PASSWORD": BKASH["password"], "BKASH_SNS_TOPIC_ARN": TOPIC,
    }.items():
        monkeypatch.setenv(name, value)
    sim.fetcher = Fetcher(sim.tls)
    # The simulator's certificate lives on 127.0.0.1, not on an amazonaws.com host.
    gateway_services.set_adapter_options("bkash", sns_host_pattern=r"127\.0\.0\.1", sns_fetch=sim.fetcher, timeout=3.0)
    return sim


def pem_private(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def nagad(serve, rsa_key, monkeypatch, receiver):
    sim = NagadSimulator(pg_key=rsa_key("nagad-pg"))
    sim.register_merchant(NAGAD_MERCHANT, pem_public(rsa_key("nagad-merchant")))
    serve(sim)
    monkeypatch.setenv("NAGAD_BASE_URL", sim.api_base_url)
    monkeypatch.setenv("NAGAD_MERCHANT_ID", NAGAD_MERCHANT)
    monkeypatch.setenv("NAGAD_MERCHANT_PRIVATE_KEY", pem_private(rsa_key("nagad-merchant")))
    monkeypatch.setenv("NAGAD_PG_PUBLIC_KEY", sim.pg_public_key_pem)
    gateway_services.set_adapter_options("nagad", timeout=3.0)
    return sim


@pytest.fixture
def sslcommerz(serve, monkeypatch, receiver):
    sim = SslcommerzSimulator(stores={STORE: STORE_PASSWORD})
    serve(sim)
    monkeypatch.setenv("SSLCOMMERZ_BASE_URL", sim.base_url)
    monkeypatch.setenv("SSLCOMMERZ_STORE_ID", STORE)
    monkeypatch.setenv("SSLCOMMERZ_STORE_PASSWORD", STORE_PASSWORD)
    gateway_services.set_adapter_options("sslcommerz", timeout=3.0)
    return sim


class World:
    """A subscriber owing November's 1000.00, with a payment link."""

    def __init__(self, clock):
        self.clock = clock
        self.package = make_package("Home 10M", "1000.00")
        self.sub = self.subscriber(email="rahim@example.com")
        bill(NOV_1)

    def subscriber(self, **extra):
        return make_subscriber(self.package, NOV_1, **extra)

    def token(self, sub=None) -> str:
        link = links.current_link(subscriber_id=(sub or self.sub).pk, now=self.clock.now(), valid_days=30)
        return links.token_for(link)


@pytest.fixture
def world(db, fixed_clock) -> World:
    return World(fixed_clock)


@pytest.fixture
def api(db, fixed_clock) -> JsonClient:
    from django.contrib.auth.models import Group

    from ispbill.backoffice.services import ensure_roles

    # The exceptions queue (match, reject, refund) needs the billing role's manage_billing.
    ensure_roles()
    user = get_user_model().objects.create_user("cashier", "cashier@example.com")
    user.groups.add(Group.objects.get(name="billing"))
    return JsonClient(issue_token(username=user.username))


def query(params: dict) -> str:
    return urlencode(params)
