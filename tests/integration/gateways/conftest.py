"""Simulators over real sockets, our side's receiving end, and a browser.

Everything here is plain pytest: no database. RSA keys are generated once per session.
"""

from __future__ import annotations

import secrets
import threading
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ispbill.sim.http import Request, serve_in_thread

from .hosted_pages import Browser


@pytest.fixture(scope="session")
def rsa_key():
    """``rsa_key(name)``: a 2048-bit key per name, generated once per test session."""
    keys: dict[str, rsa.RSAPrivateKey] = {}
    lock = threading.Lock()

    def get(name: str) -> rsa.RSAPrivateKey:
        with lock:
            if name not in keys:
                keys[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return keys[name]

    return get


@pytest.fixture
def serve():
    """``serve(app, tls=False)`` starts a server for this test; all stop afterwards."""
    servers = []

    def start(app, **options):
        server = serve_in_thread(app, **options)
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


class Receiver:
    """Our public side (ISPBILL_PUBLIC_URL): records every request, answers 200."""

    def __init__(self):
        self.requests: list[Request] = []
        self.base_url = ""
        self._lock = threading.Lock()

    def bind(self, base_url: str, *, tls: bool) -> None:
        self.base_url = base_url

    def __call__(self, environ, start_response):
        request = Request.from_environ(environ)
        with self._lock:
            self.requests.append(request)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def received(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver(serve) -> Receiver:
    r = Receiver()
    serve(r)
    return r


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


class Orders(dict):
    """Our stored attempts: ``reference -> (amount, currency)``; ``orders.get`` is the
    ``expected`` callable the adapters take."""

    def new(self, amount: str = "500.00", currency: str = "BDT") -> str:
        reference = "T" + secrets.token_hex(6).upper()
        self[reference] = (Decimal(amount), currency)
        return reference


@pytest.fixture
def orders() -> Orders:
    return Orders()
