"""Keeping payment-link tokens out of logs.

A payment link (``/pay/<token>``, ``/pay/<token>/start``) lets whoever holds it see the
subscriber's bill and pay it, so its token is as good as a password. Request paths and
links reach logs in gunicorn's access and error logs (:class:`GunicornLogger`, passed to
gunicorn by ``ispbill web``) and through ``settings.LOGGING`` (:class:`RedactPaymentLinks`
on the ``django.request``, ``django.security.csrf``, ``django.server`` and ``httpx`` loggers
and on the handlers that print ``django.*`` and ``ispbill.*``, the worker's included).
Both replace the token with ``[token]``, in a record's message, traceback and stack, also
where the path is disguised: percent-encoded in a query value (``next=%2Fpay%2F<token>``,
``%252F`` when encoded twice) or escaped in JSON (``https:\\/\\/host\\/pay\\/<token>``).
:class:`RedactingFilter` is the shape every redacting log filter takes (the gateways'
:class:`~ispbill.payments.gateways.base.RedactSecrets` too). The gateways' fixed return
paths under ``/pay/`` (``/pay/bkash/callback``, ``/pay/nagad/callback``,
``/pay/sslcommerz/success|fail|cancel``) carry no token and stay as they are, disguised too.

No Django here: gunicorn's master process loads :class:`GunicornLogger` before Django is set up.
"""

from __future__ import annotations

import logging
import re

from gunicorn import glogging

REDACTED = "[token]"

# A "/" as logged text may carry it: as it is, percent-encoded once or more ("%2F", "%252F":
# a URL in a query value, in another's), or escaped in JSON ("\/", "\u002F", "\\/" in a repr).
_SLASH = r"(?:/|%(?:25)*2F|\\+/|\\+u002F)"
# Before "pay" one backslash is enough (a match may start on the last of several); trying a
# run of them from each of its backslashes would take time quadratic in its length.
_LEADING_SLASH = r"(?:/|%(?:25)*2F|\\/|\\u002F)"
# A token is anything up to what ends a path segment in a URL, a query or a log line, as it
# is or percent-encoded ("%2F", "%3F", "%26"..., "%252F" when encoded twice; an encoded ":",
# "%3A", is part of the token).
_PLAIN_TOKEN_CHAR = r"""[^/?#&%\s"'<>\\]"""
_ENCODED_END = r"%(?:25)*(?:2F|3F|23|26|20|22|27|3C|3E|5C)"
_TOKEN_CHAR = rf"(?:{_PLAIN_TOKEN_CHAR}|(?!{_ENCODED_END})%)"
_TOKEN = rf"(?:{_PLAIN_TOKEN_CHAR}+|(?!{_ENCODED_END})%)+"
_GATEWAY_RETURNS = rf"(?:bkash|nagad){_SLASH}callback|sslcommerz{_SLASH}(?:success|fail|cancel)"
# The path segment after "/pay/", unless it starts one of the gateways' return paths.
_PAYMENT_LINK_TOKEN = re.compile(
    rf"({_LEADING_SLASH}pay{_SLASH})(?!(?:{_GATEWAY_RETURNS})(?!{_TOKEN_CHAR})){_TOKEN}",
    re.IGNORECASE,
)
_REPLACEMENT = rf"\g<1>{REDACTED}"


def redact_payment_links(text: str) -> str:
    """``text`` with the token of every payment-link path in it replaced by ``[token]``
    (``/pay/<token>`` and ``/pay/<token>/start``, in paths, full URLs and query values, as
    they are, percent-encoded or JSON-escaped); everything else, the gateways' return paths
    included, unchanged."""
    lowered = text.lower()
    # Most log lines have no "pay" followed by a slash in any of its forms: no regex to run.
    if "pay/" not in lowered and "pay%2" not in lowered and "pay\\" not in lowered:
        return text
    return _PAYMENT_LINK_TOKEN.sub(_REPLACEMENT, text)


# Formats exceptions as logging.Formatter does when a handler has no formatter of its own.
_EXCEPTION_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites log records through :meth:`redact`: the message (with its arguments), the
    exception's text and the stack information, all of what a formatter shows; never drops
    a record. A record whose traceback had something to mask keeps the masked text as its
    ``exc_text``, which formatters print as the traceback, and no longer its ``exc_info``,
    from which a handler could format the traceback again, unmasked."""

    def redact(self, text: str) -> str:
        raise NotImplementedError

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            text = None
        if text is not None:
            masked = self.redact(text)
            if masked != text:
                record.msg, record.args = masked, None
        if record.exc_info or record.exc_text:
            self._redact_exception(record)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _redact_exception(self, record: logging.LogRecord) -> None:
        text = record.exc_text
        if not text:
            try:
                text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
            except Exception:  # not an exception a formatter could show either
                return
        masked = self.redact(text)
        if masked != text:
            record.exc_text, record.exc_info = masked, None


class RedactPaymentLinks(RedactingFilter):
    """Replaces payment-link tokens in log records' messages, tracebacks and stacks."""

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
