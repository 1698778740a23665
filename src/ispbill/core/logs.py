"""Keeping payment-link tokens out of logs.

A payment link (``/pay/<token>``, ``/pay/<token>/start``) lets whoever holds it see the
subscriber's bill and pay it, so its token is as good as a password. Request paths reach
logs in two places: gunicorn's access and error logs (:class:`GunicornLogger`, passed to
gunicorn by ``ispbill web``) and Django's ``django.request``, ``django.security.csrf`` and
``django.server`` loggers (:class:`RedactPaymentLinks`, attached in ``settings.LOGGING``).
Both replace the token with ``[token]``. :class:`RedactingFilter` is the shape every
redacting log filter takes (the gateways' :class:`~ispbill.payments.gateways.base.RedactSecrets`
too). The gateways' fixed return paths under
``/pay/`` (``/pay/bkash/callback``, ``/pay/nagad/callback``,
``/pay/sslcommerz/success|fail|cancel``) carry no token and stay as they are.

No Django here: gunicorn's master process loads :class:`GunicornLogger` before Django is set up.
"""

from __future__ import annotations

import logging
import re

from gunicorn import glogging

REDACTED = "[token]"

_GATEWAY_RETURNS = r"(?:bkash|nagad)/callback|sslcommerz/(?:success|fail|cancel)"
# The path segment after "/pay/", up to whatever ends it in a URL, a query or a log line,
# unless the segment starts one of the gateways' return paths.
_PAYMENT_LINK_TOKEN = re.compile(
    rf"(?<=/pay/)(?!(?:{_GATEWAY_RETURNS})(?![^/?#&\s\"'<>]))[^/?#&\s\"'<>]+",
    re.IGNORECASE,
)


def redact_payment_links(text: str) -> str:
    """``text`` with the token of every payment-link path in it replaced by ``[token]``
    (``/pay/<token>`` and ``/pay/<token>/start``, in paths, full URLs and query values);
    everything else, the gateways' return paths included, unchanged."""
    return _PAYMENT_LINK_TOKEN.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites log records' messages through :meth:`redact`; never drops a record."""

    def redact(self, text: str) -> str:
        raise NotImplementedError

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        masked = self.redact(text)
        if masked != text:
            record.msg, record.args = masked, None
        return True


class RedactPaymentLinks(RedactingFilter):
    """Replaces payment-link tokens in log records' messages."""

    def redact(self, text: str) -> str:
        return redact_payment_links(text)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with payment-link tokens redacted: in every access-log atom (the
    request line ``%(r)s``, ``%(U)s``, ``%(q)s``, the referrer, headers and environ
    variables), whatever ``--access-logformat`` uses, and in the error log."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if not any(isinstance(f, RedactPaymentLinks) for f in self.error_log.filters):
            self.error_log.addFilter(RedactPaymentLinks())

    def atoms(self, resp, req, environ, request_time) -> dict:
        return {
            key: redact_payment_links(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }
