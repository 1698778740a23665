from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol


class TemporarySendError(Exception):
    """The provider could not take the message now (timeout, 5xx, connection refused): retry."""


class PermanentSendError(Exception):
    """The provider refused the message for good (bad number, 4xx): do not retry."""


@dataclass(frozen=True)
class SendResult:
    provider_reference: str = ""


class SmsChannel(Protocol):
    def send_sms(self, *, to: str, text: str, reference: str) -> SendResult: ...


class EmailChannel(Protocol):
    def send_email(self, *, to: str, subject: str, text: str, html: str, reference: str) -> SendResult: ...


_sms: SmsChannel | None = None
_email: EmailChannel | None = None


def sms_channel() -> SmsChannel:
    """The SMS channel named by ``SMS_PROVIDER`` (``console`` by default, or ``http``)."""
    global _sms
    if _sms is None:
        provider = os.environ.get("SMS_PROVIDER", "console").strip().lower()
        if provider == "http":
            from ispbill.notifications.channels.sms_http import HttpSmsProvider

            _sms = HttpSmsProvider.from_env()
        elif provider == "console":
            from ispbill.notifications.channels.console import ConsoleSms

            _sms = ConsoleSms.from_env()
        else:
            raise RuntimeError(f"SMS_PROVIDER must be 'http' or 'console', not '{provider}'")
    return _sms


def email_channel() -> EmailChannel:
    global _email
    if _email is None:
        from ispbill.notifications.channels.email import DjangoEmail

        _email = DjangoEmail()
    return _email


def set_channels(*, sms: SmsChannel | None = None, email: EmailChannel | None = None) -> None:
    """Install channels explicitly (tests, demo)."""
    global _sms, _email
    if sms is not None:
        _sms = sms
    if email is not None:
        _email = email


def reset_channels() -> None:
    global _sms, _email
    _sms = _email = None
