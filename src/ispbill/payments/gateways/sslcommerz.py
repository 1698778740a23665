"""SSLCommerz (v4): cards, internet banking and MFS wallets through one hosted page.

Flow: a session (``/gwprocess/v4/api.php``) gives the ``GatewayPageURL``; SSLCommerz then
POSTs the IPN to ``{base}/webhooks/sslcommerz/ipn`` and sends the browser, by form POST,
to ``{base}/pay/sslcommerz/success``, ``…/fail`` or ``…/cancel`` (the posted, signed
``status`` decides, not the URL), in either order.

Both carry ``verify_sign`` (md5) and ``verify_sign_sha2`` (sha256), checked whenever
present and required on the IPN; then the validation API decides (VALID the first time,
VALIDATED afterwards: both accepted, so the IPN and the browser return confirm the same
payment). Amount, currency and tran_id are compared with our attempt exactly; risk_level
1 comes back as ``needs_review``. Failure and cancel reports are checked with the query
API by tran_id. Rocket (Dutch-Bangla mobile banking) arrives here as card_type
``DBBLMOBILEB-Dbbl Mobile Banking`` and is labelled "Rocket".

``transaction_id`` is ``bank_tran_id`` (refunds need it); ``gateway_reference`` is
``val_id``.

Environment: SSLCOMMERZ_BASE_URL (``https://securepay.sslcommerz.com``),
SSLCOMMERZ_STORE_ID, SSLCOMMERZ_STORE_PASSWORD.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx

from ispbill.payments.gateways.base import (
    CURRENCY,
    Confirmation,
    Expected,
    Gateway,
    GatewayRejected,
    Http,
    StartRequest,
    StartResult,
    Status,
    WebhookAck,
    amount_text,
    check_amount,
    ensure_matches,
    parse_amount,
    require_env,
    single_values,
)

log = logging.getLogger("ispbill.payments.gateways.sslcommerz")

ENV_VARS = ("SSLCOMMERZ_BASE_URL", "SSLCOMMERZ_STORE_ID", "SSLCOMMERZ_STORE_PASSWORD")
SESSION_PATH = "/gwprocess/v4/api.php"
VALIDATION_PATH = "/validator/api/validationserverAPI.php"
TRANSACTION_PATH = "/validator/api/merchantTransIDvalidationAPI.php"
#: Our side (under the public base URL): browser returns and the IPN.
RETURN_PATH = "/pay/sslcommerz"
IPN_PATH = "/webhooks/sslcommerz/ipn"
_VALID = {"VALID", "VALIDATED"}
_REPORTED = {
    "FAILED": Status.FAILED,
    "CANCELLED": Status.CANCELLED,
    "UNATTEMPTED": Status.CANCELLED,
    "EXPIRED": Status.FAILED,
    "PENDING": Status.PENDING,
}
# card_type is "<CODE>-<issuer>": the codes of methods customers know by another name.
_METHOD_LABELS = {
    "DBBLMOBILEB": "Rocket",
    "BKASH": "bKash",
    "NAGAD": "Nagad",
    "UPAY": "Upay",
    "VISA": "Visa",
    "MASTER": "Mastercard",
    "AMEX": "American Express",
}


def method_label(card_type: str | None, card_brand: str | None = None, card_issuer: str | None = None) -> str:
    """How staff and receipts name the method SSLCommerz used."""
    card_type = (card_type or "").strip()
    code, _, rest = card_type.partition("-")
    if code.upper() in _METHOD_LABELS:
        return _METHOD_LABELS[code.upper()]
    if (card_issuer or "").strip().lower() == "dbbl mobile banking":
        return "Rocket"
    return rest.strip() or code or (card_brand or "").strip() or "SSLCommerz"


@dataclass(frozen=True)
class SslcommerzConfig:
    base_url: str
    store_id: str
    store_password: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SslcommerzConfig:
        v = require_env(environ, ENV_VARS, "SSLCommerz")
        return cls(
            base_url=v["SSLCOMMERZ_BASE_URL"].rstrip("/"), store_id=v["SSLCOMMERZ_STORE_ID"],
            store_password=v["SSLCOMMERZ_STORE_PASSWORD"],
        )


def sign_fields(fields: Mapping[str, str], verify_key: str, store_password: str, algorithm: str) -> str:
    """``verify_sign`` (``md5``) or ``verify_sign_sha2`` (``sha256``) for ``fields``.

    The keys named in ``verify_key`` (values as posted, empty kept) plus ``store_passwd`` =
    hash(password), sorted by key, joined ``k=v`` with ``&``, hashed.
    """
    digest = getattr(hashlib, algorithm)
    values = {key: str(fields.get(key, "")) for key in verify_key.split(",")}
    values["store_passwd"] = digest(store_password.encode()).hexdigest()
    text = "&".join(f"{k}={values[k]}" for k in sorted(values))
    return digest(text.encode()).hexdigest()


class SslcommerzGateway(Gateway):
    name = "sslcommerz"
    label = "SSLCommerz"
    query_key = "reference"  # tran_id
    env_vars = ENV_VARS

    #: SSLCommerz requires an address; an ISP bill is not shipped anywhere.
    address_defaults = {"cus_add1": "N/A", "cus_city": "Dhaka", "cus_postcode": "1000", "cus_country": "Bangladesh"}

    def __init__(self, config: SslcommerzConfig, *, timeout: float | httpx.Timeout = 30.0, client: httpx.Client | None = None):
        self.config = config
        self._http = Http("SSLCommerz", timeout=timeout, client=client)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **options) -> SslcommerzGateway:
        return cls(SslcommerzConfig.from_env(environ), **options)

    def __repr__(self) -> str:
        return f"<SslcommerzGateway {self.config.base_url} store={self.config.store_id}>"

    # -- payments ----------------------------------------------------------------------------

    def start(self, request: StartRequest) -> StartResult:
        base = request.return_url_base
        form = {
            "store_id": self.config.store_id,
            "store_passwd": self.config.store_password,
            "total_amount": request.amount_text,
            "currency": CURRENCY,
            "tran_id": request.reference,
            "success_url": f"{base}{RETURN_PATH}/success",
            "fail_url": f"{base}{RETURN_PATH}/fail",
            "cancel_url": f"{base}{RETURN_PATH}/cancel",
            "ipn_url": f"{base}{IPN_PATH}",
            "cus_name": request.customer_name,
            "cus_email": request.customer_email,
            "cus_phone": request.customer_phone,
            **self.address_defaults,
            "shipping_method": "NO",
            "num_of_item": "1",
            "product_name": "Internet service",
            "product_category": "Internet",
            "product_profile": "non-physical-goods",
            "value_a": request.reference,
        }
        response = self._http.send("POST", self.config.base_url + SESSION_PATH, data=form, what="session")
        data = self._http.json(response, "session")
        if data.get("status") != "SUCCESS" or not data.get("GatewayPageURL") or not data.get("sessionkey"):
            reason = str(data.get("failedreason") or data.get("status") or "")
            raise GatewayRejected(f"SSLCommerz refused the session: {reason}", code="gateway_refused", gateway_code=reason)
        log.info("SSLCommerz session created: tran_id=%s", request.reference)
        return StartResult(redirect_url=str(data["GatewayPageURL"]), gateway_reference=str(data["sessionkey"]), raw=data)

    def confirm_callback(self, params: Mapping[str, Any], expected: Expected) -> Confirmation:
        """The browser's form POST; its verify_sign is checked when present, and nothing
        in it is believed beyond val_id/tran_id, which the gateway is then asked about."""
        fields = single_values(params)
        if fields.get("verify_sign") or fields.get("verify_sign_sha2"):
            self._check_signature(fields)
        return self._conclude(fields, expected)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, expected: Expected) -> Confirmation | WebhookAck:
        """The IPN (form-encoded POST): signature required, then the validation API."""
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise GatewayRejected("SSLCommerz IPN is not UTF-8 form data", code="malformed") from None
        self._check_signature(fields)
        return self._conclude(fields, expected)

    def query(self, key: str, expected: Expected) -> Confirmation:
        """Everything SSLCommerz knows about tran_id ``key``; a VALID transaction found is
        put through the validation API like any other."""
        data = self._get(TRANSACTION_PATH, {"tran_id": key}, "transaction query")
        self._check_connect(data, "transaction query")
        elements = [e for e in (data.get("element") or []) if isinstance(e, dict) and e.get("tran_id", key) == key]
        valid = [e for e in elements if str(e.get("status") or "").upper() in _VALID and e.get("val_id")]
        if valid:
            confirmation = self._validate(str(valid[0]["val_id"]), key, expected)
            if len(valid) > 1:
                return replace(confirmation, status=Status.NEEDS_REVIEW,
                               detail=f"{len(valid)} valid transactions for one tran_id", raw={**confirmation.raw, "query": data})
            return confirmation
        status, detail = Status.PENDING, "no transaction found"
        if elements:
            last = str(elements[-1].get("status") or "").upper()
            status, detail = _REPORTED.get(last, Status.PENDING), f"status={last or 'unknown'}"
        return Confirmation(
            status=status, transaction_id=None, amount=None, currency=None, reference=key,
            method_label=self.label, risk=None, raw=data, gateway=self.name, detail=detail,
        )

    def refund(self, transaction_id: str, amount: Decimal, reason: str, *, gateway_reference: str | None = None) -> dict:
        """Refund ``amount`` of bank_tran_id ``transaction_id``. SSLCommerz accepts refunds
        and completes them later: the result is ``pending`` with the refund_ref_id to ask
        :meth:`refund_status` about."""
        check_amount(amount)
        data = self._get(TRANSACTION_PATH, {
            "bank_tran_id": transaction_id, "refund_amount": amount_text(amount),
            "refund_remarks": (reason or "refund")[:255], "v": "1",
        }, "refund")
        self._check_connect(data, "refund")
        status = str(data.get("status") or "").lower()
        if status not in {"success", "processing"} or not data.get("refund_ref_id"):
            reason_given = str(data.get("errorReason") or status)
            raise GatewayRejected(f"SSLCommerz refused the refund: {reason_given}", code="gateway_refused", gateway_code=status)
        log.info("SSLCommerz refund accepted: bank_tran_id=%s refund_ref_id=%s", transaction_id, data["refund_ref_id"])
        return {"status": "pending", "refund_id": str(data["refund_ref_id"]), "amount": amount, "raw": data}

    def refund_status(self, refund_id: str) -> dict:
        data = self._get(TRANSACTION_PATH, {"refund_ref_id": refund_id}, "refund status")
        self._check_connect(data, "refund status")
        status = str(data.get("status") or "").lower()
        mapped = {"refunded": "completed", "processing": "pending", "cancelled": "failed"}.get(status, "pending")
        return {"status": mapped, "refund_id": refund_id, "amount": None, "raw": data}

    # -- internals ---------------------------------------------------------------------------

    def _check_signature(self, fields: Mapping[str, str]) -> None:
        verify_key = fields.get("verify_key") or ""
        sign = (fields.get("verify_sign") or "").lower()
        if not verify_key or not sign:
            raise GatewayRejected("SSLCommerz message is not signed (verify_sign/verify_key missing)", code="bad_signature")
        covered = set(verify_key.split(","))
        needed = {"tran_id", "status"} | ({"val_id"} if str(fields.get("status", "")).upper() in _VALID else set())
        if not needed <= covered:
            raise GatewayRejected("SSLCommerz verify_key does not cover tran_id/status/val_id", code="bad_signature")
        password = self.config.store_password
        if not hmac.compare_digest(sign, sign_fields(fields, verify_key, password, "md5")):
            raise GatewayRejected("SSLCommerz verify_sign does not match", code="bad_signature")
        sha2 = (fields.get("verify_sign_sha2") or "").lower()
        if sha2 and not hmac.compare_digest(sha2, sign_fields(fields, verify_key, password, "sha256")):
            raise GatewayRejected("SSLCommerz verify_sign_sha2 does not match", code="bad_signature")

    def _conclude(self, fields: Mapping[str, str], expected: Expected) -> Confirmation:
        reported = str(fields.get("status") or "").upper()
        tran_id = str(fields.get("tran_id") or "")
        if reported in _VALID:
            val_id = str(fields.get("val_id") or "")
            if not val_id:
                raise GatewayRejected("SSLCommerz reports success without val_id", code="malformed")
            return self._validate(val_id, tran_id or None, expected)
        if not tran_id:
            raise GatewayRejected("SSLCommerz message without tran_id", code="malformed")
        found = self.query(tran_id, expected)
        if found.status != Status.PENDING or reported not in _REPORTED:
            return found
        # Nothing valid at the gateway; the failure or cancellation report stands.
        return replace(found, status=_REPORTED[reported], detail=str(fields.get("error") or f"status={reported}"),
                       raw={"message": dict(fields), "query": found.raw})

    def _validate(self, val_id: str, tran_id: str | None, expected: Expected) -> Confirmation:
        data = self._get(VALIDATION_PATH, {"val_id": val_id, "v": "1"}, "validation")
        status = str(data.get("status") or "").upper()
        if status not in _VALID:
            raise GatewayRejected(f"SSLCommerz validation says {status or 'nothing'}", code="gateway_refused",
                                  gateway_code=status or None)
        if str(data.get("val_id") or val_id) != val_id:
            raise GatewayRejected("SSLCommerz validated another val_id", code="reference_mismatch")
        reference = str(data.get("tran_id") or "") or None
        if tran_id and reference != tran_id:
            raise GatewayRejected("SSLCommerz val_id belongs to another tran_id", code="reference_mismatch")
        currency_type = str(data.get("currency_type") or "").upper()
        if currency_type and currency_type != CURRENCY:  # charged in another currency: compare the order's
            amount, currency = parse_amount(data.get("currency_amount")), currency_type
        else:
            amount, currency = parse_amount(data.get("amount")), str(data.get("currency") or "").upper() or None
        risky = str(data.get("risk_level") or "0").strip() == "1"
        confirmation = Confirmation(
            status=Status.NEEDS_REVIEW if risky else Status.COMPLETED,
            transaction_id=str(data.get("bank_tran_id") or "") or None,
            amount=amount,
            currency=currency,
            reference=reference,
            method_label=method_label(data.get("card_type"), data.get("card_brand"), data.get("card_issuer")),
            risk=str(data.get("risk_title") or "") or None,
            raw=data,
            gateway=self.name,
            gateway_reference=val_id,
            detail="risk_level 1: hold for review" if risky else "",
        )
        if not confirmation.transaction_id:
            raise GatewayRejected("SSLCommerz validation has no bank_tran_id", code="malformed")
        return ensure_matches(confirmation, expected)

    def _get(self, path: str, params: dict, what: str) -> dict:
        query = {**params, "store_id": self.config.store_id, "store_passwd": self.config.store_password, "format": "json"}
        response = self._http.send("GET", self.config.base_url + path, params=query, what=what)
        return self._http.json(response, what)

    @staticmethod
    def _check_connect(data: dict, what: str) -> None:
        connect = str(data.get("APIConnect") or "DONE").upper()
        if connect != "DONE":
            raise GatewayRejected(f"SSLCommerz {what}: APIConnect={connect}", code="gateway_refused", gateway_code=connect)
