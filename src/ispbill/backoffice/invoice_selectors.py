"""Reads for the invoice and credit-note pages: a fixed number of queries per page,
whatever the number of rows; lists page by keyset, newest first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.db.models import Q, QuerySet

from ispbill.backoffice.selectors import Page, newest_first_page, subscriber_match
from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.documents import InvoiceAmounts, invoice_amounts
from ispbill.billing.ledger import OPEN_STATUSES
from ispbill.billing.models import CreditNote, Invoice, LedgerEntry
from ispbill.notifications.models import Message
from ispbill.subscribers.models import Subscriber

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _month(value: str) -> date | None:
    """``YYYY-MM`` (what ``<input type="month">`` sends) as the month's first day."""
    match = _MONTH.match((value or "").strip())
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1) if 2000 <= year <= 2100 and 1 <= month <= 12 else None


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def areas() -> list[str]:
    return list(Subscriber.objects.exclude(area="").order_by("area").values_list("area", flat=True).distinct()[:500])


# -- invoices ---------------------------------------------------------------------------

@dataclass
class InvoiceFilters:
    q: str = ""
    status: str = ""
    month: str = ""  # YYYY-MM: invoices whose service period starts in that month
    overdue: bool = False
    area: str = ""

    @classmethod
    def from_query(cls, params) -> "InvoiceFilters":
        status = params.get("status", "")
        month = _month(params.get("month", ""))
        return cls(
            q=(params.get("q") or "").strip()[:100],
            status=status if status in InvoiceStatus.values else "",
            month=f"{month:%Y-%m}" if month else "",
            overdue=params.get("overdue") in ("1", "on", "true"),
            area=(params.get("area") or "").strip()[:100],
        )

    def active(self) -> bool:
        return bool(self.q or self.status or self.month or self.overdue or self.area)


def filtered_invoices(filters: InvoiceFilters, *, today: date) -> QuerySet[Invoice]:
    qs = Invoice.objects.all()
    if filters.q:
        qs = qs.filter(Q(number__icontains=filters.q) | subscriber_match(filters.q))
    if filters.status:
        qs = qs.filter(status=filters.status)
    first = _month(filters.month)
    if first is not None:
        qs = qs.filter(period_start__gte=first, period_start__lt=_next_month(first))
    if filters.overdue:
        qs = qs.filter(status__in=OPEN_STATUSES, amount_due_paisa__gt=0, due_on__lt=today)
    if filters.area:
        qs = qs.filter(subscriber__area__iexact=filters.area)
    return qs


def invoice_page(filters: InvoiceFilters, *, today: date, after: int | None = None, before: int | None = None) -> Page:
    qs = filtered_invoices(filters, today=today)
    page = newest_first_page(qs.select_related("subscriber"), after=after, before=before)
    for invoice in page.rows:
        invoice.overdue = invoice.status in OPEN_STATUSES and invoice.amount_due_paisa > 0 and invoice.due_on < today
    return page


@dataclass
class InvoiceDetail:
    invoice: Invoice
    lines: list
    amounts: InvoiceAmounts
    entries: list  # this invoice's ledger entries, with their payment or credit note
    credit_notes: list
    messages: list
    overdue: bool

    @property
    def can_void(self) -> bool:
        """Only an invoice nobody has paid or credited anything on can be voided."""
        inv = self.invoice
        return inv.status != InvoiceStatus.VOID and inv.amount_due_paisa == inv.total_paisa

    @property
    def can_credit(self) -> bool:
        return self.invoice.status != InvoiceStatus.VOID

    @property
    def creditable_paisa(self) -> int:
        """The most a new credit note may credit: the total less earlier credit notes."""
        return max(0, self.invoice.total_paisa - sum(n.total_paisa for n in self.credit_notes))


def invoice_detail(invoice_id: int, *, today: date) -> InvoiceDetail | None:
    invoice = Invoice.objects.select_related("subscriber", "package").filter(pk=invoice_id).first()
    if invoice is None:
        return None
    return InvoiceDetail(
        invoice=invoice,
        lines=list(invoice.lines.order_by("position")),
        amounts=invoice_amounts(invoice.pk),
        entries=list(
            LedgerEntry.objects.filter(invoice_id=invoice.pk).select_related("payment", "credit_note")
            .order_by("created_at", "id")
        ),
        credit_notes=list(CreditNote.objects.filter(invoice_id=invoice.pk).select_related("created_by").order_by("-id")),
        messages=list(Message.objects.filter(invoice_id=invoice.pk).order_by("-created_at", "-id")[:50]),
        overdue=invoice.status in OPEN_STATUSES and invoice.amount_due_paisa > 0 and invoice.due_on < today,
    )


# -- credit notes -----------------------------------------------------------------------

@dataclass
class CreditNoteFilters:
    q: str = ""
    month: str = ""  # YYYY-MM: issued in that month
    area: str = ""

    @classmethod
    def from_query(cls, params) -> "CreditNoteFilters":
        month = _month(params.get("month", ""))
        return cls(
            q=(params.get("q") or "").strip()[:100],
            month=f"{month:%Y-%m}" if month else "",
            area=(params.get("area") or "").strip()[:100],
        )

    def active(self) -> bool:
        return bool(self.q or self.month or self.area)


def filtered_credit_notes(filters: CreditNoteFilters) -> QuerySet[CreditNote]:
    qs = CreditNote.objects.all()
    if filters.q:
        qs = qs.filter(Q(number__icontains=filters.q) | Q(invoice__number__icontains=filters.q) | subscriber_match(filters.q))
    first = _month(filters.month)
    if first is not None:
        qs = qs.filter(issued_on__gte=first, issued_on__lt=_next_month(first))
    if filters.area:
        qs = qs.filter(subscriber__area__iexact=filters.area)
    return qs


def credit_note_page(filters: CreditNoteFilters, *, after: int | None = None, before: int | None = None) -> Page:
    qs = filtered_credit_notes(filters)
    return newest_first_page(qs.select_related("subscriber", "invoice"), after=after, before=before)


@dataclass
class CreditNoteDetail:
    note: CreditNote
    lines: list
    entries: list  # where the credit went: invoices, or the account as credit


def credit_note_detail(credit_note_id: int) -> CreditNoteDetail | None:
    note = CreditNote.objects.select_related("subscriber", "invoice", "created_by").filter(pk=credit_note_id).first()
    if note is None:
        return None
    return CreditNoteDetail(
        note=note,
        lines=list(note.lines.order_by("position")),
        entries=list(LedgerEntry.objects.filter(credit_note_id=note.pk).select_related("invoice").order_by("id")),
    )
