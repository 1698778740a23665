"""Payment links: ``ISPBILL_PUBLIC_URL/pay/<token>``.

The token is signed (Django's signing with the SECRET_KEY) and names a PaymentLink row,
which ties it to one subscriber and carries its expiry and revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing

from ispbill.payments.models import PaymentLink

_SALT = "ispbill.payment-link"


class LinkError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # "invalid", "expired", "revoked"
        self.message = message


def token_for(link: PaymentLink) -> str:
    return signing.dumps([link.pk, link.subscriber_id], salt=_SALT, compress=False)


def url_for(link: PaymentLink) -> str:
    return f"{settings.ISPBILL_PUBLIC_URL}/pay/{token_for(link)}"


def current_link(*, subscriber_id: int, now: datetime, valid_days: int, min_remaining_days: int = 7) -> PaymentLink:
    """A link for the subscriber valid for at least ``min_remaining_days`` more days;
    reuses the newest one when it still is, so reminders share a link."""
    link = (
        PaymentLink.objects.filter(
            subscriber_id=subscriber_id, revoked_at__isnull=True, expires_at__gte=now + timedelta(days=min_remaining_days)
        )
        .order_by("-expires_at")
        .first()
    )
    if link is None:
        link = PaymentLink.objects.create(subscriber_id=subscriber_id, created_at=now, expires_at=now + timedelta(days=valid_days))
    return link


def resolve(token: str, *, now: datetime) -> PaymentLink:
    """The link a token names, or :class:`LinkError` (tampered, expired or revoked)."""
    try:
        link_id, subscriber_id = signing.loads(token, salt=_SALT)
        if not isinstance(link_id, int) or not isinstance(subscriber_id, int):
            raise ValueError("malformed payment link payload")
    except (signing.BadSignature, ValueError, TypeError):
        raise LinkError("invalid", "This payment link is not valid.") from None
    link = PaymentLink.objects.filter(pk=link_id, subscriber_id=subscriber_id).first()
    if link is None:
        raise LinkError("invalid", "This payment link is not valid.")
    if link.revoked_at is not None:
        raise LinkError("revoked", "This payment link has been cancelled. Please use the newest link we sent you.")
    if link.expires_at <= now:
        raise LinkError("expired", "This payment link has expired. Please use the newest link we sent you.")
    return link


def revoke(*, subscriber_id: int, now: datetime) -> int:
    """Revoke every live link of a subscriber; returns how many."""
    return PaymentLink.objects.filter(subscriber_id=subscriber_id, revoked_at__isnull=True).update(revoked_at=now)


def mark_opened(link: PaymentLink, *, now: datetime) -> None:
    PaymentLink.objects.filter(pk=link.pk).update(last_opened_at=now)
