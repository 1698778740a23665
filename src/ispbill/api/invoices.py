from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.schemas import CreditNoteIn, CreditNoteOut, ErrorOut, InvoiceOut, MessageOut as MessageOutRef, RemindIn, VoidIn
from ispbill.billing import selectors, services
from ispbill.billing.models import CreditNote, Invoice
from ispbill.core import clock
from ispbill.core.money import format_amount
from ispbill.core.timeutil import local_date

router = Router(tags=["invoices"])
credit_notes = Router(tags=["credit notes"])


def _lines(lines) -> list[dict]:
    return [{"kind": l.kind, "description": l.description, "amount": format_amount(l.amount_paisa)} for l in lines]


def out(inv: Invoice) -> dict:
    return {
        "id": inv.pk, "number": inv.number, "subscriber": inv.subscriber_id, "kind": inv.kind,
        "period_start": inv.period_start, "period_end": inv.period_end, "issued_on": inv.issued_on,
        "due_on": inv.due_on, "currency": inv.currency, "total": format_amount(inv.total_paisa),
        "amount_due": format_amount(inv.amount_due_paisa), "status": inv.status, "lines": _lines(inv.lines.all()),
    }


def note_out(note: CreditNote) -> dict:
    return {
        "id": note.pk, "number": note.number, "subscriber": note.subscriber_id, "invoice": note.invoice_id,
        "issued_on": note.issued_on, "total": format_amount(note.total_paisa), "reason": note.reason,
        "lines": _lines(note.lines.all()),
    }


@router.get("", response=list[InvoiceOut])
@paginate(Pagination)
def list_invoices(request, subscriber: int | None = None, status: str = ""):
    return Rows(selectors.invoice_list(subscriber_id=subscriber, status=status), out)


@router.get("/{invoice_id}", response={200: InvoiceOut, 404: ErrorOut})
def get_invoice(request, invoice_id: int):
    return out(get_object_or_404(selectors.invoice_list(), pk=invoice_id))


@router.post("/{invoice_id}/void", response={200: InvoiceOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def void_invoice(request, invoice_id: int, payload: VoidIn):
    services.void_invoice(invoice_id=invoice_id, reason=payload.reason, now=clock.now(), user=request.user)
    return out(get_object_or_404(selectors.invoice_list(), pk=invoice_id))


@credit_notes.get("", response=list[CreditNoteOut])
@paginate(Pagination)
def list_credit_notes(request, subscriber: int | None = None):
    return Rows(selectors.credit_note_list(subscriber_id=subscriber), note_out)


@credit_notes.post("", response={201: CreditNoteOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def create_credit_note(request, payload: CreditNoteIn):
    now = clock.now()
    note = services.issue_credit_note(
        subscriber_id=payload.subscriber, amount=payload.amount, reason=payload.reason, invoice_id=payload.invoice,
        today=local_date(now), now=now, user=request.user,
    )
    return Status(201, note_out(get_object_or_404(selectors.credit_note_list(), pk=note.pk)))


@credit_notes.get("/{note_id}", response={200: CreditNoteOut, 404: ErrorOut})
def get_credit_note(request, note_id: int):
    return note_out(get_object_or_404(selectors.credit_note_list(), pk=note_id))


@router.post("/{invoice_id}/remind", response={202: list[MessageOutRef], 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def remind(request, invoice_id: int, payload: RemindIn):
    """Queue a reminder of the chosen kind now (recorded as sent by staff)."""
    from ispbill.api.messages import out as message_out
    from ispbill.notifications.services import request_reminder

    get_object_or_404(Invoice, pk=invoice_id)
    messages = request_reminder(
        invoice_id=invoice_id, kind=payload.kind, channels=payload.channels, now=clock.now(), user=request.user
    )
    return Status(202, [message_out(m) for m in messages])
