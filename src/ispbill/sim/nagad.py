"""A Nagad online-payment simulator (API v-0.2.0).

Serve it with :func:`ispbill.sim.http.serve_in_thread`; point ``NAGAD_BASE_URL`` at
``sim.api_base_url`` and ``NAGAD_PG_PUBLIC_KEY`` at ``sim.pg_public_key_pem``, and
register the merchant's public key with :meth:`register_merchant`.

* A generated PG key pair. Requests must carry the ``X-KM-*`` headers (else reason
  ``…_064``); sensitiveData must decrypt with the PG private key (``…_057``) and the
  signature verify with the merchant's public key (``…_058``); unknown merchant
  ``…_050``, bad order id ``…_068``, dateTime outside the window ``…_076``, order id
  reused the same day ``…_083``, unknown payment reference ``…_055``.
* ``initialize`` answers encrypted to the merchant and signed with the PG key;
  ``complete`` answers ``{status: "Success", callBackUrl}``: a page with **Pay**,
  **Cancel** and **Fail** that sends the browser to ``merchantCallbackURL?merchant=…
  &order_id=…&payment_ref_id=…&status=…``; ``verify/payment/{ref}`` tells the truth.
* Switches: :meth:`tamper_next_response` (the next initialize answer's signature is
  broken) and :meth:`wrong_challenge_next`, besides :class:`~ispbill.sim.http.Faults`.

Errors use the envelope ``{"reason": "16_0006_<suffix>", "message": …}`` with HTTP 400;
the ``16_0006_`` prefix on every endpoint and suffix 099 ("invalid request": bad amount,
currency, challenge, state) are the simulator's choice.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import secrets
import string
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ispbill.sim.http import Request, Response, SimApp, hidden, html_response, json_response, page, redirect

DHAKA = ZoneInfo("Asia/Dhaka")
API_PREFIX = "/remote-payment-gateway-1.0/api/dfs"
_P = r"(?:/remote-payment-gateway-1\.0)?/api/dfs/"
_ORDER_ID = re.compile(r"^[A-Za-z0-9]{5,20}$")
_AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
_HEADERS = ("x-km-api-version", "x-km-ip-v4", "x-km-client-type")
_CLIENT_TYPES = {"PC_WEB", "MOBILE_WEB", "MOBILE_APP", "WALLET_WEB_VIEW", "BILL_KEY"}
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}


def _error(suffix: str, message: str, status: int = 400) -> Response:
    return json_response({"reason": f"16_0006_{suffix}", "message": message}, status)


class NagadSimulator(SimApp):
    routes = [
        ("POST", _P + r"check-out/initialize/(?P<merchant_id>[^/]+)/(?P<order_id>[^/]+)", "initialize"),
        ("POST", _P + r"check-out/complete/(?P<reference>[^/]+)", "complete"),
        ("GET", _P + r"verify/payment/(?P<reference>[^/]+)", "verify"),
        ("GET", r"/check-out/(?P<reference>[A-Za-z0-9_-]+)", "hosted_page"),
        ("POST", r"/check-out/(?P<reference>[A-Za-z0-9_-]+)/action", "hosted_action"),
    ]

    def __init__(
        self,
        *,
        pg_key: rsa.RSAPrivateKey | None = None,
        signature_hash: str = "sha256",
        datetime_window: timedelta = timedelta(minutes=10),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        super().__init__()
        self._pg_key = pg_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._hash = _HASHES[signature_hash]
        self.datetime_window = datetime_window
        self._now = now
        self.merchants: dict[str, rsa.RSAPublicKey] = {}
        self.payments: dict[str, dict] = {}
        self._orders_today: set[tuple[str, str, str]] = set()
        self._tamper_next = False
        self._wrong_challenge_next = False
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<NagadSimulator {self.base_url or 'unbound'} {len(self.payments)} payment(s)>"

    # -- what tests use ----------------------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def pg_public_key_pem(self) -> str:
        return self._pg_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode()

    def register_merchant(self, merchant_id: str, public_key: rsa.RSAPublicKey | str | bytes) -> None:
        if not isinstance(public_key, rsa.RSAPublicKey):
            data = public_key.encode() if isinstance(public_key, str) else public_key
            public_key = serialization.load_pem_public_key(data)
        self.merchants[merchant_id] = public_key

    def tamper_next_response(self) -> None:
        """Break the signature of the next initialize answer."""
        self._tamper_next = True

    def wrong_challenge_next(self) -> None:
        """Echo another challenge in the next initialize answer (signed correctly)."""
        self._wrong_challenge_next = True

    def payment(self, reference: str) -> dict:
        with self._state:
            return dict(self.payments[reference])

    # -- API ---------------------------------------------------------------------------------

    def initialize(self, request: Request, merchant_id: str, order_id: str) -> Response:
        if (bad := self._check_headers(request)) is not None:
            return bad
        merchant_key = self.merchants.get(merchant_id)
        if merchant_key is None:
            return _error("050", "Invalid merchant")
        if not _ORDER_ID.fullmatch(order_id):
            return _error("068", "Invalid order id")
        body = _json(request)
        opened = self._open(body, merchant_key)
        if isinstance(opened, Response):
            return opened
        if opened.get("merchantId") != merchant_id or opened.get("orderId") != order_id:
            return _error("068", "Order or merchant does not match the request")
        challenge = str(opened.get("challenge") or "")
        if len(challenge) != 40:
            return _error("099", "Invalid challenge")
        try:
            sent = datetime.strptime(str(opened.get("datetime") or body.get("dateTime") or ""), "%Y%m%d%H%M%S")
        except ValueError:
            return _error("076", "Invalid date-time")
        now = self._now().astimezone(DHAKA)
        if abs(sent.replace(tzinfo=DHAKA) - now) > self.datetime_window:
            return _error("076", "Request date-time out of the allowed window")
        with self._state:
            day_key = (merchant_id, order_id, now.strftime("%Y%m%d"))
            if day_key in self._orders_today:
                return _error("083", "Duplicate order id today")
            self._orders_today.add(day_key)
            reference = base64.urlsafe_b64encode(secrets.token_bytes(36)).decode().rstrip("=")
            self.payments[reference] = {
                "merchantId": merchant_id, "orderId": order_id, "challenge": challenge, "status": "OrderInitiated",
                "amount": None, "callbackURL": None, "orderDateTime": now.strftime("%Y-%m-%d %H:%M:%S"),
                "issuerPaymentRefNo": None, "issuerPaymentDateTime": None, "clientMobileNo": None,
                "additionalMerchantInfo": None,
            }
            echoed = challenge
            if self._wrong_challenge_next:
                self._wrong_challenge_next = False
                echoed = "".join(secrets.choice(string.ascii_letters) for _ in range(40))
            tamper, self._tamper_next = self._tamper_next, False
        plain = json.dumps({
            "paymentReferenceId": reference, "challenge": echoed, "acceptDateTime": now.strftime("%Y%m%d%H%M%S"),
        }, separators=(",", ":")).encode()
        signature = self._pg_key.sign(plain, padding.PKCS1v15(), self._hash())
        if tamper:
            signature = bytes([signature[0] ^ 0xFF]) + signature[1:]
        return json_response({
            "sensitiveData": base64.b64encode(merchant_key.encrypt(plain, padding.PKCS1v15())).decode(),
            "signature": base64.b64encode(signature).decode(),
        })

    def complete(self, request: Request, reference: str) -> Response:
        if (bad := self._check_headers(request)) is not None:
            return bad
        with self._state:
            payment = self.payments.get(reference)
        if payment is None:
            return _error("055", "Invalid payment reference")
        body = _json(request)
        opened = self._open(body, self.merchants[payment["merchantId"]])
        if isinstance(opened, Response):
            return opened
        if opened.get("merchantId") != payment["merchantId"] or opened.get("orderId") != payment["orderId"]:
            return _error("068", "Order or merchant does not match the payment")
        if opened.get("challenge") != payment["challenge"]:
            return _error("099", "Challenge does not match")
        if opened.get("currencyCode") != "050":
            return _error("099", "Invalid currency code")
        amount = str(opened.get("amount") or "")
        if not _AMOUNT.fullmatch(amount) or Decimal(amount) <= 0:
            return _error("099", "Invalid amount")
        callback = str(body.get("merchantCallbackURL") or "")
        if not callback.startswith(("http://", "https://")):
            return _error("099", "Invalid merchantCallbackURL")
        with self._state:
            if payment["status"] != "OrderInitiated":
                return _error("099", "Order already completed")
            payment.update(amount=f"{Decimal(amount):.2f}", callbackURL=callback, status="Ready",
                           additionalMerchantInfo=body.get("additionalMerchantInfo"))
        return json_response({"status": "Success", "callBackUrl": f"{self.base_url}/check-out/{reference}"})

    def verify(self, request: Request, reference: str) -> Response:
        with self._state:
            p = self.payments.get(reference)
            if p is None:
                return _error("055", "Invalid payment reference")
            success = p["status"] == "Success"
            return json_response({
                "merchantId": p["merchantId"], "orderId": p["orderId"], "paymentRefId": reference,
                "amount": p["amount"], "clientMobileNo": p["clientMobileNo"], "merchantMobileNo": "01700000000",
                "orderDateTime": p["orderDateTime"], "issuerPaymentDateTime": p["issuerPaymentDateTime"],
                "issuerPaymentRefNo": p["issuerPaymentRefNo"], "additionalMerchantInfo": p["additionalMerchantInfo"],
                "status": p["status"], "statusCode": "000" if success else "001",
                "cancelIssuerDateTime": None, "cancelIssuerRefNo": None,
            })

    # -- the hosted page ---------------------------------------------------------------------

    def hosted_page(self, request: Request, reference: str) -> Response:
        with self._state:
            p = self.payments.get(reference)
            status, amount = (p["status"], p["amount"]) if p else (None, None)
        if p is None:
            return html_response(page("Nagad", "<p>Unknown payment.</p>"), 404)
        if status != "Ready":
            return html_response(page("Nagad", f"<p>This payment is {html.escape(status)}.</p>"), 409)
        form = (
            f"<p>Pay BDT {html.escape(amount)}.</p>"
            f"<form method='post' action='/check-out/{reference}/action'>"
            + hidden("reference", reference)
            + "<label>Nagad account <input name='account' value='01811111111'></label>"
            "<button type='submit' name='action' value='pay'>Pay</button>"
            "<button type='submit' name='action' value='cancel'>Cancel</button>"
            "<button type='submit' name='action' value='fail'>Fail</button>"
            "</form>"
        )
        return html_response(page("Nagad Checkout", form))

    def hosted_action(self, request: Request, reference: str) -> Response:
        form = request.form()
        now = self._now().astimezone(DHAKA)
        with self._state:
            p = self.payments.get(reference)
            if p is None or p["status"] != "Ready":
                return html_response(page("Nagad", "<p>This payment cannot be changed.</p>"), 409)
            action = form.get("action")
            if action == "pay":
                issuer_ref = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
                p.update(status="Success", issuerPaymentRefNo=issuer_ref, clientMobileNo=form.get("account") or "01811111111",
                         issuerPaymentDateTime=now.strftime("%Y-%m-%d %H:%M:%S"))
                code, message = "00_0000_000", "Successful Transaction"
            elif action == "cancel":
                p["status"] = "Aborted"
                code, message = "00_1111_000", "Aborted by customer"
            else:
                p["status"] = "Failed"
                code, message = "00_2222_000", "Payment failed"
            params = {
                "merchant": p["merchantId"], "order_id": p["orderId"], "payment_ref_id": reference,
                "status": p["status"], "status_code": code, "message": message,
                "payment_dt": now.strftime("%Y%m%d%H%M%S"), "issuer_payment_ref": p["issuerPaymentRefNo"] or "",
            }
            url = p["callbackURL"]
        return redirect(url + ("&" if "?" in url else "?") + urlencode(params))

    # -- internals ---------------------------------------------------------------------------

    def _check_headers(self, request: Request) -> Response | None:
        missing = [h for h in _HEADERS if not request.headers.get(h)]
        if missing:
            return _error("064", f"Header missing: {', '.join(missing)}")
        if request.headers["x-km-api-version"] != "v-0.2.0" or request.headers["x-km-client-type"] not in _CLIENT_TYPES:
            return _error("064", "Header value invalid")
        return None

    def _open(self, body: dict, merchant_key: rsa.RSAPublicKey) -> dict | Response:
        try:
            encrypted = base64.b64decode(str(body["sensitiveData"]), validate=True)
            signature = base64.b64decode(str(body["signature"]), validate=True)
            plain = self._pg_key.decrypt(encrypted, padding.PKCS1v15())
        except (KeyError, binascii.Error, ValueError):
            return _error("057", "Failed to decrypt sensitive data")
        try:
            merchant_key.verify(signature, plain, padding.PKCS1v15(), self._hash())
        except InvalidSignature:
            return _error("058", "Failed to verify signature")
        try:
            data = json.loads(plain)
        except ValueError:
            return _error("057", "Sensitive data is not JSON")
        return data if isinstance(data, dict) else _error("057", "Sensitive data is not an object")


def _json(request: Request) -> dict:
    try:
        data = request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

