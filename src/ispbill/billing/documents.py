"""What goes on a printed invoice, payment receipt or credit note.

Each builder reads the database once and returns a :class:`Document`: plain data (text
and integer paisa) that the HTML print page and the PDF writer lay out alike, so the two
can never disagree. Amounts paid, credited and due come from the ledger, the source of
truth, never from a stored running total. Text is translated in the active language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Sum
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from ispbill.billing.choices import EntryKind, InvoiceStatus
from ispbill.billing.models import BillingSettings, CreditNote, Invoice, LedgerEntry
from ispbill.core.money import format_taka
from ispbill.payments.choices import CREDITED_STATUSES, PaymentMethod
from ispbill.payments.models import Payment


@dataclass(frozen=True)
class Issuer:
    """The ISP as its documents name it (from the billing settings)."""

    name: str
    address: str
    hotline: str
    logo: bytes | None = None
    logo_content_type: str = ""

    @classmethod
    def current(cls) -> "Issuer":
        s = BillingSettings.load()
        logo = bytes(s.logo) if s.logo else None
        return cls(
            name=s.isp_name, address=s.isp_address, hotline=s.hotline, logo=logo or None,
            logo_content_type=s.logo_content_type if logo else "",
        )


@dataclass(frozen=True)
class Party:
    """Who the document is for."""

    name: str
    username: str = ""
    phone: str = ""
    address: str = ""


@dataclass(frozen=True)
class Row:
    """A labelled amount: a line of the document or one of its totals."""

    label: str
    amount_paisa: int
    strong: bool = False


@dataclass(frozen=True)
class Document:
    kind: str  # "invoice", "receipt" or "credit_note"
    title: str
    number: str
    issuer: Issuer
    party: Party
    facts: list[tuple[str, str]]  # (label, value) beside the addressee: dates, period, status
    lines_heading: str
    lines: list[Row]
    totals: list[Row]
    notes: list[str] = field(default_factory=list)
    void: bool = False

    @property
    def filename(self) -> str:
        """A safe file name for the PDF: the document number."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.number).strip("-.") or self.kind
        return f"{safe}.pdf"


def _day(value: date) -> str:
    return date_format(value, "j M Y")


def _instant(value: datetime) -> str:
    return date_format(timezone.localtime(value), "j M Y, H:i")


def _party(sub) -> Party:
    return Party(name=sub.name, username=sub.pppoe_username, phone=sub.phone, address=sub.address)


# -- invoices ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InvoiceAmounts:
    """An invoice's money, summed from its ledger entries by kind (credits positive)."""

    total_paisa: int
    paid_paisa: int  # payments, less what refunds put back on it
    from_credit_paisa: int  # the subscriber's earlier credit applied to it
    credited_paisa: int  # credit notes against it
    voided_paisa: int
    due_paisa: int  # the sum of every entry: what is still owed on it


def invoice_amounts(invoice_id: int) -> InvoiceAmounts:
    by_kind = dict(
        LedgerEntry.objects.filter(invoice_id=invoice_id).order_by().values_list("kind")
        .annotate(s=Sum("amount_paisa")).values_list("kind", "s")
    )
    return InvoiceAmounts(
        total_paisa=by_kind.get(EntryKind.INVOICE, 0),
        paid_paisa=-(by_kind.get(EntryKind.PAYMENT, 0) + by_kind.get(EntryKind.REFUND, 0)),
        from_credit_paisa=-by_kind.get(EntryKind.CREDIT_APPLIED, 0),
        credited_paisa=-by_kind.get(EntryKind.CREDIT_NOTE, 0),
        voided_paisa=-by_kind.get(EntryKind.VOID, 0),
        due_paisa=sum(by_kind.values()),
    )


def invoice_totals(invoice: Invoice, amounts: InvoiceAmounts) -> list[Row]:
    rows = [Row(_("Total"), invoice.total_paisa, strong=True)]
    if amounts.paid_paisa:
        rows.append(Row(_("Paid"), -amounts.paid_paisa))
    if amounts.from_credit_paisa:
        rows.append(Row(_("Paid from account credit"), -amounts.from_credit_paisa))
    if amounts.credited_paisa:
        rows.append(Row(_("Credit notes"), -amounts.credited_paisa))
    if amounts.voided_paisa:
        rows.append(Row(_("Voided"), -amounts.voided_paisa))
    rows.append(Row(_("Amount due"), amounts.due_paisa, strong=True))
    return rows


def invoice_document(invoice_id: int) -> Document | None:
    invoice = Invoice.objects.select_related("subscriber").filter(pk=invoice_id).first()
    if invoice is None:
        return None
    amounts = invoice_amounts(invoice.pk)
    void = invoice.status == InvoiceStatus.VOID
    facts = [
        (_("Invoice date"), _day(invoice.issued_on)),
        (_("Due date"), _day(invoice.due_on)),
        (_("Service period"), f"{_day(invoice.period_start)} – {_day(invoice.period_end)}"),
        (_("Status"), str(invoice.get_status_display())),
    ]
    notes = []
    if void:
        notes.append(_("This invoice has been voided; nothing is owed on it."))
    elif amounts.due_paisa > 0:
        notes.append(_("Please pay by the due date to keep your connection active."))
    return Document(
        kind="invoice",
        title=_("Invoice"),
        number=invoice.number,
        issuer=Issuer.current(),
        party=_party(invoice.subscriber),
        facts=facts,
        lines_heading=_("Description"),
        lines=[Row(line.description, line.amount_paisa) for line in invoice.lines.order_by("position")],
        totals=invoice_totals(invoice, amounts),
        notes=notes,
        void=void,
    )


# -- receipts ---------------------------------------------------------------------------

def receipt_payment(payment_id: int) -> Payment | None:
    """The payment a receipt may be printed for: one credited to a subscriber's account
    (a payment held for review or rejected has received nothing into it)."""
    return (
        Payment.objects.select_related("subscriber")
        .filter(pk=payment_id, status__in=CREDITED_STATUSES, subscriber__isnull=False)
        .first()
    )


def receipt_document(payment_id: int) -> Document | None:
    payment = receipt_payment(payment_id)
    if payment is None:
        return None
    applied = list(
        LedgerEntry.objects.filter(payment_id=payment.pk, invoice__isnull=False).order_by()
        .values_list("invoice__number").annotate(s=Sum("amount_paisa")).order_by("invoice__number")
    )
    unapplied = LedgerEntry.objects.filter(payment_id=payment.pk, invoice__isnull=True).aggregate(s=Sum("amount_paisa"))["s"] or 0
    balance = LedgerEntry.objects.filter(subscriber_id=payment.subscriber_id).aggregate(s=Sum("amount_paisa"))["s"] or 0
    method = payment.method_label or dict(PaymentMethod.choices).get(payment.method, payment.method)
    facts = [
        (_("Received"), _instant(payment.received_at)),
        (_("Method"), str(method)),
    ]
    reference = payment.transaction_id or payment.reference
    if reference:
        facts.append((_("Reference"), reference))
    if payment.refunded_paisa:
        facts.append((_("Status"), str(payment.get_status_display())))
    lines = [Row(_("Applied to invoice %(number)s") % {"number": number}, -paisa) for number, paisa in applied if paisa]
    if unapplied:
        lines.append(Row(_("Kept as account credit"), -unapplied))
    totals = [Row(_("Amount received"), payment.amount_paisa, strong=True)]
    if payment.refunded_paisa:
        totals.append(Row(_("Refunded"), -payment.refunded_paisa))
    totals.append(
        Row(_("Balance due now"), balance, strong=True) if balance >= 0 else Row(_("Account credit now"), -balance, strong=True)
    )
    return Document(
        kind="receipt",
        title=_("Payment receipt"),
        number=_("Payment %(id)s") % {"id": payment.pk},
        issuer=Issuer.current(),
        party=_party(payment.subscriber),
        facts=facts,
        lines_heading=_("Where the money went"),
        lines=lines,
        totals=totals,
        notes=[_("Thank you for your payment.")],
    )


# -- credit notes -----------------------------------------------------------------------

def credit_note_document(credit_note_id: int) -> Document | None:
    note = CreditNote.objects.select_related("subscriber", "invoice").filter(pk=credit_note_id).first()
    if note is None:
        return None
    facts = [(_("Date"), _day(note.issued_on))]
    if note.invoice is not None:
        facts.append((_("Against invoice"), note.invoice.number))
    facts.append((_("Reason"), note.reason))
    applied = list(
        LedgerEntry.objects.filter(credit_note_id=note.pk, invoice__isnull=False).order_by()
        .values_list("invoice__number").annotate(s=Sum("amount_paisa")).order_by("invoice__number")
    )
    unapplied = LedgerEntry.objects.filter(credit_note_id=note.pk, invoice__isnull=True).aggregate(s=Sum("amount_paisa"))["s"] or 0
    notes = [_("Credited to invoice %(number)s: %(amount)s") % {"number": n, "amount": format_taka(-p)} for n, p in applied if p]
    if unapplied:
        notes.append(_("Kept as account credit: %(amount)s") % {"amount": format_taka(-unapplied)})
    return Document(
        kind="credit_note",
        title=_("Credit note"),
        number=note.number,
        issuer=Issuer.current(),
        party=_party(note.subscriber),
        facts=facts,
        lines_heading=_("Description"),
        lines=[Row(line.description, line.amount_paisa) for line in note.lines.order_by("position")],
        totals=[Row(_("Total credited"), note.total_paisa, strong=True)],
        notes=notes,
    )


