from __future__ import annotations

from django.db.models import QuerySet

from ispbill.payments.models import Payment


def payment_list(*, subscriber_id: int | None = None, status: str = "") -> QuerySet[Payment]:
    qs = Payment.objects.prefetch_related("ledger_entries").order_by("-received_at", "-id")
    if subscriber_id is not None:
        qs = qs.filter(subscriber_id=subscriber_id)
    if status:
        qs = qs.filter(status=status)
    return qs
