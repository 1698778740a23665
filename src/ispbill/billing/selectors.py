"""Reads of billing data for the API and (later) the back office."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from ispbill.billing.models import CreditNote, Invoice, LedgerEntry


def balance_subquery():
    """Annotation: a subscriber's balance in paisa, summed from the ledger."""
    sums = (
        LedgerEntry.objects.filter(subscriber_id=OuterRef("pk"))
        .order_by()
        .values("subscriber_id")
        .annotate(s=Sum("amount_paisa"))
        .values("s")
    )
    return Coalesce(Subquery(sums), Value(0))


def invoice_list(*, subscriber_id: int | None = None, status: str | None = None) -> QuerySet[Invoice]:
    qs = Invoice.objects.prefetch_related("lines").order_by("-issued_on", "-id")
    if subscriber_id is not None:
        qs = qs.filter(subscriber_id=subscriber_id)
    if status:
        qs = qs.filter(status=status)
    return qs


def credit_note_list(*, subscriber_id: int | None = None) -> QuerySet[CreditNote]:
    qs = CreditNote.objects.prefetch_related("lines").order_by("-issued_on", "-id")
    if subscriber_id is not None:
        qs = qs.filter(subscriber_id=subscriber_id)
    return qs
