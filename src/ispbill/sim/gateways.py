"""bKash, Nagad and SSLCommerz simulators in one process: the demo's payment gateways.

    python -m ispbill.sim.gateways --port 18780 --public-url http://127.0.0.1:8000
    python -m ispbill.sim.gateways --port 18780 --public-url URL --env-file PATH   # what ``serve --demo-gateways`` runs

One plain-HTTP port serves the three simulators side by side. Their paths do not overlap
(bKash ``/v1.2.0-beta/tokenized/checkout/…``, ``/redirect/tokenized/``, ``/sns/…``; Nagad
``/remote-payment-gateway-1.0/api/dfs/…``, ``/check-out/…``; SSLCommerz
``/gwprocess/v4/api.php``, ``/EasyCheckOut/…``, ``/validator/api/…``), so each keeps the
real gateway's paths and its hosted page (Pay / Cancel / Fail) works unchanged. A second
port (``--tls-port``, default the next one) serves bKash over TLS with a self-signed
certificate for 127.0.0.1: the SNS signing certificate and SubscribeURL must be https.

Credentials are fixed demo values; Nagad's key pairs (the gateway's and the merchant's)
are generated at every start. :meth:`GatewaySims.environment` is the configuration
ispbill needs to use them: the gateway variables (``BKASH_*``, ``NAGAD_*``,
``SSLCOMMERZ_*``) plus ``ISPBILL_DEMO_GATEWAYS=1`` and ``ISPBILL_DEMO_SNS_CERT`` (the TLS
certificate, PEM), with which ``gateway_services`` accepts the simulator's SNS
certificate on 127.0.0.1 — outside production only. ``--env-file`` writes it as JSON
(``{"env": {...}, "http": URL, "https": URL}``, mode 0600) once both ports listen;
without it the variables are printed as shell ``export`` lines.

With ``--public-url`` set, bKash notifies every completed payment by SNS to
``<public-url>/webhooks/bkash`` (as the real webhook does) and SSLCommerz delivers its IPN
to the ``ipn_url`` ispbill gave it, before answering the customer's browser.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ispbill.sim.bkash import DEFAULT_TOPIC_ARN, BkashSimulator
from ispbill.sim.http import SimApp, SimServer, serve_in_thread
from ispbill.sim.nagad import NagadSimulator
from ispbill.sim.sslcommerz import SslcommerzSimulator

BKASH_CREDENTIALS = {"app_key": "demo-app-key", "app_secret": "demo-app-secret", "username": "demo-merchant",
                     "password": "demo-password"}
NAGAD_MERCHANT_ID = "683002007104225"
SSLCOMMERZ_STORE, SSLCOMMERZ_PASSWORD = "demostore", "demostore@ssl"
#: Requests each simulator remembers (tests read them; a long demo must not grow forever).
KEEP_REQUESTS = 1000


class Combined:
    """One WSGI app in front of several simulators: a request goes to the first whose
    route table has a path matching it (any method, so a wrong method still gets that
    simulator's 405)."""

    def __init__(self, apps: Iterable[SimApp], keep_requests: int | None = KEEP_REQUESTS):
        self.apps = list(apps)
        self.keep_requests = keep_requests

    def bind(self, base_url: str, *, tls: bool) -> None:
        for app in self.apps:
            app.bind(base_url, tls=tls)

    def app_for(self, path: str) -> SimApp | None:
        for app in self.apps:
            if any(pattern.match(path) for _, pattern, _ in app._compiled):
                return app
        return None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        app = self.app_for(path)
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
            return [b"Not Found"]
        try:
            return app(environ, start_response)
        finally:
            if self.keep_requests is not None and len(app.requests) > 2 * self.keep_requests:
                with app._lock:
                    del app.requests[: -self.keep_requests]


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class GatewaySims:
    """The three simulators, served: ``http`` (all three) and ``https`` (bKash, for SNS)."""

    bkash: BkashSimulator
    nagad: NagadSimulator
    sslcommerz: SslcommerzSimulator
    merchant_key: rsa.RSAPrivateKey = field(repr=False)
    http: SimServer = field(repr=False)
    https: SimServer = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def environment(self) -> dict[str, str]:
        """What ispbill's processes need to pay through these simulators."""
        return {
            "BKASH_BASE_URL": self.bkash.api_base_url,
            "BKASH_APP_KEY": BKASH_CREDENTIALS["app_key"],
            "BKASH_APP_SECRET": BKASH_CREDENTIALS["app_secret"],
            "BKASH_USERNAME": BKASH_CREDENTIALS["username"],
            "BKASH_PASSWORD": BKASH_CREDENTIALS["password"],
            "BKASH_SNS_TOPIC_ARN": self.bkash.topic_arn,
            "NAGAD_BASE_URL": self.nagad.api_base_url,
            "NAGAD_MERCHANT_ID": NAGAD_MERCHANT_ID,
            "NAGAD_MERCHANT_PRIVATE_KEY": _pem_private(self.merchant_key),
            "NAGAD_PG_PUBLIC_KEY": self.nagad.pg_public_key_pem,
            "SSLCOMMERZ_BASE_URL": self.sslcommerz.base_url,
            "SSLCOMMERZ_STORE_ID": SSLCOMMERZ_STORE,
            "SSLCOMMERZ_STORE_PASSWORD": SSLCOMMERZ_PASSWORD,
            "ISPBILL_DEMO_GATEWAYS": "1",
            "ISPBILL_DEMO_SNS_CERT": self.https.ca_pem.decode("ascii"),
        }

    def stop(self) -> None:
        self.https.stop()
        self.http.stop()

    def __enter__(self) -> GatewaySims:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_gateway_sims(
    *, host: str = "127.0.0.1", port: int = 0, tls_port: int = 0, public_url: str | None = None,
    keep_requests: int | None = KEEP_REQUESTS,
) -> GatewaySims:
    """Serve the three simulators from background threads (port 0: any free port)."""
    merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bkash = BkashSimulator(**BKASH_CREDENTIALS, topic_arn=DEFAULT_TOPIC_ARN)
    nagad = NagadSimulator()
    nagad.register_merchant(NAGAD_MERCHANT_ID, merchant_key.public_key())
    sslcommerz = SslcommerzSimulator(stores={SSLCOMMERZ_STORE: SSLCOMMERZ_PASSWORD})
    http = serve_in_thread(Combined([bkash, nagad, sslcommerz], keep_requests), host=host, port=port)
    try:
        https = serve_in_thread(Combined([bkash], keep_requests), host=host, port=tls_port, tls=True)
    except BaseException:
        http.stop()
        raise
    if public_url:
        bkash.notify_url = public_url.rstrip("/") + "/webhooks/bkash"
    return GatewaySims(bkash=bkash, nagad=nagad, sslcommerz=sslcommerz, merchant_key=merchant_key, http=http, https=https)


def _write_env_file(path: str, sims: GatewaySims) -> None:
    data = {"env": sims.environment(), "http": sims.http.base_url, "https": sims.https.base_url}
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)  # readers see the whole file or none


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ispbill.sim.gateways", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18780, help="plain HTTP for all three (0: any free port)")
    parser.add_argument("--tls-port", type=int, default=None, help="bKash over TLS for SNS (default: --port + 1; 0: any)")
    parser.add_argument("--public-url", default=None,
                        help="ispbill's public URL: bKash then notifies completed payments to <url>/webhooks/bkash")
    parser.add_argument("--env-file", default=None, help="write ispbill's gateway configuration here (JSON)")
    args = parser.parse_args(argv)
    tls_port = args.tls_port if args.tls_port is not None else (args.port + 1 if args.port else 0)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sims = start_gateway_sims(host=args.host, port=args.port, tls_port=tls_port, public_url=args.public_url)
    except OSError as exc:
        print(f"gateway simulators: cannot listen on {args.host}:{args.port}/{tls_port}: {exc}", file=sys.stderr)
        return 1
    with sims:
        print(f"gateway simulators (bKash, Nagad, SSLCommerz) on {sims.http.base_url}; bKash SNS over "
              f"{sims.https.base_url}", flush=True)
        if args.env_file:
            _write_env_file(args.env_file, sims)
        else:
            for name, value in sims.environment().items():
                print(f"export {name}={shlex.quote(value)}")
            sys.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
