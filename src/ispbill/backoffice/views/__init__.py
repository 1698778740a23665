"""Back-office pages and actions. Thin: parse, check the permission, call a selector or
a service, render. Every action is POST-only (CSRF-checked by middleware) and answers
with a message and a redirect; a refused service call (DomainError) is a message too."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST, require_safe

from ispbill.backoffice import charts, selectors
from ispbill.backoffice import services as office
from ispbill.backoffice.forms import (
    ChangePackageForm,
    ExemptForm,
    LoginForm,
    PaymentForm,
    ReminderForm,
    StatusForm,
)
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.tables import SUBSCRIBER_COLUMNS
from ispbill.backoffice.templatetags.backoffice import taka
from ispbill.backoffice.views.common import SeeOther, form_errors, int_param
from ispbill.billing import services as billing
from ispbill.billing.models import Invoice
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.money import to_paisa
from ispbill.core.timeutil import local_date
from ispbill.notifications.services import request_reminder
from ispbill.payments.services import record_payment as record_payment_service
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.services import update_subscriber


@require_safe
def home(request):
    """``/``: staff go to the back office; everyone else sees where things are."""
    if request.user.is_authenticated:
        return redirect("backoffice:dashboard")
    return render(request, "home.html")


class LoginView(auth_views.LoginView):
    template_name = "backoffice/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class LogoutView(auth_views.LogoutView):
    pass


# -- dashboard -----------------------------------------------------------------------------

@require_GET
@permission_required("view_dashboard")
def dashboard(request):
    now = clock.now()
    data = selectors.dashboard(now=now, today=local_date(now))
    context = {
        "d": data,
        "chart_payments": charts.payments_per_day(data.days, data.payments_by_day),
        "chart_aging": charts.aging(data.aging),
        "chart_status": charts.subscribers_by_status(data.by_status, dict(SubscriberStatus.choices)),
        "payment_totals": sorted((label, sum(per_day.values())) for label, per_day in data.payments_by_day.items()),
        "nav": "dashboard",
    }
    return render(request, "backoffice/dashboard.html", context)


# -- subscribers ---------------------------------------------------------------------------

@require_GET
@permission_required("view_subscribers")
def subscriber_list(request):
    filters = selectors.SubscriberFilters.from_query(request.GET)
    today = local_date(clock.now())
    page = selectors.subscriber_page(
        filters, today=today, after=int_param(request, "after"), before=int_param(request, "before")
    )
    context = {
        "title": _("Subscribers"),
        "nav": "subscribers",
        "filters": filters,
        "choices": selectors.filter_choices(),
        "columns": SUBSCRIBER_COLUMNS,
        "page": page,
    }
    return render(request, "backoffice/subscriber_list.html", context)


def _detail_or_404(subscriber_id: int):
    detail = selectors.subscriber_detail(subscriber_id)
    if detail is None:
        raise Http404(_("No such subscriber."))
    return detail


@require_GET
@permission_required("view_subscribers")
def subscriber_detail(request, pk: int):
    detail = _detail_or_404(pk)
    today = local_date(clock.now())
    context = {
        "title": detail.subscriber.name,
        "nav": "subscribers",
        "x": detail,
        "s": detail.subscriber,
        "package_form": ChangePackageForm(packages=detail.packages, initial={"effective_on": today}),
        "payment_form": PaymentForm(),
        "status_form": StatusForm(),
        "reminder_form": ReminderForm(),
    }
    return render(request, "backoffice/subscriber_detail.html", context)


def _back(pk: int) -> SeeOther:
    return SeeOther(reverse("backoffice:subscriber", args=[pk]))


def _change_package(request, pk: int, *, data, preview: bool):
    """Validate the form and call ``change_package``; returns (detail, form, outcome), or
    a redirect back to the subscriber with the errors shown."""
    detail = _detail_or_404(pk)
    form = ChangePackageForm(data, packages=detail.packages)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    now = clock.now()
    try:
        outcome = billing.change_package(
            subscriber_id=pk, package_id=form.cleaned_data["package"], effective_on=form.cleaned_data["effective_on"],
            preview=preview, today=local_date(now), now=now, user=request.user,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    return detail, form, outcome


@require_GET
@permission_required("manage_billing")
def change_package_preview(request, pk: int):
    """The prorated lines a package change would post; nothing is written."""
    result = _change_package(request, pk, data=request.GET, preview=True)
    if not isinstance(result, tuple):
        return result
    detail, form, outcome = result
    new = next(p for p in detail.packages if p.pk == form.cleaned_data["package"])
    context = {
        "title": _("Change package: %(name)s") % {"name": detail.subscriber.name},
        "nav": "subscribers",
        "s": detail.subscriber,
        "new_package": new,
        "effective_on": form.cleaned_data["effective_on"],
        "outcome": outcome,
        "lines": [(line.description, line.kind, to_paisa(line.amount)) for line in outcome.lines],
        "total_paisa": to_paisa(outcome.total),
    }
    return render(request, "backoffice/change_package_preview.html", context)


@require_POST
@permission_required("manage_billing")
def change_package(request, pk: int):
    result = _change_package(request, pk, data=request.POST, preview=False)
    if not isinstance(result, tuple):
        return result
    _detail, form, outcome = result
    if outcome.document == "invoice":
        done = _("Package changed; invoice %(number)s issued.") % {"number": outcome.invoice.number if outcome.invoice else ""}
    elif outcome.document == "credit_note":
        done = _("Package changed; credit note %(number)s issued.") % {
            "number": outcome.credit_note.number if outcome.credit_note else ""
        }
    elif outcome.document == "scheduled":
        done = _("Package change scheduled for %(day)s.") % {"day": date_format(form.cleaned_data["effective_on"], "d M Y")}
    else:
        done = _("Package changed; nothing to charge or credit.")
    messages.success(request, done)
    return _back(pk)


@require_POST
@permission_required("record_payments")
def record_payment(request, pk: int):
    form = PaymentForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    data = form.cleaned_data
    try:
        payment, created = record_payment_service(
            subscriber_id=pk, amount=data["amount"], method=data["method"], received_at=clock.now(),
            reference=data["reference"], notes=data["notes"], user=request.user, idempotency_key=data["key"],
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    if created:
        messages.success(request, _("Payment of %(amount)s recorded.") % {"amount": taka(to_paisa(payment.amount))})
    else:
        messages.info(request, _("This payment was already recorded (the form was sent twice)."))
    return _back(pk)


@require_POST
@permission_required("manage_status")
def change_status(request, pk: int):
    form = StatusForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    try:
        sub = office.change_status_by_hand(
            subscriber_id=pk, action=form.cleaned_data["action"], reason=form.cleaned_data["reason"],
            now=clock.now(), user=request.user,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    messages.success(request, _("%(name)s is now %(status)s; the router follows.") % {
        "name": sub.name, "status": str(sub.get_status_display()).lower(),
    })
    return _back(pk)


@require_POST
@permission_required("send_reminders")
def send_reminder(request, pk: int):
    form = ReminderForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    data = form.cleaned_data
    if not Invoice.objects.filter(pk=data["invoice"], subscriber_id=pk).exists():
        messages.error(request, _("That invoice is not this subscriber's."))
        return _back(pk)
    try:
        sent = request_reminder(
            invoice_id=data["invoice"], kind=data["kind"], channels=[data["channel"]] if data["channel"] else None,
            now=clock.now(), user=request.user,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    if sent:
        messages.success(request, _("Reminder queued (%(channels)s).") % {"channels": ", ".join(m.channel for m in sent)})
    else:
        messages.info(request, _("No reminder queued: the subscriber has no address for that channel."))
    return _back(pk)


@require_POST
@permission_required("manage_status")
def set_exempt(request, pk: int):
    form = ExemptForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    exempt = form.cleaned_data["never_suspend"]
    try:
        update_subscriber(subscriber_id=pk, today=local_date(clock.now()), user=request.user, never_suspend=exempt)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    messages.success(request, _("Exempt from automatic suspension.") if exempt else _("Automatic suspension applies again."))
    return _back(pk)
