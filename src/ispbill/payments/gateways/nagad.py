"""Nagad online payment (API v-0.2.0).

Flow: ``initialize`` (our order id and a 40-character challenge, encrypted to Nagad's PG
public key and signed with our private key) → Nagad answers encrypted to our public key
and signed with its private key: we decrypt, **verify that signature** and check the
challenge echoes → ``complete`` (amount, currency 050) gives the ``callBackUrl`` the
customer is sent to → Nagad sends the browser back to ``{base}/pay/nagad/callback?…``
(unsigned) → we ``verify/payment/{paymentRefId}`` and trust only that answer. Nagad has
no server-to-server webhook and (as far as its v3.3 guide says) no refund API.

Signatures are RSA PKCS#1 v1.5 over the exact JSON text, SHA256 by default (the guide
says SHA1withRSA, working integrations use SHA256): ``signature_hash`` chooses.

Environment: NAGAD_BASE_URL (e.g. ``https://api.mynagad.com/api/dfs``),
NAGAD_MERCHANT_ID, NAGAD_MERCHANT_PRIVATE_KEY and NAGAD_PG_PUBLIC_KEY (PEM text, a path
to a PEM file, or the bare base64 key Nagad hands out); optional NAGAD_SIGNATURE_HASH
(``sha256`` or ``sha1``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ispbill.payments.gateways.base import (
    CURRENCY,
    Confirmation,
    Expected,
    Gateway,
    GatewayNotConfigured,
    GatewayRejected,
    Http,
    NotSupported,
    StartRequest,
    StartResult,
    Status,
    WebhookAck,
    callback_url,
    ensure_matches,
    parse_amount,
    require_env,
    single_values,
)

log = logging.getLogger("ispbill.payments.gateways.nagad")

ENV_VARS = ("NAGAD_BASE_URL", "NAGAD_MERCHANT_ID", "NAGAD_MERCHANT_PRIVATE_KEY", "NAGAD_PG_PUBLIC_KEY")
API_VERSION = "v-0.2.0"
CURRENCY_CODE = "050"  # ISO 4217 numeric for BDT
DHAKA = ZoneInfo("Asia/Dhaka")
HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_ALPHANUMERIC = string.ascii_letters + string.digits
_STATUSES = {
    "Success": Status.COMPLETED,
    "OrderInitiated": Status.PENDING,
    "Ready": Status.PENDING,
    "InProgress": Status.PENDING,
    "Cancelled": Status.CANCELLED,
    "Aborted": Status.CANCELLED,
    "Failed": Status.FAILED,
    "InvalidRequest": Status.FAILED,
    "Fraud": Status.FAILED,
    "UnknownFailed": Status.FAILED,
}


# -- keys ------------------------------------------------------------------------------------

def _key_bytes(value: str, name: str, kind: str) -> bytes:
    """PEM text, a PEM file path, or bare base64 DER, as PEM bytes. Errors name the
    variable, never its value."""
    text = (value or "").strip()
    if "-----BEGIN" in text:
        return text.encode("ascii", "replace")
    if "\n" not in text and len(text) < 1024:
        path = Path(text).expanduser()
        try:
            if path.is_file():
                return path.read_bytes()
        except OSError:
            pass
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        der = b""
    if not der:
        raise GatewayNotConfigured(f"{name} is neither PEM text, a readable PEM file nor base64 key data")
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n".encode("ascii")


def load_private_key(value: str | rsa.RSAPrivateKey, name: str = "NAGAD_MERCHANT_PRIVATE_KEY") -> rsa.RSAPrivateKey:
    if isinstance(value, rsa.RSAPrivateKey):
        return value
    data = _key_bytes(value, name, "PRIVATE KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GatewayNotConfigured(f"{name} is not an unencrypted RSA private key")
    return key


def load_public_key(value: str | rsa.RSAPublicKey, name: str = "NAGAD_PG_PUBLIC_KEY") -> rsa.RSAPublicKey:
    if isinstance(value, rsa.RSAPublicKey):
        return value
    data = _key_bytes(value, name, "PUBLIC KEY")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise GatewayNotConfigured(f"{name} is not an RSA public key")
    return key


@dataclass(frozen=True)
class NagadConfig:
    base_url: str
    merchant_id: str
    merchant_private_key: rsa.RSAPrivateKey = field(repr=False)
    pg_public_key: rsa.RSAPublicKey = field(repr=False)
    signature_hash: str = "sha256"

    def __post_init__(self):
        if self.signature_hash not in HASHES:
            raise GatewayNotConfigured("the Nagad signature hash must be sha256 or sha1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> NagadConfig:
        v = require_env(environ, ENV_VARS, "Nagad")
        return cls(
            base_url=v["NAGAD_BASE_URL"].rstrip("/"),
            merchant_id=v["NAGAD_MERCHANT_ID"],
            merchant_private_key=load_private_key(v["NAGAD_MERCHANT_PRIVATE_KEY"]),
            pg_public_key=load_public_key(v["NAGAD_PG_PUBLIC_KEY"]),
            signature_hash=(str(environ.get("NAGAD_SIGNATURE_HASH") or "").strip().lower() or "sha256"),
        )


# -- the adapter -----------------------------------------------------------------------------

class NagadGateway(Gateway):
    name = "nagad"
    label = "Nagad"
    query_key = "gateway_reference"  # paymentRefId
    env_vars = ENV_VARS

    def __init__(
        self,
        config: NagadConfig,
        *,
        timeout: float | httpx.Timeout = 30.0,
        client: httpx.Client | None = None,
        client_type: str = "PC_WEB",
        server_ip: str = "127.0.0.1",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        """``server_ip`` goes in ``X-KM-IP-V4`` when the request names no customer IP.
        ``now`` is wall-clock time: Nagad compares our dateTime with its own clock."""
        self.config = config
        self._http = Http("Nagad", timeout=timeout, client=client)
        self._client_type = client_type
        self._server_ip = server_ip
        self._now = now
        self._hash = HASHES[config.signature_hash]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **options) -> NagadGateway:
        return cls(NagadConfig.from_env(environ), **options)

    def __repr__(self) -> str:
        return f"<NagadGateway {self.config.base_url} merchant={self.config.merchant_id}>"

    # -- payments ----------------------------------------------------------------------------

    def start(self, request: StartRequest) -> StartResult:
        order_id = request.reference
        if len(order_id) < 5:
            raise ValueError("Nagad order ids are 5-20 letters or digits")
        merchant_id = self.config.merchant_id
        when = self._now().astimezone(DHAKA).strftime("%Y%m%d%H%M%S")
        challenge = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(40))
        headers = self._headers(request.client_ip)

        sensitive = self._sensitive({"merchantId": merchant_id, "datetime": when, "orderId": order_id, "challenge": challenge})
        response = self._http.send(
            "POST", f"{self.config.base_url}/check-out/initialize/{merchant_id}/{order_id}",
            json={"dateTime": when, **sensitive}, headers=headers, what="initialize",
        )
        opened = self._open(self._answer(response, "initialize"), "initialize")
        if opened.get("challenge") != challenge:
            raise GatewayRejected("Nagad's initialize answer does not echo our challenge", code="challenge_mismatch")
        reference_id = str(opened.get("paymentReferenceId") or "")
        if not reference_id:
            raise GatewayRejected("Nagad's initialize answer has no paymentReferenceId", code="malformed")

        sensitive = self._sensitive({
            "merchantId": merchant_id, "orderId": order_id, "currencyCode": CURRENCY_CODE,
            "amount": request.amount_text, "challenge": challenge,
        })
        response = self._http.send(
            "POST", f"{self.config.base_url}/check-out/complete/{reference_id}",
            json={
                **sensitive,
                "merchantCallbackURL": callback_url(request.return_url_base, self.name),
                "additionalMerchantInfo": {"reference": order_id},
            },
            headers=headers, what="complete",
        )
        done = self._answer(response, "complete")
        if done.get("status") != "Success" or not done.get("callBackUrl"):
            raise GatewayRejected(
                f"Nagad did not complete the order: {done.get('status')!r} {done.get('message') or ''}".strip(),
                code="gateway_refused", gateway_code=str(done.get("statusCode") or done.get("status") or ""),
            )
        log.info("Nagad payment started: orderId=%s paymentRefId=%s", order_id, reference_id)
        return StartResult(redirect_url=str(done["callBackUrl"]), gateway_reference=reference_id,
                           raw={"initialize": opened, "complete": done})

    def confirm_callback(self, params: Mapping[str, Any], expected: Expected) -> Confirmation:
        values = single_values(params)
        reference_id = values.get("payment_ref_id", "").strip()
        if not reference_id:
            raise GatewayRejected("Nagad callback without payment_ref_id", code="malformed")
        confirmation = self.query(reference_id, expected)
        said_order = values.get("order_id", "").strip()
        if said_order and confirmation.reference and said_order != confirmation.reference:
            raise GatewayRejected("Nagad callback names another order than the payment", code="reference_mismatch",
                                  confirmation=confirmation)
        return confirmation

    def query(self, key: str, expected: Expected) -> Confirmation:
        """Nagad's verify API for paymentRefId ``key``."""
        response = self._http.send(
            "GET", f"{self.config.base_url}/verify/payment/{key}", headers=self._headers(None), what="verify",
        )
        data = self._answer(response, "verify")
        if str(data.get("paymentRefId") or key) != key:
            raise GatewayRejected("Nagad verified another payment reference", code="reference_mismatch")
        if str(data.get("merchantId") or "") != self.config.merchant_id:
            raise GatewayRejected("Nagad verified a payment of another merchant", code="reference_mismatch")
        state = str(data.get("status") or "")
        status = _STATUSES.get(state, Status.PENDING)
        confirmation = Confirmation(
            status=status,
            transaction_id=(str(data.get("issuerPaymentRefNo") or "") or None) if status == Status.COMPLETED else None,
            amount=parse_amount(data.get("amount")),
            currency=CURRENCY,  # Nagad settles BDT only; we order with currencyCode 050
            reference=str(data.get("orderId") or "") or None,
            method_label=self.label,
            risk=None,
            raw=data,
            gateway=self.name,
            gateway_reference=key,
            detail="" if status == Status.COMPLETED else f"status={state or 'unknown'} {data.get('statusCode') or ''}".strip(),
        )
        if status == Status.COMPLETED and not confirmation.transaction_id:
            raise GatewayRejected("Nagad reports success without issuerPaymentRefNo", code="malformed")
        return ensure_matches(confirmation, expected)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, expected: Expected) -> Confirmation | WebhookAck:
        raise NotSupported("Nagad sends no server-to-server webhook; confirm the callback with verify")

    def refund(self, transaction_id: str, amount: Decimal, reason: str, *, gateway_reference: str | None = None) -> dict:
        raise NotSupported("Nagad has no refund API; refund through the Nagad merchant portal")

    # -- crypto and envelopes ----------------------------------------------------------------

    def _headers(self, client_ip: str | None) -> dict[str, str]:
        return {
            "X-KM-Api-Version": API_VERSION,
            "X-KM-IP-V4": client_ip or self._server_ip,
            "X-KM-Client-Type": self._client_type,
            "Accept": "application/json",
        }

    def _sensitive(self, payload: dict) -> dict:
        """``{sensitiveData, signature}`` for ``payload``: encrypted to Nagad, signed by us."""
        plain = json.dumps(payload, separators=(",", ":")).encode()
        limit = self.config.pg_public_key.key_size // 8 - 11
        if len(plain) > limit:
            raise ValueError(f"Nagad sensitive data is {len(plain)} bytes; RSA allows {limit}")
        encrypted = self.config.pg_public_key.encrypt(plain, padding.PKCS1v15())
        signature = self.config.merchant_private_key.sign(plain, padding.PKCS1v15(), self._hash())
        return {"sensitiveData": base64.b64encode(encrypted).decode(), "signature": base64.b64encode(signature).decode()}

    def _open(self, data: dict, what: str) -> dict:
        """Decrypt an answer's sensitiveData and verify Nagad's signature over it."""
        try:
            encrypted = base64.b64decode(str(data["sensitiveData"]), validate=True)
            signature = base64.b64decode(str(data["signature"]), validate=True)
        except (KeyError, binascii.Error, ValueError):
            raise GatewayRejected(f"Nagad {what} answer lacks sensitiveData/signature", code="malformed") from None
        try:
            plain = self.config.merchant_private_key.decrypt(encrypted, padding.PKCS1v15())
        except ValueError:
            raise GatewayRejected(f"Nagad {what} answer does not decrypt with our key", code="bad_signature") from None
        try:
            self.config.pg_public_key.verify(signature, plain, padding.PKCS1v15(), self._hash())
        except InvalidSignature:
            raise GatewayRejected(f"Nagad {what} answer signature does not verify", code="bad_signature") from None
        try:
            opened = json.loads(plain)
        except ValueError:
            opened = None
        if not isinstance(opened, dict):
            raise GatewayRejected(f"Nagad {what} sensitive data is not a JSON object", code="malformed")
        return opened

    def _answer(self, response: httpx.Response, what: str) -> dict:
        """The JSON answer; Nagad's error envelope ``{reason, message}`` is a refusal."""
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("reason"):
            reason = str(data["reason"])
            raise GatewayRejected(
                f"Nagad refused {what}: {reason} {data.get('message') or ''}".strip(),
                code="gateway_refused", gateway_code=reason,
            )
        if response.status_code >= 500:
            raise self._http.unavailable(response, what)
        if response.status_code >= 400:
            raise GatewayRejected(
                f"Nagad refused {what}: HTTP {response.status_code}", code="gateway_refused",
                gateway_code=str(response.status_code),
            )
        if not isinstance(data, dict):
            return self._http.json(response, what)  # raises "unavailable: not JSON"
        return data
