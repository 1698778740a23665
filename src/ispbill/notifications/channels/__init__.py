"""Delivery channels behind one interface, chosen by settings (environment)."""

from ispbill.notifications.channels.base import (  # noqa: F401
    EmailChannel,
    PermanentSendError,
    SendResult,
    SmsChannel,
    TemporarySendError,
    email_channel,
    reset_channels,
    set_channels,
    sms_channel,
)
