"""A generic HTTP SMS provider, configured entirely from the environment.

Bangladeshi bulk-SMS gateways differ mostly in URL, parameter names and how they say
"failed"; ``SMS_HTTP_PARAMS`` names the parameters and ``SMS_HTTP_SUCCESS_PATTERN``
recognises success in gateways that answer 200 with an error code in the body.

Variables (see README, "Messages (SMS and email)"): ``SMS_HTTP_URL`` (required),
``SMS_HTTP_METHOD`` (POST), ``SMS_HTTP_AUTH_HEADER``, ``SMS_HTTP_PARAMS``
(``to={to}&text={text}&sender={sender}``), ``SMS_HTTP_FORMAT`` (``form`` or ``json``),
``SMS_SENDER_ID``, ``SMS_HTTP_SUCCESS_PATTERN``, ``SMS_HTTP_TIMEOUT`` (10 s).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

import httpx

from ispbill.notifications.channels.base import PermanentSendError, SendResult, TemporarySendError

log = logging.getLogger("ispbill.notifications.sms")

DEFAULT_PARAMS = "to={to}&text={text}&sender={sender}"
PLACEHOLDERS = ("to", "text", "sender", "reference")
# Keys a JSON answer may carry the provider's message id under, in order of preference.
REFERENCE_KEYS = ("message_id", "messageId", "id", "sms_id")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BODY_QUOTE = 300


def _trimmed(body: str) -> str:
    """The provider's answer, on one line and short enough for an error message."""
    flat = " ".join(body.split())
    return flat if len(flat) <= _BODY_QUOTE else flat[: _BODY_QUOTE - 1] + "…"


@dataclass(frozen=True)
class _Field:
    """One ``key=value`` pair of the template; ``value`` may mix literals and placeholders."""

    key: str  # decoded
    value: str  # as written (literal parts already URL-encoded)

    def render_encoded(self, values: Mapping[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: quote_plus(values[m.group(1)], safe=""), self.value)

    def render_plain(self, values: Mapping[str, str]) -> str:
        # Literal parts are decoded piecewise so an encoded '%7B' never becomes a placeholder.
        out, pos = [], 0
        for m in _PLACEHOLDER.finditer(self.value):
            out.append(unquote_plus(self.value[pos : m.start()]))
            out.append(values[m.group(1)])
            pos = m.end()
        out.append(unquote_plus(self.value[pos:]))
        return "".join(out)


def parse_template(template: str) -> tuple[_Field, ...]:
    """Split a form-encoded template into fields; unknown placeholders are a configuration error."""
    unknown = sorted({name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS})
    if unknown:
        raise RuntimeError(
            f"SMS_HTTP_PARAMS uses unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"allowed: {', '.join('{' + n + '}' for n in PLACEHOLDERS)}"
        )
    fields = []
    for part in template.strip().lstrip("?").split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise RuntimeError(f"SMS_HTTP_PARAMS: '{part}' is not a key=value pair")
        if _PLACEHOLDER.search(key):
            raise RuntimeError(f"SMS_HTTP_PARAMS: placeholders belong in values, not in the key '{key}'")
        fields.append(_Field(unquote_plus(key), value))
    if not fields:
        raise RuntimeError("SMS_HTTP_PARAMS is empty")
    return tuple(fields)


def _parse_auth_header(line: str) -> tuple[str, str] | None:
    line = line.strip()
    if not line:
        return None
    name, sep, value = line.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value or any(c.isspace() for c in name):
        # Never echo the line itself: it is a credential.
        raise RuntimeError("SMS_HTTP_AUTH_HEADER must be a header line such as 'Authorization: Bearer <token>'")
    return name, value


class HttpSmsProvider:
    """Sends each SMS as one HTTP request through a persistent (keep-alive) client.

    The client is shared by all threads (httpx clients are thread-safe). A timeout or
    a lost connection after the request left is reported as temporary, so the outbox
    retries it: the provider may have accepted the first request (at-least-once).
    """

    def __init__(
        self, *, url: str, method: str = "POST", params: str = DEFAULT_PARAMS, body_format: str = "form",
        sender: str = "", auth_header: str = "", success_pattern: str = "", timeout: float = 10.0,
    ):
        if not url or not url.startswith(("http://", "https://")):
            raise RuntimeError("SMS_HTTP_URL must be an http:// or https:// URL")
        method = method.strip().upper() or "POST"
        if method not in ("GET", "POST"):
            raise RuntimeError(f"SMS_HTTP_METHOD must be GET or POST, not '{method}'")
        body_format = body_format.strip().lower() or "form"
        if body_format not in ("form", "json"):
            raise RuntimeError(f"SMS_HTTP_FORMAT must be 'form' or 'json', not '{body_format}'")
        if body_format == "json" and method == "GET":
            raise RuntimeError("SMS_HTTP_FORMAT=json sends a request body: use SMS_HTTP_METHOD=POST")
        if timeout <= 0:
            raise RuntimeError("SMS_HTTP_TIMEOUT must be a positive number of seconds")
        try:
            self._success = re.compile(success_pattern) if success_pattern else None
        except re.error as exc:
            raise RuntimeError(f"SMS_HTTP_SUCCESS_PATTERN is not a valid regular expression: {exc}") from None
        self.url = url
        self.method = method
        self.body_format = body_format
        self.sender = sender
        self.timeout = timeout
        self._fields = parse_template(params)
        auth = _parse_auth_header(auth_header)
        headers = {"User-Agent": "ispbill"}
        if auth:
            headers[auth[0]] = auth[1]
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "HttpSmsProvider":
        env = os.environ if environ is None else environ
        url = env.get("SMS_HTTP_URL", "").strip()
        if not url:
            raise RuntimeError("SMS_PROVIDER=http needs SMS_HTTP_URL (the provider's send URL)")
        raw_timeout = env.get("SMS_HTTP_TIMEOUT", "").strip() or "10"
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise RuntimeError(f"SMS_HTTP_TIMEOUT must be a number of seconds, not '{raw_timeout}'") from None
        return cls(
            url=url,
            method=env.get("SMS_HTTP_METHOD", "POST"),
            params=env.get("SMS_HTTP_PARAMS", "").strip() or DEFAULT_PARAMS,
            body_format=env.get("SMS_HTTP_FORMAT", "form"),
            sender=env.get("SMS_SENDER_ID", "").strip(),
            auth_header=env.get("SMS_HTTP_AUTH_HEADER", ""),
            success_pattern=env.get("SMS_HTTP_SUCCESS_PATTERN", "").strip(),
            timeout=timeout,
        )

    def __repr__(self) -> str:  # no credentials: the auth header stays out of logs and tracebacks
        return f"HttpSmsProvider({self.method} {self.url}, format={self.body_format})"

    def close(self) -> None:
        self._client.close()

    # -- building the request -------------------------------------------------------------

    def _request_args(self, values: Mapping[str, str]) -> dict:
        if self.body_format == "json":
            return {"json": {f.key: f.render_plain(values) for f in self._fields}}
        encoded = "&".join(f"{quote_plus(f.key, safe='')}={f.render_encoded(values)}" for f in self._fields)
        if self.method == "GET":
            return {"url": f"{self.url}{'&' if '?' in self.url else '?'}{encoded}"}
        return {"content": encoded.encode("ascii"), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

    # -- sending --------------------------------------------------------------------------

    def send_sms(self, *, to: str, text: str, reference: str) -> SendResult:
        values = {"to": to, "text": text, "sender": self.sender, "reference": reference}
        args = {"url": self.url, **self._request_args(values)}
        try:
            response = self._client.request(self.method, **args)
        except httpx.TimeoutException as exc:
            raise TemporarySendError(f"SMS provider timed out after {self.timeout:g} s ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:  # connection refused/reset, DNS, protocol errors
            raise TemporarySendError(f"SMS provider unreachable: {type(exc).__name__}: {exc}") from None
        status, body = response.status_code, response.text
        log.debug("sms %s to %s: HTTP %d", reference, to, status)
        if 200 <= status < 300:
            if self._success is not None and not self._success.search(body):
                raise PermanentSendError(f"SMS provider answered HTTP {status} without success: {_trimmed(body)!r}")
            return SendResult(provider_reference=_message_id(body))
        if status in (408, 429) or status >= 500:
            raise TemporarySendError(f"SMS provider answered HTTP {status}: {_trimmed(body)!r}")
        if 400 <= status < 500:
            raise PermanentSendError(f"SMS provider refused the message: HTTP {status}: {_trimmed(body)!r}")
        # 1xx/3xx: the provider did not take it; most likely SMS_HTTP_URL needs fixing, and
        # a retry after the fix is harmless, so let the outbox try again.
        raise TemporarySendError(f"SMS provider answered HTTP {status} (check SMS_HTTP_URL): {_trimmed(body)!r}")


def _message_id(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in REFERENCE_KEYS:
            value = data.get(key)
            if value not in (None, "") and isinstance(value, (str, int)) and not isinstance(value, bool):
                return str(value)
    return ""
