"""The one gateway interface, its vocabulary and the rules every adapter shares.

An adapter speaks one gateway's protocol and nothing else: no database, no Django. The
payment service persists attempts and payments and calls an adapter through
:class:`Gateway`:

``start(StartRequest) -> StartResult``
    Open a payment at the gateway; send the customer to ``redirect_url``.
``confirm_callback(params, expected) -> Confirmation``
    The browser came back. Its parameters are never believed: the adapter confirms
    server-to-server (bKash execute/query, Nagad verify, SSLCommerz validation/query).
``verify_webhook(headers, body, expected) -> Confirmation | WebhookAck``
    A server-to-server message (SSLCommerz IPN, bKash SNS). Signatures are verified
    before anything in the body is used.
``query(key, expected) -> Confirmation``
    Ask the gateway what became of a payment (after a timeout, for reconciliation).
    ``key`` is whatever the gateway can be asked by: see :attr:`Gateway.query_key`.
``refund(transaction_id, amount, reason, *, gateway_reference=None) -> dict``
    Where the gateway has a refund API; otherwise :class:`NotSupported`.

**The amount check (one design, enforced in the adapters).** Every confirming method
takes ``expected``: a callable that maps *our* reference (the merchant invoice number /
order id / tran_id the gateway echoes) to the ``(amount, currency)`` our stored attempt
expects, or ``None`` when the reference is unknown. Before an adapter returns a
confirmation saying money moved (``completed`` or ``needs_review``) it calls
:func:`ensure_matches`, which compares amount and currency *exactly* (``Decimal``
equality: one paisa off is a mismatch) and raises :class:`GatewayRejected` otherwise.
A caller therefore cannot obtain a "completed" confirmation that was not checked against
its own record. The rejected confirmation travels on the exception
(``exc.confirmation``) so it can be stored for staff. The one deliberate exception is a
verified bKash webhook for money that has no reference we know (a customer paying the
merchant wallet directly): it comes back as ``needs_review`` with ``reference`` as sent,
because the money really moved and staff must match it by hand.

Statuses: ``completed`` (paid, checked), ``needs_review`` (paid, but hold for staff:
SSLCommerz risk_level 1, an unmatched wallet payment, two payments for one reference),
``pending`` (not finished or not known yet: ask again later), ``failed``, ``cancelled``.
A timeout is never ``failed``: it raises :class:`GatewayUnavailable` and the attempt
stays pending.

URLs on our side (``return_url_base`` is the public base URL, without trailing slash):
browser returns go to ``{base}/pay/<gateway>/callback`` and server-to-server messages to
``{base}/webhooks/<gateway>`` (see :func:`callback_url`, :func:`webhook_url`), except
SSLCommerz: ``{base}/pay/sslcommerz/{success,fail,cancel}`` and
``{base}/webhooks/sslcommerz/ipn``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar

import httpx

from ispbill.core.errors import DomainError
from ispbill.core.logs import RedactingFilter

CURRENCY = "BDT"
_PAISA = Decimal("0.01")
_REFERENCE = re.compile(r"^[A-Za-z0-9]{1,20}$")
_AMOUNT_TEXT = re.compile(r"^[0-9]{1,13}(\.[0-9]{1,4})?$")

#: ``expected(reference) -> (amount, currency) | None``: what our stored attempt expects.
Expected = Callable[[str], "tuple[Decimal, str] | None"]


class Status(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PENDING = "pending"
    NEEDS_REVIEW = "needs_review"


#: Statuses that say the customer's money moved.
MONEY_MOVED = frozenset({Status.COMPLETED, Status.NEEDS_REVIEW})


# -- errors ----------------------------------------------------------------------------------

class GatewayError(DomainError):
    """Base of gateway errors. Messages never contain secrets (passwords, keys, tokens)."""

    status = 502
    code = "gateway_error"


class GatewayUnavailable(GatewayError):
    """Timeout, connection failure, 5xx: the outcome is unknown. Retry later; the attempt
    stays pending."""

    status = 503
    code = "gateway_unavailable"


class GatewayRejected(GatewayError):
    """A definite "no": bad signature, wrong topic, amount mismatch, or the gateway refused.

    ``code`` is ours and stable (``bad_signature``, ``bad_cert_url``, ``wrong_topic``,
    ``amount_mismatch``, ``currency_mismatch``, ``unknown_reference``,
    ``reference_mismatch``, ``challenge_mismatch``, ``malformed``, ``gateway_refused``);
    ``gateway_code`` is the gateway's own (``"2062"``, ``"16_0006_058"``,
    ``"INVALID_TRANSACTION"``) when it said no. ``confirmation`` is what the gateway
    reported when the rejection is ours (e.g. an amount mismatch), for the record.
    """

    status = 422
    code = "gateway_rejected"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        gateway_code: str | None = None,
        confirmation: Confirmation | None = None,
    ):
        super().__init__(message, code=code)
        self.gateway_code = gateway_code
        self.confirmation = confirmation


class NotSupported(GatewayError):
    status = 501
    code = "not_supported"


class GatewayNotConfigured(GatewayError):
    """A required environment variable is missing or unusable (names only, never values)."""

    status = 500
    code = "gateway_not_configured"


# -- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartRequest:
    """What we ask a gateway to collect.

    ``reference`` is our unique attempt id, sent as the merchant invoice number / order id /
    tran_id: alphanumeric, at most 20 characters (Nagad also needs at least 5).
    ``amount`` is BDT with at most two places. ``client_ip`` is the customer's IP where a
    gateway wants it (Nagad's ``X-KM-IP-V4``).
    """

    reference: str
    amount: Decimal
    customer_name: str
    customer_phone: str
    customer_email: str
    return_url_base: str
    client_ip: str | None = None

    def __post_init__(self):
        if not isinstance(self.reference, str) or not _REFERENCE.fullmatch(self.reference):
            raise ValueError("reference must be 1-20 letters or digits")
        check_amount(self.amount)
        if not re.match(r"^https?://[^\s/]+", self.return_url_base or ""):
            raise ValueError("return_url_base must be an http(s) URL")
        object.__setattr__(self, "return_url_base", self.return_url_base.rstrip("/"))

    @property
    def amount_text(self) -> str:
        """The amount as gateways want it: ``"500.00"``."""
        return amount_text(self.amount)


@dataclass(frozen=True)
class StartResult:
    redirect_url: str
    gateway_reference: str  # bKash paymentID, Nagad paymentReferenceId, SSLCommerz sessionkey
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Confirmation:
    """What the gateway (not the browser) says about one payment.

    ``transaction_id`` is the key payments are de-duplicated on: bKash ``trxID``, Nagad
    ``issuerPaymentRefNo``, SSLCommerz ``bank_tran_id`` (refunds need it). ``reference``
    is our reference as the gateway echoed it. ``gateway_reference`` is the gateway's
    handle (bKash paymentID, Nagad paymentRefId, SSLCommerz val_id). ``raw`` holds the
    gateway's answers, JSON-serialisable, for storage. ``detail`` says why in words
    (the gateway's failure message, why review is needed).
    """

    status: Status
    transaction_id: str | None
    amount: Decimal | None
    currency: str | None
    reference: str | None
    method_label: str
    risk: str | None
    raw: dict
    gateway: str = ""
    gateway_reference: str | None = None
    detail: str = ""

    @property
    def money_moved(self) -> bool:
        return self.status in MONEY_MOVED


@dataclass(frozen=True)
class WebhookAck:
    """A verified server-to-server message that is not about a payment (an SNS
    subscription confirmation). Answer the sender 200 and record ``raw``."""

    detail: str
    raw: dict = field(default_factory=dict)


# -- the interface ---------------------------------------------------------------------------

class Gateway(ABC):
    """One payment gateway's protocol. Thread-safe; holds one HTTP connection pool."""

    name: ClassVar[str]  # "bkash", "nagad", "sslcommerz": used in our URLs and settings
    label: ClassVar[str]  # how staff see it
    #: what :meth:`query` takes: "gateway_reference" (the StartResult's) or "reference" (ours)
    query_key: ClassVar[str]
    #: environment variables that must all be set for the gateway to be configured
    env_vars: ClassVar[tuple[str, ...]]

    @classmethod
    @abstractmethod
    def from_env(cls, environ: Mapping[str, str], **options) -> Gateway: ...

    @abstractmethod
    def start(self, request: StartRequest) -> StartResult: ...

    @abstractmethod
    def confirm_callback(self, params: Mapping[str, Any], expected: Expected) -> Confirmation: ...

    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, expected: Expected) -> Confirmation | WebhookAck: ...

    @abstractmethod
    def query(self, key: str, expected: Expected) -> Confirmation: ...

    def refund(self, transaction_id: str, amount: Decimal, reason: str, *, gateway_reference: str | None = None) -> dict:
        """Refund part or all of a payment. Returns ``{"status": "completed"|"pending",
        "refund_id": str, "amount": Decimal, "raw": dict}``; raises GatewayRejected when
        the gateway refuses, GatewayUnavailable when the outcome is unknown."""
        raise NotSupported(f"{self.label} has no refund API; refund through the merchant portal")

    def close(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- shared rules ----------------------------------------------------------------------------

def ensure_matches(confirmation: Confirmation, expected: Expected) -> Confirmation:
    """Return ``confirmation`` if it does not claim money moved, or if the money matches
    what ``expected`` says our attempt wants, exactly; raise GatewayRejected otherwise."""
    if confirmation.status not in MONEY_MOVED:
        return confirmation
    reference = confirmation.reference
    want = expected(reference) if reference else None
    if want is None:
        raise GatewayRejected(
            f"{confirmation.gateway or 'gateway'} reported a payment for reference {reference!r}, which we do not expect",
            code="unknown_reference", confirmation=confirmation,
        )
    amount, currency = want
    if isinstance(amount, float) or not isinstance(amount, (Decimal, int)):
        raise TypeError("expected amounts must be Decimal (floats cannot be exact)")
    if confirmation.amount is None or confirmation.amount != Decimal(amount):
        raise GatewayRejected(
            f"amount mismatch for {reference}: gateway reported {confirmation.amount} "
            f"{confirmation.currency}, expected {amount_text(Decimal(amount))} {currency}",
            code="amount_mismatch", confirmation=confirmation,
        )
    if (confirmation.currency or "").strip().upper() != str(currency).strip().upper():
        raise GatewayRejected(
            f"currency mismatch for {reference}: gateway reported {confirmation.currency!r}, expected {currency!r}",
            code="currency_mismatch", confirmation=confirmation,
        )
    return confirmation


def check_amount(amount: Decimal) -> Decimal:
    if isinstance(amount, bool) or not isinstance(amount, Decimal):
        raise ValueError("amount must be a Decimal")
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(_PAISA):
        raise ValueError("amount must be positive with at most two decimal places")
    return amount


def amount_text(amount: Decimal) -> str:
    return f"{amount.quantize(_PAISA):.2f}"


def parse_amount(value: Any) -> Decimal | None:
    """A gateway's amount (``"500.00"``, ``"500"``, ``500``, ``500.5``) as Decimal, or None."""
    if isinstance(value, bool) or value is None:
        return None
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if not _AMOUNT_TEXT.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes these
        return None


def single_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Query/form parameters as ``{name: value}`` (the last value of repeated names)."""
    out: dict[str, str] = {}
    for key in params:
        value = params[key]
        if isinstance(value, (list, tuple)):
            value = value[-1] if value else ""
        out[str(key)] = "" if value is None else str(value)
    return out


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def callback_url(base: str, gateway: str) -> str:
    return f"{base.rstrip('/')}/pay/{gateway}/callback"


def webhook_url(base: str, gateway: str) -> str:
    return f"{base.rstrip('/')}/webhooks/{gateway}"


def missing_env(environ: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not str(environ.get(n) or "").strip()]


def require_env(environ: Mapping[str, str], names: tuple[str, ...], label: str) -> dict[str, str]:
    missing = missing_env(environ, names)
    if missing:
        raise GatewayNotConfigured(f"{label} is not configured: set {', '.join(missing)}")
    return {n: str(environ[n]).strip() for n in names}


# -- HTTP ------------------------------------------------------------------------------------

class Http:
    """httpx with our error classification. Messages name the call, never the URL (a
    query string may carry a password)."""

    def __init__(self, gateway: str, *, timeout: float | httpx.Timeout, client: httpx.Client | None = None):
        self._gateway = gateway
        self._timeout = timeout
        self._client = client
        self._owned = client is None
        self._lock = threading.Lock()
        install_log_redaction()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self._timeout, follow_redirects=False, headers={"User-Agent": "ispbill"},
                )
            return self._client

    def send(self, method: str, url: str, *, what: str, **kwargs) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise GatewayUnavailable(f"{self._gateway} {what}: timed out", code="gateway_timeout") from exc
        except httpx.TransportError as exc:
            raise GatewayUnavailable(
                f"{self._gateway} {what}: connection failed ({type(exc).__name__})", code="gateway_unreachable",
            ) from exc

    def unavailable(self, response: httpx.Response, what: str) -> GatewayUnavailable:
        return GatewayUnavailable(f"{self._gateway} {what}: HTTP {response.status_code}", code="gateway_http_error")

    def json(self, response: httpx.Response, what: str) -> dict:
        """The JSON object in ``response``; 5xx or a non-JSON answer is "unavailable"."""
        if response.status_code >= 500:
            raise self.unavailable(response, what)
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if response.status_code >= 400:
                raise GatewayRejected(
                    f"{self._gateway} {what}: HTTP {response.status_code}", code="gateway_refused",
                    gateway_code=str(response.status_code),
                )
            raise GatewayUnavailable(f"{self._gateway} {what}: answer is not a JSON object", code="gateway_bad_response")
        return data

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._owned:
                self._client.close()
                self._client = None


# -- keeping secrets out of logs --------------------------------------------------------------

_SECRET_PARAMS = re.compile(
    r"(?i)\b(store_passwd|store_password|password|app_secret|app_key|id_token|refresh_token|token)=[^&\s\"'>]*"
)


class RedactSecrets(RedactingFilter):
    """Masks credential-looking query parameters in log records (httpx logs full URLs)."""

    def redact(self, text: str) -> str:
        return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=[redacted]", text)


_redaction_lock = threading.Lock()


def install_log_redaction() -> None:
    """Attach :class:`RedactSecrets` to the ``httpx`` logger once (it logs request URLs,
    and SSLCommerz's validation API takes the store password in the query string)."""
    logger = logging.getLogger("httpx")
    with _redaction_lock:
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
