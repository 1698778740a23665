"""Amazon SNS message verification (bKash delivers its payment webhook through SNS).

Steps, in order, each a rejection when it fails: the envelope parses and its ``Type``
agrees with the ``x-amz-sns-message-type`` header; ``SigningCertURL`` is https, ends in
``.pem`` and its host matches the SNS host rule; ``TopicArn`` is the configured topic;
the certificate (fetched over https, cached per URL, within its validity period) verifies
the base64 ``Signature`` over the string to sign with RSA PKCS#1 v1.5, SHA1 for
``SignatureVersion`` "1" and SHA256 for "2".

The host rule and the fetcher are injectable so a local simulator's self-signed
certificate can stand in for Amazon's in tests; the rules themselves never relax.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ispbill.payments.gateways.base import GatewayRejected, GatewayUnavailable, lower_headers

#: Amazon's SNS endpoints: sns.<region>.amazonaws.com (or .com.cn).
DEFAULT_HOST_PATTERN = re.compile(r"^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$")

MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_OPTIONAL = {"Subject"}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERTS = 32

Fetch = Callable[[str], bytes]


def string_to_sign(envelope: Mapping[str, object]) -> bytes:
    """``key\\nvalue\\n`` for each signed key present, in the order SNS defines per Type."""
    parts: list[str] = []
    for key in _SIGNED_FIELDS[str(envelope["Type"])]:
        value = envelope.get(key)
        if value is None:
            continue
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def https_get(timeout: float = 10.0) -> Fetch:
    """The production fetcher: a plain GET that trusts the system's certificate store."""

    def fetch(url: str) -> bytes:
        response = httpx.get(url, timeout=timeout, follow_redirects=False, headers={"User-Agent": "ispbill"})
        if response.status_code != 200:
            raise GatewayUnavailable(f"SNS fetch answered HTTP {response.status_code}", code="gateway_http_error")
        return response.content

    return fetch


class SnsVerifier:
    """Verifies SNS envelopes for one topic; thread-safe (the certificate cache is locked)."""

    def __init__(
        self,
        *,
        topic_arn: str,
        host_pattern: re.Pattern[str] | str = DEFAULT_HOST_PATTERN,
        fetch: Fetch | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if not topic_arn:
            raise ValueError("an SNS topic ARN is required")
        self.topic_arn = topic_arn
        self.host_pattern = re.compile(host_pattern) if isinstance(host_pattern, str) else host_pattern
        self._fetch = fetch or https_get()
        self._now = now
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> dict:
        """Return the verified envelope (a dict) or raise GatewayRejected/GatewayUnavailable."""
        envelope = self._parse(headers, body)
        self._check_url(envelope["SigningCertURL"], what="SigningCertURL", pem=True)
        if envelope["TopicArn"] != self.topic_arn:
            raise GatewayRejected(
                f"SNS message is for topic {envelope['TopicArn']!r}, not the configured one", code="wrong_topic",
            )
        version = envelope["SignatureVersion"]
        if version not in _HASHES:
            raise GatewayRejected(f"unsupported SNS SignatureVersion {version!r}", code="bad_signature")
        try:
            signature = base64.b64decode(envelope["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise GatewayRejected("SNS Signature is not base64", code="bad_signature") from None
        key = self._public_key(envelope["SigningCertURL"])
        try:
            key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), _HASHES[version]())
        except InvalidSignature:
            raise GatewayRejected("SNS signature does not verify", code="bad_signature") from None
        return envelope

    def confirm_subscription(self, envelope: Mapping[str, str]) -> None:
        """GET the SubscribeURL of a *verified* SubscriptionConfirmation."""
        url = envelope.get("SubscribeURL") or ""
        self._check_url(url, what="SubscribeURL", pem=False)
        self._get(url, "SubscribeURL")

    # -- internals ---------------------------------------------------------------------------

    def _parse(self, headers: Mapping[str, str], body: bytes) -> dict:
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise GatewayRejected("SNS body is not JSON", code="malformed") from None
        if not isinstance(envelope, dict):
            raise GatewayRejected("SNS body is not a JSON object", code="malformed")
        kind = envelope.get("Type")
        if kind not in MESSAGE_TYPES:
            raise GatewayRejected(f"unknown SNS message Type {kind!r}", code="malformed")
        header = lower_headers(headers).get("x-amz-sns-message-type")
        if header is not None and header != kind:
            raise GatewayRejected("x-amz-sns-message-type header disagrees with the body", code="malformed")
        required = [k for k in _SIGNED_FIELDS[kind] if k not in _OPTIONAL] + [
            "Signature", "SignatureVersion", "SigningCertURL",
        ]
        for key in required:
            if not isinstance(envelope.get(key), str) or not envelope[key]:
                raise GatewayRejected(f"SNS {kind} lacks {key}", code="malformed")
        if envelope.get("Subject") is not None and not isinstance(envelope["Subject"], str):
            raise GatewayRejected("SNS Subject is not text", code="malformed")
        return envelope

    def _check_url(self, url: str, *, what: str, pem: bool) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise GatewayRejected(f"SNS {what} is not a valid URL", code="bad_cert_url") from None
        if parts.scheme != "https":
            raise GatewayRejected(f"SNS {what} is not https", code="bad_cert_url")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise GatewayRejected(f"SNS {what} carries credentials", code="bad_cert_url")
        if not self.host_pattern.fullmatch(host):
            raise GatewayRejected(f"SNS {what} host {host!r} is not an SNS host", code="bad_cert_url")
        if pem and not parts.path.endswith(".pem"):
            raise GatewayRejected(f"SNS {what} does not name a .pem file", code="bad_cert_url")

    def _public_key(self, url: str) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._certs.get(url)
        if key is not None:
            return key
        pem = self._get(url, "SigningCertURL")
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise GatewayRejected("SNS signing certificate is not a PEM certificate", code="bad_cert_url") from None
        now = self._now()
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise GatewayRejected("SNS signing certificate is outside its validity period", code="bad_cert_url")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise GatewayRejected("SNS signing certificate does not hold an RSA key", code="bad_cert_url")
        with self._lock:
            if len(self._certs) >= _MAX_CERTS:
                self._certs.clear()
            self._certs[url] = key
        return key

    def _get(self, url: str, what: str) -> bytes:
        try:
            return self._fetch(url)
        except (GatewayRejected, GatewayUnavailable):
            raise
        except (httpx.HTTPError, OSError) as exc:
            raise GatewayUnavailable(f"could not fetch SNS {what} ({type(exc).__name__})", code="gateway_unreachable") from exc
