"""Back-office pages: payments, the exceptions queue (match, reject, refund, "check
now" for a refund the gateway completes later) and the stored gateway callbacks and
webhooks (replay).

Lists page by keyset on the id, newest first, and run the same handful of queries
whatever the number of rows; totals of the filtered set are summed by the database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qsl, urlencode, urlsplit

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.shortcuts import render
from django.urls import NoReverseMatch, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from ispbill.audit.services import record as audit
from ispbill.audit.services import target_of
from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.selectors import newest_first_page, subscriber_match
from ispbill.backoffice.views.common import SeeOther, date_param, form_errors, int_param
from ispbill.billing.models import LedgerEntry
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.money import MoneyError, format_taka, from_paisa, parse_amount
from ispbill.core.timeutil import on_local_days
from ispbill.payments import gateway_services, refund_services
from ispbill.payments import services as payments
from ispbill.payments.choices import PaymentMethod, PaymentStatus, RefundStatus, WebhookOutcome
from ispbill.payments.models import InboundWebhook, Payment, Refund
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.selectors import subscriber_list

# -- shared reads --------------------------------------------------------------------------


# Keys whose values are secrets wherever they appear (headers, form fields, JSON, query).
_SECRET_WORDS = ("pass", "secret", "token", "authorization", "cookie", "api_key", "apikey", "app_key", "csrf", "session")
REDACTED = "[redacted]"
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,100}$")


def is_secret(key: str) -> bool:
    lowered = str(key).lower().replace("-", "_")
    return any(word in lowered for word in _SECRET_WORDS)


def _redact_json(value):
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret(k) else _redact_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, str) and value[:1] in "{[":
        # SNS carries the gateway's message as a JSON string inside JSON.
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        if isinstance(inner, (dict, list)):
            return json.dumps(_redact_json(inner), ensure_ascii=False)
    return value


@dataclass
class ShownWebhook:
    """What staff see of a stored webhook: secrets replaced, body readable. Escaping is
    left to the template (autoescape)."""

    headers: list[tuple[str, str]]
    body_format: str  # json | form | text
    body: str
    fields: list[tuple[str, str]]
    path: str


def shown_webhook(w: InboundWebhook) -> ShownWebhook:
    headers = [(k, REDACTED if is_secret(k) else str(v)) for k, v in sorted((w.headers or {}).items())]
    parts = urlsplit(w.path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    shown_path = parts.path + ("?" + urlencode([(k, REDACTED if is_secret(k) else v) for k, v in query]) if query else "")
    body = w.body or ""
    try:
        parsed = json.loads(body) if body.strip()[:1] in ("{", "[") else None
    except ValueError:
        parsed = None
    if parsed is not None:
        return ShownWebhook(headers, "json", json.dumps(_redact_json(parsed), indent=2, ensure_ascii=False), [], shown_path)
    if body and "=" in body and "\n" not in body.strip():
        fields = parse_qsl(body, keep_blank_values=True)
        if fields and all(_FIELD_NAME.match(k) for k, _ in fields):
            return ShownWebhook(headers, "form", "", [(k, REDACTED if is_secret(k) else v) for k, v in fields], shown_path)
    return ShownWebhook(headers, "text", body, [], shown_path)


# -- payments list -------------------------------------------------------------------------

#: "Paid by" filter: manual methods, each gateway, and Rocket (which SSLCommerz carries:
#: its card_type ``DBBLMOBILEB-…`` is recorded as method_label "Rocket").
VIA_CHOICES = [
    ("cash", gettext_lazy("Cash")),
    ("bank", gettext_lazy("Bank transfer")),
    ("manual_mfs", gettext_lazy("Mobile money (manual)")),
    ("bkash", "bKash"),
    ("nagad", "Nagad"),
    ("rocket", "Rocket"),
    ("sslcommerz", gettext_lazy("SSLCommerz (cards, other wallets)")),
]
_VIA = {
    "cash": Q(method=PaymentMethod.CASH),
    "bank": Q(method=PaymentMethod.BANK),
    "manual_mfs": Q(method=PaymentMethod.MANUAL_MFS),
    "bkash": Q(gateway="bkash"),
    "nagad": Q(gateway="nagad"),
    "rocket": Q(method_label__iexact="rocket"),
    "sslcommerz": Q(gateway="sslcommerz") & ~Q(method_label__iexact="rocket"),
}


@dataclass
class PaymentFilters:
    q: str = ""
    status: str = ""
    via: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_query(cls, params) -> "PaymentFilters":
        status, via = params.get("status", ""), params.get("via", "")
        return cls(
            q=(params.get("q") or "").strip()[:100],
            status=status if status in PaymentStatus.values else "",
            via=via if via in _VIA else "",
            date_from=date_param(params, "from"),
            date_to=date_param(params, "to"),
        )

    def active(self) -> bool:
        return bool(self.q or self.status or self.via or self.date_from or self.date_to)


def filtered_payments(f: PaymentFilters):
    qs = Payment.objects.all()
    if f.q:
        text = f.q
        qs = qs.filter(
            Q(transaction_id__icontains=text) | Q(reference__icontains=text) | Q(gateway_reference__icontains=text)
            | subscriber_match(text)
        )
    if f.status:
        qs = qs.filter(status=f.status)
    if f.via:
        qs = qs.filter(_VIA[f.via])
    return qs.filter(on_local_days("received_at", f.date_from, f.date_to))


def paid_by(p: Payment) -> str:
    """How staff name the way a payment came in: the gateway's label for the method
    (bKash, Nagad, Rocket, Visa…), else the gateway, else the manual method."""
    if p.method_label:
        return p.method_label
    if p.gateway:
        return {"bkash": "bKash", "nagad": "Nagad", "sslcommerz": "SSLCommerz"}.get(p.gateway, p.gateway)
    return p.get_method_display()


@require_GET
@permission_required("view_subscribers")
def payment_list(request):
    filters = PaymentFilters.from_query(request.GET)
    qs = filtered_payments(filters)
    totals = qs.aggregate(n=Count("id"), amount=Sum("amount_paisa"), refunded=Sum("refunded_paisa"))
    page = newest_first_page(
        qs.select_related("subscriber"), after=int_param(request, "after"), before=int_param(request, "before"),
        count=totals["n"],
    )
    for p in page.rows:
        p.paid_by = paid_by(p)
    context = {
        "title": _("Payments"),
        "nav": "payments",
        "filters": filters,
        "page": page,
        "totals": {"count": totals["n"], "amount": totals["amount"] or 0, "refunded": totals["refunded"] or 0,
                   "net": (totals["amount"] or 0) - (totals["refunded"] or 0)},
        "statuses": PaymentStatus.choices,
        "via_choices": VIA_CHOICES,
        "needs_review": queue_size(),
    }
    return render(request, "backoffice/payment_list.html", context)


# -- exceptions queue ----------------------------------------------------------------------

#: The first word of ``review_reason`` (set by the payments app) → what staff are told.
REASONS = {
    "unknown_reference": gettext_lazy("Unknown reference"),
    "amount_mismatch": gettext_lazy("Amount mismatch"),
    "currency_mismatch": gettext_lazy("Currency mismatch"),
    "gateway_review": gettext_lazy("Risky (gateway asks for a review)"),
    "second_payment": gettext_lazy("Second payment for one attempt"),
}


def reason_of(review_reason: str) -> tuple[str, str]:
    """``(code, label)`` of why a payment is held, from its stored reason."""
    code = (review_reason or "").split(":", 1)[0].strip()
    if code in REASONS:
        return code, str(REASONS[code])
    return "other", _("Other")


@require_GET
@permission_required("view_subscribers")
def exception_list(request):
    reason = request.GET.get("reason", "")
    qs = Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW)
    if reason in REASONS:
        qs = qs.filter(review_reason__startswith=reason)
    totals = qs.aggregate(n=Count("id"), amount=Sum("amount_paisa"))
    page = newest_first_page(
        qs.select_related("subscriber"), after=int_param(request, "after"), before=int_param(request, "before"),
        count=totals["n"],
    )
    for p in page.rows:
        p.reason_code, p.reason_label = reason_of(p.review_reason)
        p.paid_by = paid_by(p)
    context = {
        "title": _("Payments needing review"),
        "nav": "payments",
        "page": page,
        "now": clock.now(),
        "reason": reason if reason in REASONS else "",
        "reasons": [(k, str(v)) for k, v in REASONS.items()],
        "totals": {"count": totals["n"], "amount": totals["amount"] or 0},
    }
    return render(request, "backoffice/exception_list.html", context)


def queue_size() -> int:
    return Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW).count()


# -- payment detail and its actions ---------------------------------------------------------


class MatchForm(forms.Form):
    subscriber = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    note = forms.CharField(max_length=200, required=False, label=gettext_lazy("Note"))


class RejectForm(forms.Form):
    reason = forms.CharField(max_length=250, label=gettext_lazy("Reason"))
    confirm = forms.BooleanField(label=gettext_lazy("Yes, reject this payment"))


class RefundForm(forms.Form):
    amount = forms.CharField(max_length=20, label=gettext_lazy("Amount (৳)"),
                             widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    reason = forms.CharField(max_length=250, label=gettext_lazy("Reason"))
    confirm = forms.BooleanField(label=gettext_lazy("Yes, send this money back"))
    # What was refunded when the form was shown: a form sent twice refunds once.
    seen_refunded = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None


def _payment_or_404(pk: int) -> Payment:
    payment = Payment.objects.select_related("subscriber", "attempt", "recorded_by").filter(pk=pk).first()
    if payment is None:
        raise Http404("no such payment")
    return payment


def receipt_url(pk: int) -> str:
    try:
        return reverse("backoffice:receipt", args=[pk])
    except NoReverseMatch:
        return f"/office/payments/{pk}/receipt"


def allocations(entries) -> list[dict]:
    """Where the payment's money is now, per invoice (None: unapplied credit), net of
    refunds, in the order it was first applied."""
    net: dict[int | None, dict] = {}
    for e in entries:
        row = net.setdefault(e.invoice_id, {"invoice": e.invoice, "paisa": 0})
        row["paisa"] -= e.amount_paisa
    return [row for row in net.values() if row["paisa"]]


def refundable(payment: Payment) -> bool:
    return bool(payment.gateway) and payment.amount_paisa > payment.refunded_paisa and payment.status in (
        PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.NEEDS_REVIEW, PaymentStatus.REJECTED,
    )


def refund_is_full_only(payment: Payment) -> bool:
    return payment.status in (PaymentStatus.NEEDS_REVIEW, PaymentStatus.REJECTED)


@require_GET
@permission_required("view_subscribers")
def payment_detail(request, pk: int):
    payment = _payment_or_404(pk)
    hooks = Q(payment_id=payment.pk)
    if payment.attempt_id:
        hooks |= Q(attempt_id=payment.attempt_id)
    webhooks = list(InboundWebhook.objects.filter(hooks).order_by("-received_at", "-id")[:25])
    for w in webhooks:
        w.shown = shown_webhook(w)
    entries = list(
        LedgerEntry.objects.filter(payment_id=payment.pk).select_related("invoice").order_by("id")
    )
    left = payment.amount_paisa - payment.refunded_paisa
    match_q = (request.GET.get("match_q") or "").strip()[:100]
    candidates = list(subscriber_list(q=match_q)[:10]) if len(match_q) >= 2 else []
    chosen = None
    match_to = int_param(request, "match_to")
    if match_to is not None and payment.status == PaymentStatus.NEEDS_REVIEW:
        chosen = subscriber_list().filter(pk=match_to).first()
    reason_code, reason_label = reason_of(payment.review_reason)
    context = {
        "title": _("Payment %(id)s") % {"id": payment.pk},
        "nav": "payments",
        "p": payment,
        "paid_by": paid_by(payment),
        "reason_code": reason_code,
        "reason_label": reason_label,
        "webhooks": webhooks,
        "entries": entries,
        "allocations": allocations(entries),
        "refunds": list(payment.refunds.select_related("created_by").order_by("-created_at", "-id")),
        "receipt_url": receipt_url(payment.pk),
        "left_paisa": left,
        "refundable": refundable(payment),
        "full_only": refund_is_full_only(payment),
        "match_q": match_q,
        "candidates": candidates,
        "chosen": chosen,
        "match_form": MatchForm(initial={"subscriber": chosen.pk if chosen else None}),
        "reject_form": RejectForm(),
        "refund_form": RefundForm(initial={"amount": f"{from_paisa(left):.2f}", "seen_refunded": payment.refunded_paisa}),
    }
    return render(request, "backoffice/payment_detail.html", context)


def _back(pk: int) -> SeeOther:
    return SeeOther(reverse("backoffice:payment", args=[pk]))


def _refused(request, exc: DomainError) -> None:
    if exc.status == 501:
        messages.error(request, _("This payment cannot be refunded from here: %(why)s.") % {"why": exc.message})
    else:
        messages.error(request, exc.message)


@require_POST
@permission_required("manage_billing")
def match(request, pk: int):
    _payment_or_404(pk)
    form = MatchForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    try:
        payment = payments.match_payment(
            payment_id=pk, subscriber_id=form.cleaned_data["subscriber"], note=form.cleaned_data["note"],
            now=clock.now(), user=request.user,
        )
    except DomainError as exc:
        _refused(request, exc)
        return _back(pk)
    name = Subscriber.objects.filter(pk=payment.subscriber_id).values_list("name", flat=True).first()
    messages.success(request, _("Payment matched to %(name)s and credited; a receipt is on its way.") % {"name": name})
    return _back(pk)


@require_POST
@permission_required("manage_billing")
def reject(request, pk: int):
    _payment_or_404(pk)
    form = RejectForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    try:
        payments.reject_payment(payment_id=pk, reason=form.cleaned_data["reason"], now=clock.now(), user=request.user)
    except DomainError as exc:
        _refused(request, exc)
        return _back(pk)
    messages.success(request, _("Payment rejected. If the money really moved, refund it."))
    return _back(pk)


@require_POST
@permission_required("manage_billing")
def refund(request, pk: int):
    payment = _payment_or_404(pk)
    form = RefundForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    if form.cleaned_data["seen_refunded"] != payment.refunded_paisa:
        messages.info(request, _("This payment was refunded since the form was shown (was it sent twice?); nothing "
                                 "more was refunded. Check the refunds below and try again if needed."))
        return _back(pk)
    try:
        done = payments.refund_payment(
            payment_id=pk, amount=form.cleaned_data["amount"], reason=form.cleaned_data["reason"], now=clock.now(),
            user=request.user,
        )
    except DomainError as exc:
        _refused(request, exc)
        return _back(pk)
    amount = format_taka(done.amount_paisa)
    if done.status == "completed":
        messages.success(request, _("%(amount)s refunded through the gateway.") % {"amount": amount})
    else:
        messages.success(request, _("Refund of %(amount)s accepted by the gateway; it completes the refund later.")
                         % {"amount": amount})
    return _back(pk)


@require_POST
@permission_required("manage_billing")
def refund_check(request, pk: int, refund_pk: int):
    """Ask the gateway about a pending refund now instead of waiting for the worker."""
    if not Refund.objects.filter(pk=refund_pk, payment_id=pk).exists():
        raise Http404("no such refund")
    try:
        refund, _outcome = refund_services.check_refund(refund_id=refund_pk, now=clock.now(), user=request.user,
                                                        ip=client_ip(request))
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    amount = format_taka(refund.amount_paisa)
    if refund.status == RefundStatus.COMPLETED:
        messages.success(request, _("The gateway has completed the refund of %(amount)s.") % {"amount": amount})
    elif refund.status == RefundStatus.FAILED:
        messages.warning(request, _("The gateway cancelled the refund of %(amount)s: the money did not go back, and "
                                    "the payment is as it was before the refund.") % {"amount": amount})
    else:
        messages.info(request, _("The refund of %(amount)s is not finished yet: %(why)s") % {
            "amount": amount, "why": refund.last_error})
    return _back(pk)


# -- stored webhooks -----------------------------------------------------------------------

GATEWAY_CHOICES = [("bkash", "bKash"), ("nagad", "Nagad"), ("sslcommerz", "SSLCommerz")]


@require_GET
@permission_required("manage_billing")
def webhook_list(request):
    gateway, outcome = request.GET.get("gateway", ""), request.GET.get("outcome", "")
    gateway = gateway if gateway in dict(GATEWAY_CHOICES) else ""
    outcome = outcome if outcome in WebhookOutcome.values else ""
    qs = InboundWebhook.objects.all()
    if gateway:
        qs = qs.filter(gateway=gateway)
    if outcome:
        qs = qs.filter(outcome=outcome)
    page = newest_first_page(
        qs.defer("body", "headers"), after=int_param(request, "after"), before=int_param(request, "before"),
    )
    for w in page.rows:
        w.outcome_colour = WebhookOutcome(w.outcome).colour if w.outcome in WebhookOutcome.values else "grey"
    context = {
        "title": _("Gateway callbacks and webhooks"),
        "nav": "payments",
        "page": page,
        "gateway": gateway,
        "outcome": outcome,
        "filtered": bool(gateway or outcome),
        "gateways": GATEWAY_CHOICES,
        "outcomes": WebhookOutcome.choices,
    }
    return render(request, "backoffice/webhook_list.html", context)


@require_GET
@permission_required("manage_billing")
def webhook_detail(request, pk: int):
    w = InboundWebhook.objects.select_related("attempt", "payment").filter(pk=pk).first()
    if w is None:
        raise Http404("no such webhook")
    w.outcome_colour = WebhookOutcome(w.outcome).colour if w.outcome in WebhookOutcome.values else "grey"
    context = {
        "title": _("Webhook %(id)s") % {"id": w.pk},
        "nav": "payments",
        "w": w,
        "shown": shown_webhook(w),
    }
    return render(request, "backoffice/webhook_detail.html", context)


@require_POST
@permission_required("manage_billing")
def webhook_replay(request, pk: int):
    now = clock.now()
    before = InboundWebhook.objects.filter(pk=pk).values("outcome", "outcome_detail", "payment_id").first()
    if before is None:
        raise Http404("no such webhook")
    try:
        webhook, processed = gateway_services.replay_webhook(webhook_id=pk, now=now)
    except DomainError as exc:
        messages.error(request, exc.message)
        return SeeOther(reverse("backoffice:webhook", args=[pk]))
    # Replaying goes through the gateway and settlement (each in their own transaction):
    # the event says who asked for it and what came of it.
    audit(
        action="webhook.replay", at=now, user=request.user, target=target_of(webhook),
        before=before, after={"outcome": webhook.outcome, "outcome_detail": webhook.outcome_detail,
                              "payment_id": webhook.payment_id},
        summary=f"replayed {webhook.gateway} {webhook.kind} {webhook.pk}: {processed.outcome}", ip=client_ip(request),
    )
    text = _("Replayed: %(outcome)s — %(detail)s") % {
        "outcome": WebhookOutcome(webhook.outcome).label if webhook.outcome in WebhookOutcome.values else webhook.outcome,
        "detail": processed.detail,
    }
    if processed.outcome in (WebhookOutcome.ACCEPTED, WebhookOutcome.DUPLICATE):
        messages.success(request, text)
    else:
        messages.error(request, text)
    return SeeOther(reverse("backoffice:webhook", args=[pk]))


urlpatterns = [
    path("payments/", payment_list, name="payments"),
    path("payments/exceptions/", exception_list, name="payment-exceptions"),
    path("payments/<int:pk>/", payment_detail, name="payment"),
    path("payments/<int:pk>/match", match, name="payment-match"),
    path("payments/<int:pk>/reject", reject, name="payment-reject"),
    path("payments/<int:pk>/refund", refund, name="payment-refund"),
    path("payments/<int:pk>/refunds/<int:refund_pk>/check", refund_check, name="refund-check"),
    path("webhooks/", webhook_list, name="webhooks"),
    path("webhooks/<int:pk>/", webhook_detail, name="webhook"),
    path("webhooks/<int:pk>/replay", webhook_replay, name="webhook-replay"),
]
