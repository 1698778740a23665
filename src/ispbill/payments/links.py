"""Payment links: ``ISPBILL_PUBLIC_URL/pay/<token>``.

The token is signed (Django's signing with the SECRET_KEY) and names a PaymentLink row,
which ties it to one subscriber and carries its expiry and revocation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import connection

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
    return current_links(
        subscriber_ids=[subscriber_id], now=now, valid_days=valid_days, min_remaining_days=min_remaining_days
    )[subscriber_id]


def current_links(
    *, subscriber_ids: Iterable[int], now: datetime, valid_days: int, min_remaining_days: int = 7
) -> dict[int, PaymentLink]:
    """:func:`current_link` for many subscribers at once: {subscriber id: link}, in one
    query for the links that can be reused and one insert for the missing ones."""
    from ispbill.core.db import id_chunks

    ids = sorted(set(subscriber_ids))
    found: dict[int, PaymentLink] = {}
    usable_until = now + timedelta(days=min_remaining_days)
    for part in id_chunks(ids, reserve_params=2):
        qs = PaymentLink.objects.filter(revoked_at__isnull=True, expires_at__gte=usable_until)
        qs = qs.filter(subscriber_id=part[0]) if len(part) == 1 else qs.filter(subscriber_id__in=part)
        for link in qs.order_by("subscriber_id", "-expires_at"):
            found.setdefault(link.subscriber_id, link)  # the newest per subscriber
    missing = [
        PaymentLink(subscriber_id=sid, created_at=now, expires_at=now + timedelta(days=valid_days))
        for sid in ids if sid not in found
    ]
    if len(missing) > 1 and connection.features.can_return_rows_from_bulk_insert:
        PaymentLink.objects.bulk_create(missing)
    else:
        for link in missing:
            link.save(force_insert=True)
    found.update((link.subscriber_id, link) for link in missing)
    return found


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
