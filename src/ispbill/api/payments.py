from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Header, Router, Status
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.permissions import require_permission
from ispbill.api.schemas import (
    ErrorOut,
    PaymentIn,
    PaymentMatchIn,
    PaymentOut,
    PaymentRefundIn,
    PaymentRefundOut,
    PaymentRejectIn,
    RefundCheckOut,
    RefundOut,
)
from ispbill.core import clock
from ispbill.core.errors import NotFound
from ispbill.core.money import format_amount
from ispbill.payments import refund_services, selectors, services
from ispbill.payments.models import Payment, Refund

router = Router(tags=["payments"])


def out(p: Payment) -> dict:
    return {
        "id": p.pk, "subscriber": p.subscriber_id, "amount": format_amount(p.amount_paisa), "currency": p.currency,
        "method": p.method, "status": p.status, "reference": p.reference, "received_at": p.received_at,
        "allocations": _allocations(p), "gateway": p.gateway, "transaction_id": p.transaction_id,
        "method_label": p.method_label, "review_reason": p.review_reason, "refunded": format_amount(p.refunded_paisa),
    }


def _allocations(p: Payment) -> list[dict]:
    """Where the payment's money is now, per invoice (None: unapplied credit), net of
    refunds; in the order it was first applied."""
    net: dict[int | None, int] = {}
    for e in p.ledger_entries.all():
        net[e.invoice_id] = net.get(e.invoice_id, 0) - e.amount_paisa
    return [{"invoice": invoice, "amount": format_amount(amount)} for invoice, amount in net.items() if amount]


def refund_out(r) -> dict:
    return {
        "id": r.pk, "payment": r.payment_id, "amount": format_amount(r.amount_paisa), "reason": r.reason,
        "status": r.status, "gateway_refund_id": r.gateway_refund_id, "created_at": r.created_at,
        "completed_at": r.completed_at, "checks": r.checks, "last_checked_at": r.last_checked_at,
        "next_check_at": r.next_check_at, "last_error": r.last_error,
    }


@router.get("", response=list[PaymentOut])
@paginate(Pagination)
def list_payments(request, subscriber: int | None = None, status: str = ""):
    return Rows(selectors.payment_list(subscriber_id=subscriber, status=status), out)


@router.post("", response={201: PaymentOut, 200: PaymentOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def record_payment(request, payload: PaymentIn, idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    """Record a cash/manual payment. Send an ``Idempotency-Key`` header to make retries safe:
    the same key returns the payment already recorded (200) instead of crediting twice."""
    require_permission(request, "record_payments")
    payment, created = services.record_payment(
        subscriber_id=payload.subscriber, amount=payload.amount, method=payload.method, reference=payload.reference,
        notes=payload.notes, received_at=payload.received_at or clock.now(), user=request.user,
        idempotency_key=idempotency_key,
    )
    return Status(201 if created else 200, out(get_object_or_404(selectors.payment_list(), pk=payment.pk)))


@router.get("/{payment_id}", response={200: PaymentOut, 404: ErrorOut})
def get_payment(request, payment_id: int):
    return out(get_object_or_404(selectors.payment_list(), pk=payment_id))


# -- the exceptions queue (GET /payments?status=needs_review) -----------------------------

@router.post("/{payment_id}/match", response={200: PaymentOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def match_payment(request, payment_id: int, payload: PaymentMatchIn):
    """Apply a payment held for review to a subscriber: allocated like any payment,
    receipt sent, service restored when nothing overdue remains."""
    require_permission(request, "manage_billing")
    services.match_payment(payment_id=payment_id, subscriber_id=payload.subscriber, note=payload.note,
                           now=clock.now(), user=request.user)
    return out(get_object_or_404(selectors.payment_list(), pk=payment_id))


@router.post("/{payment_id}/reject", response={200: PaymentOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def reject_payment(request, payment_id: int, payload: PaymentRejectIn):
    """Refuse a payment held for review (no ledger entry); refund it if money moved."""
    require_permission(request, "manage_billing")
    services.reject_payment(payment_id=payment_id, reason=payload.reason, now=clock.now(), user=request.user)
    return out(get_object_or_404(selectors.payment_list(), pk=payment_id))


@router.post(
    "/{payment_id}/refund",
    response={
        201: PaymentRefundOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 501: ErrorOut, 502: ErrorOut,
        503: ErrorOut,
    },
)
def refund_payment(request, payment_id: int, payload: PaymentRefundIn):
    """Refund through the gateway (bKash, SSLCommerz; Nagad has no refund API: 501) and
    take the money back on the ledger: unapplied credit first, then the newest invoices
    the payment paid. A payment never credited (needs review, rejected) is refunded in full."""
    require_permission(request, "manage_billing")
    refund = services.refund_payment(payment_id=payment_id, amount=payload.amount, reason=payload.reason,
                                     now=clock.now(), user=request.user)
    payment = get_object_or_404(selectors.payment_list(), pk=payment_id)
    return Status(201, {"refund": refund_out(refund), "payment": out(payment)})


@router.get("/{payment_id}/refunds", response={200: list[RefundOut], 404: ErrorOut})
@paginate(Pagination)
def list_refunds(request, payment_id: int):
    """The payment's refunds, newest first, with how the gateway's follow-up stands."""
    if not Payment.objects.filter(pk=payment_id).exists():
        raise NotFound("payment not found", code="payment_not_found")
    return Rows(Refund.objects.filter(payment_id=payment_id).order_by("-created_at", "-id"), refund_out)


@router.post(
    "/{payment_id}/refunds/{refund_id}/check",
    response={200: RefundCheckOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
)
def check_refund(request, payment_id: int, refund_id: int):
    """Ask the gateway now about a pending refund instead of waiting for the
    ``refund_follow_up`` job, and apply its answer; a refund no longer pending is 409."""
    require_permission(request, "manage_billing")
    if not Refund.objects.filter(pk=refund_id, payment_id=payment_id).exists():
        raise NotFound("this payment has no such refund", code="refund_not_found")
    refund, outcome = refund_services.check_refund(refund_id=refund_id, now=clock.now(), user=request.user,
                                                   ip=request.META.get("REMOTE_ADDR") or None)
    payment = get_object_or_404(selectors.payment_list(), pk=payment_id)
    return {"outcome": outcome, "refund": refund_out(refund), "payment": out(payment)}
