from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Header, Router, Status
from ninja.pagination import LimitOffsetPagination, paginate

from ispbill.api.schemas import ErrorOut, PaymentIn, PaymentOut
from ispbill.core import clock
from ispbill.core.money import format_amount
from ispbill.payments import selectors, services
from ispbill.payments.models import Payment

router = Router(tags=["payments"])


def out(p: Payment) -> dict:
    return {
        "id": p.pk, "subscriber": p.subscriber_id, "amount": format_amount(p.amount_paisa), "currency": p.currency,
        "method": p.method, "status": p.status, "reference": p.reference, "received_at": p.received_at,
        "allocations": [
            {"invoice": e.invoice_id, "amount": format_amount(-e.amount_paisa)} for e in p.ledger_entries.all()
        ],
    }


@router.get("", response=list[PaymentOut])
@paginate(LimitOffsetPagination)
def list_payments(request, subscriber: int | None = None, status: str = ""):
    return [out(p) for p in selectors.payment_list(subscriber_id=subscriber, status=status)]


@router.post("", response={201: PaymentOut, 200: PaymentOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def record_payment(request, payload: PaymentIn, idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    """Record a cash/manual payment. Send an ``Idempotency-Key`` header to make retries safe:
    the same key returns the payment already recorded (200) instead of crediting twice."""
    payment, created = services.record_payment(
        subscriber_id=payload.subscriber, amount=payload.amount, method=payload.method, reference=payload.reference,
        notes=payload.notes, received_at=payload.received_at or clock.now(), user=request.user,
        idempotency_key=idempotency_key,
    )
    return Status(201 if created else 200, out(get_object_or_404(selectors.payment_list(), pk=payment.pk)))


@router.get("/{payment_id}", response={200: PaymentOut, 404: ErrorOut})
def get_payment(request, payment_id: int):
    return out(get_object_or_404(selectors.payment_list(), pk=payment_id))
