from __future__ import annotations

from django.db.models import QuerySet

from ispbill.core.errors import NotFound
from ispbill.payments.models import InboundWebhook, Payment


def payment_list(*, subscriber_id: int | None = None, status: str = "") -> QuerySet[Payment]:
    qs = Payment.objects.prefetch_related("ledger_entries").order_by("-received_at", "-id")
    if subscriber_id is not None:
        qs = qs.filter(subscriber_id=subscriber_id)
    if status:
        qs = qs.filter(status=status)
    return qs


def webhook_list(*, gateway: str = "", outcome: str = "") -> QuerySet[InboundWebhook]:
    qs = InboundWebhook.objects.select_related("attempt").order_by("-received_at", "-id")
    if gateway:
        qs = qs.filter(gateway=gateway)
    if outcome:
        qs = qs.filter(outcome=outcome)
    return qs


def webhook(webhook_id: int) -> InboundWebhook:
    found = InboundWebhook.objects.select_related("attempt").filter(pk=webhook_id).first()
    if found is None:
        raise NotFound("webhook not found", code="webhook_not_found")
    return found
