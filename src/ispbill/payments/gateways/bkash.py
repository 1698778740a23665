"""bKash Tokenized Checkout (v1.2.0-beta) and its SNS payment webhook.

Flow: ``create`` (mode 0011) gives a ``bkashURL`` for the customer; bKash sends the
browser back to ``{base}/pay/bkash/callback?paymentID=…&status=success|failure|cancel``;
on ``success`` we call ``execute`` and accept only statusCode "0000" with
transactionStatus "Completed". If execute times out or answers 2062/2117 ("already
completed"), we ``query`` (payment/status): the money may have moved. Other callbacks
are checked with ``query`` too, so the browser's word never decides anything.

Tokens: granted with username/password headers and app_key/app_secret, cached in a
:class:`TokenStore` (shared storage in production, so processes do not each grant),
refreshed with the refresh token when they near expiry, and granted afresh once when a
call answers HTTP 401.

Environment: BKASH_BASE_URL (e.g. ``https://tokenized.pay.bka.sh/v1.2.0-beta``),
BKASH_APP_KEY, BKASH_APP_SECRET, BKASH_USERNAME, BKASH_PASSWORD, BKASH_SNS_TOPIC_ARN.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import httpx

from ispbill.core.phone import PhoneError, normalize_bd_mobile
from ispbill.payments.gateways import sns
from ispbill.payments.gateways.base import (
    CURRENCY,
    Confirmation,
    Expected,
    Gateway,
    GatewayRejected,
    GatewayUnavailable,
    Http,
    StartRequest,
    StartResult,
    Status,
    WebhookAck,
    amount_text,
    callback_url,
    check_amount,
    ensure_matches,
    parse_amount,
    require_env,
    single_values,
)

log = logging.getLogger("ispbill.payments.gateways.bkash")

ENV_VARS = (
    "BKASH_BASE_URL", "BKASH_APP_KEY", "BKASH_APP_SECRET", "BKASH_USERNAME", "BKASH_PASSWORD", "BKASH_SNS_TOPIC_ARN",
)
_PATH = "/tokenized/checkout/"
_OK = "0000"
_ALREADY_DONE = {"2062", "2117"}  # payment / execution already completed: ask query
_STATUSES = {
    "Completed": Status.COMPLETED,
    "Initiated": Status.PENDING,
    "Authorized": Status.PENDING,
    "Cancelled": Status.CANCELLED,
    "Failed": Status.FAILED,
    "Expired": Status.FAILED,
}


@dataclass(frozen=True)
class BkashConfig:
    base_url: str
    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    username: str = field(repr=False)
    password: str = field(repr=False)
    sns_topic_arn: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BkashConfig:
        v = require_env(environ, ENV_VARS, "bKash")
        return cls(
            base_url=v["BKASH_BASE_URL"].rstrip("/"), app_key=v["BKASH_APP_KEY"], app_secret=v["BKASH_APP_SECRET"],
            username=v["BKASH_USERNAME"], password=v["BKASH_PASSWORD"], sns_topic_arn=v["BKASH_SNS_TOPIC_ARN"],
        )


# -- tokens ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BkashToken:
    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime  # aware


class TokenStore(Protocol):
    """Where granted tokens live between calls (and, in production, between processes).

    ``get`` returns what was last ``set`` under ``key`` (expired or not: the adapter
    decides), or None. Implementations must be safe to call from several threads.
    """

    def get(self, key: str) -> BkashToken | None: ...

    def set(self, key: str, token: BkashToken) -> None: ...


class InMemoryTokenStore:
    """A per-process :class:`TokenStore`."""

    def __init__(self):
        self._tokens: dict[str, BkashToken] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> BkashToken | None:
        with self._lock:
            return self._tokens.get(key)

    def set(self, key: str, token: BkashToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def __repr__(self) -> str:
        return f"<InMemoryTokenStore {len(self._tokens)} token(s)>"


# -- the adapter -----------------------------------------------------------------------------

class BkashGateway(Gateway):
    name = "bkash"
    label = "bKash"
    query_key = "gateway_reference"  # paymentID
    env_vars = ENV_VARS

    def __init__(
        self,
        config: BkashConfig,
        *,
        token_store: TokenStore | None = None,
        timeout: float | httpx.Timeout = 30.0,
        client: httpx.Client | None = None,
        refresh_margin: timedelta = timedelta(minutes=5),
        sns_host_pattern: re.Pattern[str] | str = sns.DEFAULT_HOST_PATTERN,
        sns_fetch: sns.Fetch | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        """``sns_fetch(url) -> bytes`` GETs the signing certificate and SubscribeURL (https
        with the system's CAs by default); ``sns_host_pattern`` is the host rule for both."""
        self.config = config
        self._http = Http("bKash", timeout=timeout, client=client)
        self._store = token_store if token_store is not None else InMemoryTokenStore()
        self._store_key = "bkash:" + hashlib.sha256(
            f"{config.base_url}\0{config.username}\0{config.app_key}".encode()
        ).hexdigest()[:24]
        self._token_lock = threading.Lock()
        self._margin = refresh_margin
        self._now = now
        self._sns = sns.SnsVerifier(
            topic_arn=config.sns_topic_arn, host_pattern=sns_host_pattern,
            fetch=sns_fetch or sns.https_get(timeout=_seconds(timeout)), now=now,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **options) -> BkashGateway:
        return cls(BkashConfig.from_env(environ), **options)

    def __repr__(self) -> str:
        return f"<BkashGateway {self.config.base_url}>"

    # -- payments ----------------------------------------------------------------------------

    def start(self, request: StartRequest) -> StartResult:
        body = {
            "mode": "0011",
            "payerReference": _payer_reference(request),
            "callbackURL": callback_url(request.return_url_base, self.name),
            "amount": request.amount_text,
            "currency": CURRENCY,
            "intent": "sale",
            "merchantInvoiceNumber": request.reference,
        }
        data = self._call("create", body, what="create payment")
        code = _code(data)
        if code != _OK or not data.get("paymentID") or not data.get("bkashURL"):
            raise GatewayRejected(
                f"bKash refused to create the payment: {code} {_message(data)}", code="gateway_refused", gateway_code=code,
            )
        if parse_amount(data.get("amount")) not in (None, request.amount):
            raise GatewayRejected("bKash created the payment with another amount", code="amount_mismatch")
        log.info("bKash payment created: reference=%s paymentID=%s", request.reference, data["paymentID"])
        return StartResult(redirect_url=data["bkashURL"], gateway_reference=data["paymentID"], raw=data)

    def confirm_callback(self, params: Mapping[str, Any], expected: Expected) -> Confirmation:
        values = single_values(params)
        payment_id = values.get("paymentID", "").strip()
        if not payment_id:
            raise GatewayRejected("bKash callback without paymentID", code="malformed")
        said = values.get("status", "").strip().lower()
        if said == "success":
            return self._execute(payment_id, expected)
        confirmation = self.query(payment_id, expected)
        if confirmation.status == Status.PENDING:
            # Not executed, and the customer left: nothing moved and nothing will.
            status = Status.CANCELLED if said == "cancel" else Status.FAILED
            return replace(confirmation, status=status, detail=f"customer returned with status={said or 'none'}")
        return confirmation

    def query(self, key: str, expected: Expected) -> Confirmation:
        """The payment's state by paymentID (``payment/status``)."""
        data = self._call("payment/status", {"paymentID": key}, what="query payment")
        code = _code(data)
        if code != _OK:
            raise GatewayRejected(
                f"bKash query refused: {code} {_message(data)}", code="gateway_refused", gateway_code=code,
            )
        return ensure_matches(self._confirmation(data, key), expected)

    def refund(self, transaction_id: str, amount: Decimal, reason: str, *, gateway_reference: str | None = None) -> dict:
        """Refund ``amount`` of trxID ``transaction_id``; bKash also needs the paymentID
        (``gateway_reference``).

        Only a statusCode other than "0000" is a refusal (GatewayRejected). An accepted
        refund is ``completed`` when bKash says transactionStatus "Completed", otherwise
        ``pending`` (bKash finishes it later; :meth:`refund_status` tells how), with
        ``refund_id`` the refundTrxID if bKash gave one and ``amount`` the amount bKash
        reported, or the amount asked when it reported none.
        """
        if not gateway_reference:
            raise ValueError("bKash refunds need the paymentID as gateway_reference")
        check_amount(amount)
        body = {
            "paymentID": gateway_reference, "trxID": transaction_id, "amount": amount_text(amount),
            "sku": "ispbill", "reason": (reason or "refund")[:255],
        }
        data = self._call("payment/refund", body, what="refund")
        code = _code(data)
        if code != _OK:
            raise GatewayRejected(f"bKash refused the refund: {code} {_message(data)}", code="gateway_refused", gateway_code=code)
        refund_id = str(data.get("refundTrxID") or "") or None
        state = str(data.get("transactionStatus") or "")
        if state == "Completed":
            log.info("bKash refund done: trxID=%s refundTrxID=%s", transaction_id, refund_id)
            status = "completed"
        else:
            log.info("bKash accepted the refund of trxID=%s as %s: refundTrxID=%s", transaction_id,
                     state or "(no transactionStatus)", refund_id)
            status = "pending"
        return {"status": status, "refund_id": refund_id, "amount": parse_amount(data.get("amount")) or amount, "raw": data}

    def refund_status(self, transaction_id: str, *, gateway_reference: str) -> dict:
        """What bKash reports about the payment's refund (its latest one):
        ``completed`` for transactionStatus "Completed"; ``failed`` (the money did not go
        back) for "Failed", "Cancelled" or "Declined"; ``pending`` for any other. Our
        protocol notes list no refund states, so the failed ones are assumed, not
        documented. A statusCode other than "0000" raises GatewayRejected."""
        data = self._call("payment/refund", {"paymentID": gateway_reference, "trxID": transaction_id}, what="refund status")
        code = _code(data)
        if code != _OK:
            raise GatewayRejected(f"bKash refund status refused: {code} {_message(data)}", code="gateway_refused", gateway_code=code)
        state = str(data.get("transactionStatus") or "")
        status = "completed" if state == "Completed" else "failed" if state in ("Failed", "Cancelled", "Declined") else "pending"
        return {
            "status": status, "refund_id": str(data.get("refundTrxID") or "") or None,
            "amount": parse_amount(data.get("amount")), "raw": data,
        }

    # -- webhook (SNS) -----------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, expected: Expected) -> Confirmation | WebhookAck:
        envelope = self._sns.verify(headers, body)
        kind = envelope["Type"]
        if kind == "SubscriptionConfirmation":
            self._sns.confirm_subscription(envelope)
            log.info("bKash SNS subscription confirmed for the configured topic")
            return WebhookAck("subscription confirmed", raw={"envelope": envelope})
        if kind == "UnsubscribeConfirmation":
            log.warning("bKash SNS says the webhook subscription was removed; not re-subscribing")
            return WebhookAck("unsubscribe confirmation received (not re-subscribing)", raw={"envelope": envelope})
        return self._notification(envelope, expected)

    def _notification(self, envelope: dict, expected: Expected) -> Confirmation:
        try:
            message = json.loads(envelope["Message"])
        except ValueError:
            raise GatewayRejected("bKash SNS Message is not JSON", code="malformed") from None
        if not isinstance(message, dict):
            raise GatewayRejected("bKash SNS Message is not a JSON object", code="malformed")
        state = str(message.get("transactionStatus") or "")
        status = _STATUSES.get(state, Status.PENDING)
        reference = str(message.get("merchantInvoiceNumber") or "") or None
        confirmation = Confirmation(
            status=status,
            transaction_id=str(message.get("trxID") or "") or None,
            amount=parse_amount(message.get("amount")),
            currency=str(message.get("currency") or "") or None,
            reference=reference,
            method_label=self.label,
            risk=None,
            raw={"envelope": envelope, "message": message},
            gateway=self.name,
        )
        if confirmation.money_moved and (reference is None or expected(reference) is None):
            # Verified money without an attempt of ours (paid to the wallet directly).
            return replace(confirmation, status=Status.NEEDS_REVIEW, detail="payment does not match an open attempt")
        return ensure_matches(confirmation, expected)

    # -- internals ---------------------------------------------------------------------------

    def _execute(self, payment_id: str, expected: Expected) -> Confirmation:
        try:
            data = self._call("execute", {"paymentID": payment_id}, what="execute payment")
        except GatewayUnavailable as exc:
            log.warning("bKash execute for %s had no answer (%s); querying", payment_id, exc.code)
            return self.query(payment_id, expected)
        code = _code(data)
        if code in _ALREADY_DONE:
            return self.query(payment_id, expected)
        if code != _OK:
            log.info("bKash execute for %s refused: %s %s", payment_id, code, _message(data))
            return Confirmation(
                status=Status.FAILED, transaction_id=None, amount=None, currency=None, reference=None,
                method_label=self.label, risk=None, raw=data, gateway=self.name, gateway_reference=payment_id,
                detail=f"{code} {_message(data)}".strip(),
            )
        return ensure_matches(self._confirmation(data, payment_id), expected)

    def _confirmation(self, data: dict, payment_id: str) -> Confirmation:
        if data.get("paymentID") not in (None, payment_id):
            raise GatewayRejected("bKash answered about another paymentID", code="reference_mismatch")
        state = str(data.get("transactionStatus") or "")
        status = _STATUSES.get(state, Status.PENDING)
        return Confirmation(
            status=status,
            transaction_id=(str(data.get("trxID") or "") or None) if status == Status.COMPLETED else None,
            amount=parse_amount(data.get("amount")),
            currency=str(data.get("currency") or "") or None,
            reference=str(data.get("merchantInvoiceNumber") or data.get("merchantInvoice") or "") or None,
            method_label=self.label,
            risk=None,
            raw=data,
            gateway=self.name,
            gateway_reference=payment_id,
            detail="" if status != Status.PENDING else f"transactionStatus={state or 'unknown'}",
        )

    def _url(self, path: str) -> str:
        return self.config.base_url + _PATH + path

    def _call(self, path: str, body: dict, *, what: str) -> dict:
        """POST an authorised call; on HTTP 401 grant a new token once and retry."""
        token = self._token()
        response = self._post(path, body, token, what)
        if response.status_code == 401:
            log.info("bKash answered 401 to %s: granting a new token", what)
            token = self._token(stale=token)
            response = self._post(path, body, token, what)
            if response.status_code == 401:
                raise GatewayRejected("bKash refused a freshly granted token", code="gateway_refused", gateway_code="401")
        if response.status_code >= 500:
            raise self._http.unavailable(response, what)
        return self._http.json(response, what)

    def _post(self, path: str, body: dict, token: str, what: str) -> httpx.Response:
        headers = {"Authorization": token, "X-APP-Key": self.config.app_key, "Accept": "application/json"}
        return self._http.send("POST", self._url(path), json=body, headers=headers, what=what)

    def _token(self, *, stale: str | None = None) -> str:
        """A usable id_token. ``stale`` is one the gateway just refused: grant afresh
        unless another thread already replaced it."""
        with self._token_lock:
            cached = self._store.get(self._store_key)
            if stale is not None:
                if cached is not None and cached.id_token != stale and self._fresh(cached):
                    return cached.id_token
                return self._keep(self._grant())
            if cached is not None and self._fresh(cached):
                return cached.id_token
            if cached is not None and cached.refresh_token:
                refreshed = self._refresh(cached.refresh_token)
                if refreshed is not None:
                    return self._keep(refreshed)
            return self._keep(self._grant())

    def _fresh(self, token: BkashToken) -> bool:
        return token.expires_at - self._margin > self._now()

    def _keep(self, token: BkashToken) -> str:
        self._store.set(self._store_key, token)
        return token.id_token

    def _grant(self) -> BkashToken:
        data = self._token_call(
            "token/grant", {"app_key": self.config.app_key, "app_secret": self.config.app_secret}, "token grant",
        )
        if not data.get("id_token"):
            code = _code(data)
            raise GatewayRejected(f"bKash refused the token grant: {code} {_message(data)}", code="gateway_refused", gateway_code=code)
        log.info("bKash token granted")
        return self._token_from(data)

    def _refresh(self, refresh_token: str) -> BkashToken | None:
        try:
            data = self._token_call(
                "token/refresh",
                {"app_key": self.config.app_key, "app_secret": self.config.app_secret, "refresh_token": refresh_token},
                "token refresh",
            )
        except GatewayRejected:
            return None
        if not data.get("id_token"):
            return None
        log.info("bKash token refreshed")
        return self._token_from(data, refresh_token)

    def _token_call(self, path: str, body: dict, what: str) -> dict:
        headers = {"username": self.config.username, "password": self.config.password, "Accept": "application/json"}
        response = self._http.send("POST", self._url(path), json=body, headers=headers, what=what)
        if response.status_code >= 500:
            raise self._http.unavailable(response, what)
        if response.status_code != 200:
            raise GatewayRejected(
                f"bKash refused the {what}: HTTP {response.status_code}", code="gateway_refused",
                gateway_code=str(response.status_code),
            )
        return self._http.json(response, what)

    def _token_from(self, data: dict, previous_refresh: str = "") -> BkashToken:
        try:
            lifetime = int(data.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600
        return BkashToken(
            id_token=str(data["id_token"]),
            refresh_token=str(data.get("refresh_token") or previous_refresh),
            expires_at=self._now() + timedelta(seconds=lifetime),
        )


def _code(data: dict) -> str:
    return str(data.get("statusCode") or data.get("errorCode") or "")


def _message(data: dict) -> str:
    return str(data.get("statusMessage") or data.get("errorMessage") or data.get("message") or "")


def _payer_reference(request: StartRequest) -> str:
    """The customer's wallet number in local form (bKash pre-fills it), else our reference."""
    try:
        return "0" + normalize_bd_mobile(request.customer_phone)[4:]
    except PhoneError:
        return request.reference


def _seconds(timeout: float | httpx.Timeout) -> float:
    if isinstance(timeout, httpx.Timeout):
        return timeout.read or 30.0
    return float(timeout)
