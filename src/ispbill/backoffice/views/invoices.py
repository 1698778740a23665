"""Back-office pages: invoices, credit notes, and the printable (HTML and PDF) invoice,
credit note and payment receipt.

Issued documents are never edited: an invoice is corrected by a credit note, or voided
when nothing has been paid or credited on it yet."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from ispbill.backoffice import invoice_selectors as selectors
from ispbill.backoffice import pdf
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.tables import Column
from ispbill.backoffice.views.common import SeeOther, form_errors, int_param
from ispbill.billing import documents
from ispbill.billing import services as billing
from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.models import BillingSettings
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.money import MoneyError, from_paisa, parse_amount, to_paisa
from ispbill.core.timeutil import local_date

INVOICE_COLUMNS = [
    Column(
        gettext_lazy("Number"), "number", link=lambda i: reverse("backoffice:invoice", args=[i.pk]),
        classes="mono strong nowrap",
    ),
    Column(gettext_lazy("Subscriber"), "subscriber.name", link=lambda i: reverse("backoffice:subscriber", args=[i.subscriber_id])),
    Column(gettext_lazy("Period"), "period_label"),
    Column(gettext_lazy("Issued"), "issued_label", classes="nowrap"),
    Column(gettext_lazy("Due"), "due_label", classes="nowrap"),
    Column(gettext_lazy("Total"), "total_paisa", kind="money", classes="num"),
    Column(gettext_lazy("Due now"), "amount_due_paisa", kind="money", classes="num"),
    Column(gettext_lazy("Status"), "status", kind="badge", badge="invoice"),
]

CREDIT_NOTE_COLUMNS = [
    Column(
        gettext_lazy("Number"), "number", link=lambda n: reverse("backoffice:credit-note", args=[n.pk]),
        classes="mono strong nowrap",
    ),
    Column(gettext_lazy("Subscriber"), "subscriber.name", link=lambda n: reverse("backoffice:subscriber", args=[n.subscriber_id])),
    Column(gettext_lazy("Invoice"), "invoice.number", classes="mono nowrap"),
    Column(gettext_lazy("Issued"), "issued_label", classes="nowrap"),
    Column(gettext_lazy("Reason"), "reason"),
    Column(gettext_lazy("Credited"), "total_paisa", kind="money", classes="num"),
]


def _day(value) -> str:
    return date_format(value, "j M Y")


# -- forms ------------------------------------------------------------------------------

class VoidInvoiceForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=250)
    confirm = forms.BooleanField(label=gettext_lazy("Confirm"), error_messages={"required": gettext_lazy("tick the box to confirm")})


class CreditNoteForm(forms.Form):
    amount = forms.CharField(
        label=gettext_lazy("Amount"), max_length=20, widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "0.00"})
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=250)
    confirm = forms.BooleanField(label=gettext_lazy("Confirm"), error_messages={"required": gettext_lazy("tick the box to confirm")})

    def __init__(self, *args, limit_paisa: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_paisa = limit_paisa

    def clean_amount(self):
        try:
            amount = parse_amount(self.cleaned_data["amount"])
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None
        if self.limit_paisa is not None and to_paisa(amount) > self.limit_paisa:
            raise ValidationError(
                _("at most ৳ %(limit)s can be credited on this invoice (its total less earlier credit notes)")
                % {"limit": f"{from_paisa(self.limit_paisa):,.2f}"}
            )
        return amount


# -- invoices ---------------------------------------------------------------------------

@require_GET
@permission_required("view_subscribers")
def invoice_list(request):
    filters = selectors.InvoiceFilters.from_query(request.GET)
    today = local_date(clock.now())
    page = selectors.invoice_page(filters, today=today, after=int_param(request, "after"), before=int_param(request, "before"))
    for inv in page.rows:
        inv.period_label = f"{_day(inv.period_start)} – {_day(inv.period_end)}"
        inv.issued_label = _day(inv.issued_on)
        inv.due_label = _day(inv.due_on)
    context = {
        "title": _("Invoices"),
        "nav": "invoices",
        "filters": filters,
        "statuses": InvoiceStatus.choices,
        "areas": selectors.areas(),
        "columns": INVOICE_COLUMNS,
        "page": page,
    }
    return render(request, "backoffice/invoice_list.html", context)


def _invoice_or_404(pk: int, today):
    detail = selectors.invoice_detail(pk, today=today)
    if detail is None:
        raise Http404("no such invoice")
    return detail


@require_GET
@permission_required("view_subscribers")
def invoice_detail(request, pk: int):
    today = local_date(clock.now())
    detail = _invoice_or_404(pk, today)
    context = {
        "title": _("Invoice %(number)s") % {"number": detail.invoice.number},
        "nav": "invoices",
        "x": detail,
        "inv": detail.invoice,
        "totals": documents.invoice_totals(detail.invoice, detail.amounts),
        "creditable": detail.creditable_paisa,
    }
    return render(request, "backoffice/invoice_detail.html", context)


def _back_to_invoice(pk: int) -> SeeOther:
    return SeeOther(reverse("backoffice:invoice", args=[pk]))


@require_POST
@permission_required("manage_billing")
def invoice_void(request, pk: int):
    now = clock.now()
    detail = _invoice_or_404(pk, local_date(now))
    form = VoidInvoiceForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back_to_invoice(pk)
    if detail.invoice.status == InvoiceStatus.VOID:
        messages.info(request, _("This invoice was already void."))
        return _back_to_invoice(pk)
    try:
        invoice = billing.void_invoice(invoice_id=pk, reason=form.cleaned_data["reason"], now=now, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back_to_invoice(pk)
    messages.success(request, _("Invoice %(number)s voided.") % {"number": invoice.number})
    return _back_to_invoice(pk)


@require_POST
@permission_required("manage_billing")
def invoice_credit_note(request, pk: int):
    now = clock.now()
    detail = _invoice_or_404(pk, local_date(now))
    form = CreditNoteForm(request.POST, limit_paisa=detail.creditable_paisa)
    if not form.is_valid():
        form_errors(request, form)
        return _back_to_invoice(pk)
    try:
        note = billing.issue_credit_note(
            subscriber_id=detail.invoice.subscriber_id, invoice_id=pk, amount=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"], today=local_date(now), now=now, user=request.user,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back_to_invoice(pk)
    messages.success(
        request,
        _("Credit note %(number)s issued for ৳ %(amount)s.") % {"number": note.number, "amount": f"{from_paisa(note.total_paisa):,.2f}"},
    )
    return _back_to_invoice(pk)


# -- credit notes -----------------------------------------------------------------------

@require_GET
@permission_required("view_subscribers")
def credit_note_list(request):
    filters = selectors.CreditNoteFilters.from_query(request.GET)
    page = selectors.credit_note_page(filters, after=int_param(request, "after"), before=int_param(request, "before"))
    for note in page.rows:
        note.issued_label = _day(note.issued_on)
    context = {
        "title": _("Credit notes"),
        "nav": "invoices",
        "filters": filters,
        "areas": selectors.areas(),
        "columns": CREDIT_NOTE_COLUMNS,
        "page": page,
    }
    return render(request, "backoffice/credit_note_list.html", context)


@require_GET
@permission_required("view_subscribers")
def credit_note_detail(request, pk: int):
    detail = selectors.credit_note_detail(pk)
    if detail is None:
        raise Http404("no such credit note")
    context = {
        "title": _("Credit note %(number)s") % {"number": detail.note.number},
        "nav": "invoices",
        "x": detail,
        "note": detail.note,
    }
    return render(request, "backoffice/credit_note_detail.html", context)


# -- printable documents ----------------------------------------------------------------

def _document_or_404(build, pk: int) -> documents.Document:
    doc = build(pk)
    if doc is None:
        raise Http404("no such document")
    return doc


def _print(request, doc: documents.Document, *, back: str, pdf_url: str):
    context = {
        "doc": doc,
        "back": back,
        "pdf_url": pdf_url,
        "logo_version": BillingSettings.objects.values_list("updated_at", flat=True).first(),
    }
    return render(request, "backoffice/print_document.html", context)


def _pdf(doc: documents.Document) -> HttpResponse:
    response = HttpResponse(pdf.render(doc), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{doc.filename}"'
    response["Cache-Control"] = "private, no-cache"
    return response


@require_GET
@permission_required("view_subscribers")
def invoice_print(request, pk: int):
    doc = _document_or_404(documents.invoice_document, pk)
    return _print(request, doc, back=reverse("backoffice:invoice", args=[pk]), pdf_url=reverse("backoffice:invoice-pdf", args=[pk]))


@require_GET
@permission_required("view_subscribers")
def invoice_pdf(request, pk: int):
    return _pdf(_document_or_404(documents.invoice_document, pk))


@require_GET
@permission_required("view_subscribers")
def credit_note_print(request, pk: int):
    doc = _document_or_404(documents.credit_note_document, pk)
    return _print(
        request, doc, back=reverse("backoffice:credit-note", args=[pk]), pdf_url=reverse("backoffice:credit-note-pdf", args=[pk])
    )


@require_GET
@permission_required("view_subscribers")
def credit_note_pdf(request, pk: int):
    return _pdf(_document_or_404(documents.credit_note_document, pk))


@require_GET
@permission_required("view_subscribers")
def receipt(request, pk: int):
    doc = _document_or_404(documents.receipt_document, pk)
    payment = documents.receipt_payment(pk)
    return _print(
        request, doc, back=reverse("backoffice:subscriber", args=[payment.subscriber_id]),
        pdf_url=reverse("backoffice:receipt-pdf", args=[pk]),
    )


@require_GET
@permission_required("view_subscribers")
def receipt_pdf(request, pk: int):
    return _pdf(_document_or_404(documents.receipt_document, pk))


urlpatterns = [
    path("invoices/", invoice_list, name="invoices"),
    path("invoices/<int:pk>/", invoice_detail, name="invoice"),
    path("invoices/<int:pk>/void", invoice_void, name="invoice-void"),
    path("invoices/<int:pk>/credit-note", invoice_credit_note, name="invoice-credit-note"),
    path("invoices/<int:pk>/print", invoice_print, name="invoice-print"),
    path("invoices/<int:pk>/pdf", invoice_pdf, name="invoice-pdf"),
    path("credit-notes/", credit_note_list, name="credit-notes"),
    path("credit-notes/<int:pk>/", credit_note_detail, name="credit-note"),
    path("credit-notes/<int:pk>/print", credit_note_print, name="credit-note-print"),
    path("credit-notes/<int:pk>/pdf", credit_note_pdf, name="credit-note-pdf"),
    path("payments/<int:pk>/receipt", receipt, name="receipt"),
    path("payments/<int:pk>/receipt.pdf", receipt_pdf, name="receipt-pdf"),
]
