"""A bKash Tokenized Checkout simulator (v1.2.0-beta paths) with its SNS webhook.

Serve it with :func:`ispbill.sim.http.serve_in_thread`; point ``BKASH_BASE_URL`` at
``sim.api_base_url``. What it does, following the published protocol:

* ``token/grant`` and ``token/refresh`` (username/password headers, app_key/app_secret
  body) issue id_tokens that expire after ``token_lifetime`` seconds; any call with an
  expired or unknown token, or the wrong ``X-APP-Key``, answers HTTP 401
  ``{"message": "Unauthorized"}``. ``expire_tokens()`` ends every token now.
* ``create`` → paymentID ``TR0011…`` and a ``bkashURL`` to a hosted page with **Pay**,
  **Cancel** and **Fail** buttons that redirects to ``callbackURL?paymentID=…&status=
  success|cancel|failure``. ``execute`` completes an approved payment (trxID: 10 uppercase
  letters/digits); a second execute answers 2062. ``payment/status``,
  ``general/searchTransaction`` and ``payment/refund`` (refund and refund status).
* Refunds complete at once. With ``refunds_complete = False`` a refund is accepted as
  transactionStatus "Initiated" (with its refundTrxID) until :meth:`finish_refund`
  completes it or ends it "Failed"/"Cancelled" (the money stays with the merchant and
  may be refunded again); the refund status call reports the payment's latest refund as
  it stands. These refund states are the simulator's choice: the notes give none.
* SNS: an RSA key and a self-signed certificate served at
  ``/sns/SimpleNotificationService-<id>.pem``; :meth:`sns_notification` and
  :meth:`sns_subscription_confirmation` build signed messages, :meth:`fire_sns` POSTs one
  to a URL, and the SubscribeURL (``/sns/?Action=ConfirmSubscription…``) records
  confirmations. With ``notify_url`` set, every completed payment is also notified
  there by itself, from a background thread, as bKash's webhook does (results in
  ``sns_deliveries``). Serve the app a second time with ``tls=True`` so the certificate and
  SubscribeURL are https (``sim.tls_base_url``), as the adapter requires.

Status codes beyond those in the protocol notes (0000, 2001, 2002, 2062) are the
simulator's choice: 2006 invalid amount, 2007 invalid currency, 2008 invalid intent,
2023 insufficient balance, 2056 invalid payment state, 2065 mandatory field missing.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import string
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ispbill.sim.http import Request, Response, SimApp, hidden, html_response, json_response, page, redirect

DHAKA = timezone(timedelta(hours=6))
API_PREFIX = "/v1.2.0-beta"
_P = r"(?:/v1\.2\.0-beta)?/tokenized/checkout/"
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
_REFUND_UNDONE = ("Failed", "Cancelled")  # refund states in which the money did not go back
DEFAULT_TOPIC_ARN = "arn:aws:sns:ap-southeast-1:123456789012:bkash-merchant-payments"
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def bkash_time(at: datetime | None = None) -> str:
    """bKash's timestamp style: ``2019-08-07T11:12:34:978 GMT+0600``."""
    at = (at or datetime.now(UTC)).astimezone(DHAKA)
    return f"{at:%Y-%m-%dT%H:%M:%S}:{at.microsecond // 1000:03d} GMT+0600"


def _ok(**fields) -> Response:
    return json_response({"statusCode": "0000", "statusMessage": "Successful", **fields})


def _error(code: str, message: str) -> Response:
    return json_response({"statusCode": code, "statusMessage": message})


def _unauthorized() -> Response:
    return json_response({"message": "Unauthorized"}, 401)


class BkashSimulator(SimApp):
    routes = [
        ("POST", _P + "token/grant", "grant"),
        ("POST", _P + "token/refresh", "refresh"),
        ("POST", _P + "create", "create"),
        ("POST", _P + "execute", "execute"),
        ("POST", _P + "payment/status", "status"),
        ("POST", _P + "general/searchTransaction", "search"),
        ("POST", _P + "payment/refund", "refund"),
        ("GET", r"/redirect/tokenized/", "hosted_page"),
        ("POST", r"/redirect/tokenized/action", "hosted_action"),
        ("GET", r"/sns/SimpleNotificationService-(?P<cert_id>[0-9a-f]+)\.pem", "sns_certificate"),
        ("GET", r"/sns/", "sns_subscribe"),
    ]

    def __init__(
        self,
        *,
        app_key: str = "sim-app-key",
        app_secret: str = "sim-app-secret",
        username: str = "sim-merchant",
        password: str = "sim-password",
        token_lifetime: float = 3600,
        topic_arn: str = DEFAULT_TOPIC_ARN,
        sns_key: rsa.RSAPrivateKey | None = None,
        signature_version: str = "1",
    ):
        super().__init__()
        self._credentials = (app_key, app_secret, username, password)
        self.token_lifetime = token_lifetime
        self.topic_arn = topic_arn
        self.signature_version = signature_version
        self.tokens: dict[str, float] = {}  # id_token -> expiry (time.monotonic)
        self.refresh_tokens: set[str] = set()
        self.grants = 0
        self.refreshes = 0
        self.payments: dict[str, dict] = {}
        self.confirmed_subscriptions: list[str] = []
        self.next_execute_error: tuple[str, str] | None = None  # e.g. ("2023", "Insufficient Balance")
        self.refunds_complete = True
        self.notify_url: str | None = None  # where completed payments are notified by SNS
        self.sns_deliveries: list[tuple[str, int | str]] = []  # (paymentID, HTTP status or error name)
        self._sns_key = sns_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert_id = secrets.token_hex(16)
        self._cert_pem = _self_signed(self._sns_key, "sns.ap-southeast-1.amazonaws.com")
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<BkashSimulator {self.base_url or 'unbound'} {len(self.payments)} payment(s)>"

    # -- what tests use ----------------------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def signing_cert_url(self) -> str:
        return f"{self.tls_base_url or self.base_url}/sns/SimpleNotificationService-{self._cert_id}.pem"

    @property
    def signing_cert_pem(self) -> bytes:
        return self._cert_pem

    def expire_tokens(self) -> None:
        with self._state:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def payment(self, payment_id: str) -> dict:
        with self._state:
            return dict(self.payments[payment_id])

    def approve(self, payment_id: str, wallet: str = "01770618575") -> None:
        """What pressing Pay does, without the browser."""
        with self._state:
            self._approve(self.payments[payment_id], wallet)

    # -- tokens ------------------------------------------------------------------------------

    def grant(self, request: Request) -> Response:
        return self._issue(request, refresh=False)

    def refresh(self, request: Request) -> Response:
        return self._issue(request, refresh=True)

    def _issue(self, request: Request, *, refresh: bool) -> Response:
        app_key, app_secret, username, password = self._credentials
        if request.headers.get("username") != username or request.headers.get("password") != password:
            return _unauthorized()
        body = _json(request)
        if body.get("app_key") != app_key or body.get("app_secret") != app_secret:
            return _error("2001", "Invalid App Key")
        with self._state:
            if refresh:
                if body.get("refresh_token") not in self.refresh_tokens:
                    return _error("2001", "Invalid refresh token")
                self.refreshes += 1
            else:
                self.grants += 1
            id_token = secrets.token_urlsafe(48)
            refresh_token = body.get("refresh_token") if refresh else secrets.token_urlsafe(32)
            self.tokens[id_token] = time.monotonic() + self.token_lifetime
            self.refresh_tokens.add(refresh_token)
        return _ok(id_token=id_token, token_type="Bearer", expires_in=int(self.token_lifetime), refresh_token=refresh_token)

    def _authorized(self, request: Request) -> bool:
        if request.headers.get("x-app-key") != self._credentials[0]:
            return False
        with self._state:
            expiry = self.tokens.get(request.headers.get("authorization", ""))
        return expiry is not None and expiry > time.monotonic()

    # -- payments ----------------------------------------------------------------------------

    def create(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        body = _json(request)
        for name in ("mode", "payerReference", "callbackURL", "amount", "currency", "intent", "merchantInvoiceNumber"):
            if not str(body.get(name) or "").strip():
                return _error("2065", f"Mandatory field missing: {name}")
        if body["mode"] != "0011":
            return _error("2065", "Mode not supported by this simulator")
        amount = _amount(body["amount"])
        if amount is None:
            return _error("2006", "Invalid Amount")
        if body["currency"] != "BDT":
            return _error("2007", "Invalid Currency")
        if body["intent"] != "sale":
            return _error("2008", "Invalid Intent")
        with self._state:
            payment_id = self._new_payment_id()
            payment = {
                "paymentID": payment_id, "mode": "0011", "payerReference": str(body["payerReference"]),
                "callbackURL": str(body["callbackURL"]), "amount": str(body["amount"]), "currency": "BDT",
                "intent": "sale", "merchantInvoiceNumber": str(body["merchantInvoiceNumber"]),
                "paymentCreateTime": bkash_time(), "transactionStatus": "Initiated", "approved": False,
                "trxID": None, "paymentExecuteTime": None, "customerMsisdn": None, "executions": 0, "refunds": [],
            }
            self.payments[payment_id] = payment
        url = f"{self.base_url}/redirect/tokenized/?" + urlencode({"paymentID": payment_id, "mode": "0011"})
        return _ok(
            paymentID=payment_id, bkashURL=url, callbackURL=payment["callbackURL"],
            successCallbackURL=_callback(payment, "success"), failureCallbackURL=_callback(payment, "failure"),
            cancelledCallbackURL=_callback(payment, "cancel"), amount=payment["amount"], intent="sale",
            currency="BDT", paymentCreateTime=payment["paymentCreateTime"], transactionStatus="Initiated",
            merchantInvoiceNumber=payment["merchantInvoiceNumber"],
        )

    def execute(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        payment_id = str(_json(request).get("paymentID") or "")
        with self._state:
            payment = self.payments.get(payment_id)
            if payment is None:
                return _error("2002", "Invalid Payment ID")
            payment["executions"] += 1
            if payment["transactionStatus"] == "Completed":
                return _error("2062", "The payment has already been completed")
            if payment["transactionStatus"] != "Initiated" or not payment["approved"]:
                return _error("2056", "Invalid Payment State")
            if self.next_execute_error is not None:
                code, message = self.next_execute_error
                self.next_execute_error = None
                payment["transactionStatus"] = "Failed"
                return _error(code, message)
            payment["transactionStatus"] = "Completed"
            payment["trxID"] = self._new_trx_id()
            payment["paymentExecuteTime"] = bkash_time()
            if self.notify_url:
                threading.Thread(target=self._notify, args=(self.notify_url, payment_id), daemon=True).start()
            return _ok(
                paymentID=payment_id, customerMsisdn=payment["customerMsisdn"], payerReference=payment["payerReference"],
                paymentExecuteTime=payment["paymentExecuteTime"], trxID=payment["trxID"], transactionStatus="Completed",
                amount=payment["amount"], currency="BDT", intent="sale",
                merchantInvoiceNumber=payment["merchantInvoiceNumber"],
            )

    def status(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        payment_id = str(_json(request).get("paymentID") or "")
        with self._state:
            payment = self.payments.get(payment_id)
            if payment is None:
                return _error("2002", "Invalid Payment ID")
            done = payment["transactionStatus"] == "Completed"
            fields = {
                "paymentID": payment_id, "mode": payment["mode"], "paymentCreateTime": payment["paymentCreateTime"],
                "amount": payment["amount"], "currency": "BDT", "intent": "sale",
                "merchantInvoice": payment["merchantInvoiceNumber"], "transactionStatus": payment["transactionStatus"],
                "verificationStatus": "Complete" if done else "Incomplete", "payerReference": payment["payerReference"],
            }
            if done:
                fields.update(trxID=payment["trxID"], paymentExecuteTime=payment["paymentExecuteTime"],
                              customerMsisdn=payment["customerMsisdn"])
        return _ok(**fields)

    def search(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        trx_id = str(_json(request).get("trxID") or "")
        with self._state:
            found = next((p for p in self.payments.values() if p["trxID"] == trx_id), None)
            if found is None:
                return _error("2002", "Invalid transaction ID")
            return _ok(
                trxID=trx_id, transactionStatus=found["transactionStatus"], transactionType="bKash Tokenized Checkout via API",
                amount=found["amount"], currency="BDT", customerMsisdn=found["customerMsisdn"],
                organizationShortCode="01700000000", initiationTime=found["paymentCreateTime"],
                completedTime=found["paymentExecuteTime"],
            )

    def refund(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        body = _json(request)
        with self._state:
            payment = self.payments.get(str(body.get("paymentID") or ""))
            if payment is None:
                return _error("2002", "Invalid Payment ID")
            if payment["transactionStatus"] != "Completed" or body.get("trxID") != payment["trxID"]:
                return _error("2056", "Invalid Payment State")
            if "amount" not in body:  # refund status
                if not payment["refunds"]:
                    return _error("2002", "No refund for this payment")
                return _ok(**payment["refunds"][-1])
            amount = _amount(body.get("amount"))
            refunded = sum(
                (Decimal(r["amount"]) for r in payment["refunds"] if r["transactionStatus"] not in _REFUND_UNDONE),
                Decimal(0),
            )
            if amount is None or amount + refunded > Decimal(payment["amount"]):
                return _error("2006", "Invalid Amount")
            if not str(body.get("sku") or "") or not str(body.get("reason") or ""):
                return _error("2065", "Mandatory field missing: sku/reason")
            done = self.refunds_complete
            record = {
                "originalTrxID": payment["trxID"], "refundTrxID": self._new_trx_id(),
                "transactionStatus": "Completed" if done else "Initiated", "amount": f"{amount:.2f}", "currency": "BDT",
                "charge": "0.00", "completedTime": bkash_time() if done else "",
            }
            payment["refunds"].append(record)
            return _ok(**record)

    def finish_refund(self, refund_trx_id: str, status: str = "Completed") -> None:
        """Settle an ``Initiated`` refund: "Completed", or "Failed"/"Cancelled" (the money
        stays with the merchant, and may be refunded again)."""
        if status not in ("Completed", *_REFUND_UNDONE):
            raise ValueError("a refund finishes as 'Completed', 'Failed' or 'Cancelled'")
        with self._state:
            refund = next((r for p in self.payments.values() for r in p["refunds"] if r["refundTrxID"] == refund_trx_id), None)
            if refund is None:
                raise KeyError(refund_trx_id)
            if refund["transactionStatus"] != "Initiated":
                raise ValueError(f"refund {refund_trx_id} is already {refund['transactionStatus']}")
            refund["transactionStatus"] = status
            if status == "Completed":
                refund["completedTime"] = bkash_time()

    # -- the hosted page ---------------------------------------------------------------------

    def hosted_page(self, request: Request) -> Response:
        payment_id = request.query.get("paymentID", "")
        with self._state:
            payment = self.payments.get(payment_id)
            state = payment and payment["transactionStatus"]
            amount = payment and payment["amount"]
        if payment is None:
            return html_response(page("bKash", "<p>Unknown payment.</p>"), 404)
        if state != "Initiated" or payment["approved"]:
            return html_response(page("bKash", f"<p>This payment is {html.escape(state)}.</p>"), 409)
        form = (
            f"<p>Pay BDT {html.escape(amount)} to the merchant.</p>"
            "<form method='post' action='/redirect/tokenized/action'>"
            + hidden("paymentID", payment_id)
            + "<label>bKash account <input name='wallet' value='01770618575'></label>"
            "<button type='submit' name='action' value='pay'>Pay</button>"
            "<button type='submit' name='action' value='cancel'>Cancel</button>"
            "<button type='submit' name='action' value='fail'>Fail</button>"
            "</form>"
        )
        return html_response(page("bKash Checkout", form))

    def hosted_action(self, request: Request) -> Response:
        form = request.form()
        with self._state:
            payment = self.payments.get(form.get("paymentID", ""))
            if payment is None or payment["transactionStatus"] != "Initiated" or payment["approved"]:
                return html_response(page("bKash", "<p>This payment cannot be changed.</p>"), 409)
            action = form.get("action")
            if action == "pay":
                self._approve(payment, form.get("wallet") or "01770618575")
                outcome = "success"
            elif action == "cancel":
                payment["transactionStatus"] = "Cancelled"
                outcome = "cancel"
            else:
                payment["transactionStatus"] = "Failed"
                outcome = "failure"
            return redirect(_callback(payment, outcome))

    @staticmethod
    def _approve(payment: dict, wallet: str) -> None:
        payment["approved"] = True
        payment["customerMsisdn"] = wallet

    # -- SNS ---------------------------------------------------------------------------------

    def sns_certificate(self, request: Request, cert_id: str) -> Response:
        if cert_id != self._cert_id:
            return Response(404, b"Not Found")
        return Response(200, self._cert_pem, "application/x-pem-file")

    def sns_subscribe(self, request: Request) -> Response:
        if request.query.get("Action") != "ConfirmSubscription" or request.query.get("TopicArn") != self.topic_arn:
            return Response(400, b"<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>", "text/xml")
        with self._state:
            self.confirmed_subscriptions.append(request.query.get("Token", ""))
        arn = f"{self.topic_arn}:{uuid.uuid4()}"
        return Response(200, (
            "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
            f"{arn}</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        ).encode(), "text/xml")

    def webhook_message(self, payment_id: str) -> dict:
        """The webhook Message (as a dict) bKash sends for a completed payment."""
        with self._state:
            p = self.payments[payment_id]
            if p["transactionStatus"] != "Completed":
                raise ValueError("only completed payments are notified")
            return {
                "dateTime": datetime.now(DHAKA).strftime("%Y%m%d%H%M%S"), "debitMSISDN": p["customerMsisdn"],
                "creditOrganizationName": "Simulated ISP", "creditShortCode": "01700000000", "trxID": p["trxID"],
                "transactionStatus": "Completed", "transactionType": "1003", "amount": p["amount"], "currency": "BDT",
                "transactionReference": p["payerReference"], "merchantInvoiceNumber": p["merchantInvoiceNumber"],
            }

    def sns_notification(
        self,
        payment_id: str | None = None,
        *,
        message: dict | str | None = None,
        topic_arn: str | None = None,
        signature_version: str | None = None,
        cert_url: str | None = None,
        subject: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """``(headers, body)`` of a signed SNS Notification about ``payment_id`` (or
        carrying ``message``)."""
        if message is None:
            message = self.webhook_message(payment_id)
        text = message if isinstance(message, str) else json.dumps(message)
        envelope = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic_arn or self.topic_arn}
        if subject is not None:
            envelope["Subject"] = subject
        envelope.update(Message=text, Timestamp=_sns_time())
        return self._signed(envelope, signature_version, cert_url)

    def sns_subscription_confirmation(
        self, *, topic_arn: str | None = None, signature_version: str | None = None, cert_url: str | None = None,
        subscribe_url: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        topic = topic_arn or self.topic_arn
        token = secrets.token_hex(64)
        url = subscribe_url or f"{self.tls_base_url or self.base_url}/sns/?" + urlencode(
            {"Action": "ConfirmSubscription", "TopicArn": topic, "Token": token}
        )
        envelope = {
            "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token, "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": url, "Timestamp": _sns_time(),
        }
        return self._signed(envelope, signature_version, cert_url)

    def fire_sns(self, url: str, message: tuple[dict[str, str], bytes], *, timeout: float = 5.0) -> int:
        """POST a built SNS message to ``url`` as SNS does; returns the HTTP status."""
        headers, body = message
        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code

    def fire_sns_notification(self, url: str, payment_id: str, **options) -> int:
        return self.fire_sns(url, self.sns_notification(payment_id, **options))

    def _notify(self, url: str, payment_id: str) -> None:
        try:
            outcome: int | str = self.fire_sns_notification(url, payment_id)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        with self._state:
            self.sns_deliveries.append((payment_id, outcome))

    def _signed(self, envelope: dict, version: str | None, cert_url: str | None) -> tuple[dict[str, str], bytes]:
        version = version or self.signature_version
        envelope["SignatureVersion"] = version
        envelope["SigningCertURL"] = cert_url or self.signing_cert_url
        if envelope["Type"] == "Notification":
            envelope["UnsubscribeURL"] = f"{self.tls_base_url or self.base_url}/sns/?Action=Unsubscribe"
        to_sign = "".join(
            f"{k}\n{envelope[k]}\n" for k in _SNS_FIELDS[envelope["Type"]] if envelope.get(k) is not None
        ).encode()
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        envelope["Signature"] = base64.b64encode(self._sns_key.sign(to_sign, padding.PKCS1v15(), algorithm)).decode()
        headers = {
            "x-amz-sns-message-type": envelope["Type"], "x-amz-sns-message-id": envelope["MessageId"],
            "x-amz-sns-topic-arn": envelope["TopicArn"], "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
        }
        return headers, json.dumps(envelope).encode()

    # -- ids ---------------------------------------------------------------------------------

    def _new_payment_id(self) -> str:
        while True:
            pid = "TR0011" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(2)) + str(time.time_ns() // 1_000_000)
            pid += "".join(secrets.choice(string.digits) for _ in range(3))
            if pid not in self.payments:
                return pid

    def _new_trx_id(self) -> str:
        taken = {p["trxID"] for p in self.payments.values()} | {
            r["refundTrxID"] for p in self.payments.values() for r in p["refunds"]
        }
        while True:
            trx = "".join(secrets.choice(_UPPER_ALNUM) for _ in range(10))
            if trx not in taken:
                return trx


def _json(request: Request) -> dict:
    try:
        data = request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _amount(value) -> Decimal | None:
    text = str(value or "")
    if not _AMOUNT.fullmatch(text):
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount > 0 else None


def _callback(payment: dict, status: str) -> str:
    url = payment["callbackURL"]
    return url + ("&" if "?" in url else "?") + urlencode(
        {"paymentID": payment["paymentID"], "status": status, "signature": secrets.token_hex(8), "apiVersion": "1.2.0-beta"}
    )


def _sns_time() -> str:
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)
