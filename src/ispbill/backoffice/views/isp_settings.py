"""Back-office pages: the ISP settings (billing, reminders, message templates, payment
gateways, test sends). Every page and action needs ``manage_settings``; each save goes
through the same settings service as the API, which validates it and records an audit
event. A refused save shows the form again with what was typed and the errors; a
successful one answers with a message and a 303."""

from __future__ import annotations

import os

from django import forms
from django.conf import settings as django_settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.views.common import SeeOther, form_errors
from ispbill.billing import settings_services as billing_settings
from ispbill.billing.choices import DueRuleChoice, PaymentTermsChoice, RoundingChoice
from ispbill.billing.models import BillingSettings
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.timeutil import local_date
from ispbill.dunning import settings_services as reminder_settings
from ispbill.dunning.models import DunningSettings
from ispbill.dunning.policy import DUNNING_KINDS
from ispbill.notifications import settings_services as message_settings
from ispbill.notifications import texts
from ispbill.notifications.choices import ChannelChoice, Language, MessageKindChoice
from ispbill.payments import settings_services as gateway_settings
from ispbill.subscribers.choices import BillingModeChoice

BRANDING_PATH = "/office/settings/branding"
NAV = "settings"
EXTRA_LADDER_ROWS = 2
MAX_LADDER_ROWS = 12


def _who(request) -> dict:
    return {"user": request.user, "ip": client_ip(request)}


def _refused(request, form: forms.Form, exc: DomainError) -> None:
    """A service's refusal, on its field when the form has one, and as a message."""
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)
    messages.error(request, exc.message)


# -- index --------------------------------------------------------------------------------------

@require_GET
@permission_required("manage_settings")
def index(request):
    context = {
        "title": _("Settings"), "nav": NAV, "b": BillingSettings.load(), "d": DunningSettings.load(),
        "customised": sum(1 for row in message_settings.template_rows() if row["customised"]),
        "templates": len(texts.DEFAULTS), "gateways": gateway_settings.gateway_rows(), "branding_path": BRANDING_PATH,
    }
    return render(request, "backoffice/settings_index.html", context)


# -- billing ------------------------------------------------------------------------------------

def _days(field: str, label, help_text) -> forms.IntegerField:
    low, high = billing_settings.DAY_FIELDS[field]
    return forms.IntegerField(label=label, min_value=low, max_value=high, help_text=help_text)


class BillingForm(forms.Form):
    billing_mode = forms.ChoiceField(label=gettext_lazy("Billing mode"), choices=BillingModeChoice.choices,
                                     help_text=gettext_lazy("Calendar: every period starts on the billing day. Anniversary: on the day each subscriber was activated."))
    billing_day = _days("billing_day", gettext_lazy("Billing day"),
                        gettext_lazy("Calendar mode: the day of the month periods start (a day past the month's end is its last day)."))
    payment_terms = forms.ChoiceField(label=gettext_lazy("Payment terms"), choices=PaymentTermsChoice.choices,
                                      help_text=gettext_lazy("Prepaid: invoiced before the period; postpaid: the day after it ends."))
    invoice_lead_days = _days("invoice_lead_days", gettext_lazy("Invoice lead days"),
                              gettext_lazy("Prepaid: how many days before a period starts its invoice is issued."))
    due_rule = forms.ChoiceField(label=gettext_lazy("Due date rule"), choices=DueRuleChoice.choices)
    due_days = _days("due_days", gettext_lazy("Due days"),
                     gettext_lazy("Days after the period start (or the issue date) an invoice is due; never before it is issued."))
    grace_days = _days("grace_days", gettext_lazy("Grace days"),
                       gettext_lazy("An unpaid invoice suspends service on its due date + grace days + 1. This also applies to invoices already open."))
    rounding = forms.ChoiceField(label=gettext_lazy("Rounding"), choices=RoundingChoice.choices,
                                 help_text=gettext_lazy("Each invoice line is rounded once, half-up."))
    invoice_number_format = forms.CharField(label=gettext_lazy("Invoice number format"), max_length=64,
                                            help_text=gettext_lazy("{year} and {seq}, e.g. INV-{year}-{seq:06d}; the sequence restarts each year when {year} is in it."))
    credit_note_number_format = forms.CharField(label=gettext_lazy("Credit note number format"), max_length=64,
                                                help_text=gettext_lazy("As the invoice format, e.g. CN-{year}-{seq:06d}."))
    tax_name = forms.CharField(label=gettext_lazy("Tax name"), max_length=32, required=False)
    tax_rate = forms.CharField(label=gettext_lazy("Tax rate (%)"), max_length=8,
                               widget=forms.TextInput(attrs={"inputmode": "decimal"}),
                               help_text=gettext_lazy("0 for none; a tax line on the sum of each invoice's lines."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.IntegerField):
                field.widget.attrs["inputmode"] = "numeric"


def _billing_initial(b: BillingSettings) -> dict:
    initial = {f: getattr(b, f) for f in BillingForm.base_fields}
    initial["tax_rate"] = f"{b.tax_rate:.2f}"
    return initial


def _number_samples(b: BillingSettings, today) -> dict:
    """What the next documents' numbers look like (the formats were checked when saved)."""
    try:
        return {
            "invoice": b.invoice_number_format.format(year=today.year, seq=123),
            "credit_note": b.credit_note_number_format.format(year=today.year, seq=45),
        }
    except (KeyError, IndexError, ValueError):
        return {}


def _billing_page(request, form: BillingForm, *, status: int = 200):
    b = BillingSettings.load()
    context = {
        "title": _("Billing settings"), "nav": NAV, "form": form, "b": b,
        "samples": _number_samples(b, local_date(clock.now())),
    }
    return render(request, "backoffice/settings_billing.html", context, status=status)


@require_GET
@permission_required("manage_settings")
def billing(request):
    return _billing_page(request, BillingForm(initial=_billing_initial(BillingSettings.load())))


@require_POST
@permission_required("manage_settings")
def billing_save(request):
    form = BillingForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return _billing_page(request, form)
    try:
        billing_settings.update_billing_settings(changes=dict(form.cleaned_data), now=clock.now(), **_who(request))
    except DomainError as exc:
        _refused(request, form, exc)
        return _billing_page(request, form)
    messages.success(request, _("Billing settings saved. They apply from the next billing run; invoices already issued never change."))
    return SeeOther(reverse("backoffice:settings-billing"))


# -- reminders ----------------------------------------------------------------------------------

class QuietHoursForm(forms.Form):
    quiet_hours_start = forms.TimeField(label=gettext_lazy("Quiet hours start"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    quiet_hours_end = forms.TimeField(label=gettext_lazy("Quiet hours end"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    payment_link_days = forms.IntegerField(
        label=gettext_lazy("Payment links valid for (days)"), min_value=reminder_settings.LINK_DAYS_RANGE[0],
        max_value=reminder_settings.LINK_DAYS_RANGE[1],
    )


def _ladder_rows(ladder: list[dict], extra: int) -> list[dict]:
    rows = [
        {"offset": s["offset"], "kind": s["kind"], "sms": "sms" in s["channels"], "email": "email" in s["channels"]}
        for s in ladder
    ]
    rows += [{"offset": "", "kind": "", "sms": True, "email": True, "new": True} for _row in range(extra)]
    return rows[:MAX_LADDER_ROWS]


def _parse_ladder(data) -> tuple[list[dict], list[dict], list[str]]:
    """(steps to save, rows as typed, errors) from the ladder rows of the form. A row
    with no day is empty (an unused "add" row); a row marked "remove" is dropped."""
    try:
        count = min(int(data.get("steps", "0")), MAX_LADDER_ROWS)
    except ValueError:
        count = 0
    steps, rows, errors = [], [], []
    for i in range(count):
        raw = data.get(f"step-{i}-offset", "").strip()
        row = {
            "offset": raw, "kind": data.get(f"step-{i}-kind", ""), "sms": bool(data.get(f"step-{i}-sms")),
            "email": bool(data.get(f"step-{i}-email")), "remove": bool(data.get(f"step-{i}-remove")),
        }
        if row["remove"]:
            continue
        if not raw:
            rows.append(row | {"new": True})
            continue
        rows.append(row)
        try:
            offset = int(raw)
        except ValueError:
            errors.append(_("Row %(n)d: the day must be a whole number such as -5, 0 or 1.") % {"n": i + 1})
            continue
        steps.append({
            "offset": offset, "kind": row["kind"],
            "channels": [c for c in ("sms", "email") if row[c]],
        })
    return steps, rows, errors


def _reminders_page(request, form: QuietHoursForm, rows: list[dict], *, status: int = 200):
    context = {
        "title": _("Reminder settings"), "nav": NAV, "form": form, "rows": rows, "steps": len(rows),
        "kinds": [(k.value, MessageKindChoice(k.value).label) for k in DUNNING_KINDS],
        "grace_days": BillingSettings.load().grace_days,
        "offset_range": reminder_settings.OFFSET_RANGE,
    }
    return render(request, "backoffice/settings_reminders.html", context, status=status)


@require_GET
@permission_required("manage_settings")
def reminders(request):
    d = DunningSettings.load()
    try:
        extra = max(EXTRA_LADDER_ROWS, min(int(request.GET.get("extra", EXTRA_LADDER_ROWS)), MAX_LADDER_ROWS))
    except ValueError:
        extra = EXTRA_LADDER_ROWS
    form = QuietHoursForm(initial={
        "quiet_hours_start": d.quiet_hours_start, "quiet_hours_end": d.quiet_hours_end,
        "payment_link_days": d.payment_link_days,
    })
    return _reminders_page(request, form, _ladder_rows(d.ladder, extra))


@require_POST
@permission_required("manage_settings")
def reminders_save(request):
    form = QuietHoursForm(request.POST)
    steps, rows, errors = _parse_ladder(request.POST)
    if not form.is_valid() or errors:
        form_errors(request, form)
        for error in errors:
            messages.error(request, error)
        return _reminders_page(request, form, rows)
    data = form.cleaned_data
    changes = {
        "ladder": steps,
        "quiet_hours_start": data["quiet_hours_start"].strftime("%H:%M"),
        "quiet_hours_end": data["quiet_hours_end"].strftime("%H:%M"),
        "payment_link_days": data["payment_link_days"],
    }
    try:
        reminder_settings.update_reminder_settings(changes=changes, now=clock.now(), **_who(request))
    except DomainError as exc:
        _refused(request, form, exc)
        return _reminders_page(request, form, rows)
    messages.success(request, _("Reminder settings saved. The next dunning run follows the new ladder; reminders already queued are not changed."))
    return SeeOther(reverse("backoffice:settings-reminders"))


# -- message templates --------------------------------------------------------------------------

@require_GET
@permission_required("manage_settings")
def templates(request):
    kinds = dict(MessageKindChoice.choices)
    languages = dict(Language.choices)
    channels = dict(ChannelChoice.choices)
    rows = [
        row | {"kind_label": kinds.get(row["kind"], row["kind"]), "language_label": languages.get(row["language"]),
               "channel_label": channels.get(row["channel"])}
        for row in message_settings.template_rows()
    ]
    return render(request, "backoffice/settings_templates.html", {"title": _("Message templates"), "nav": NAV, "rows": rows})


class TemplateForm(forms.Form):
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=message_settings.SUBJECT_MAX, required=False)
    body = forms.CharField(label=gettext_lazy("Text"), max_length=message_settings.BODY_MAX, strip=False,
                           widget=forms.Textarea(attrs={"rows": 8}))


def _template_key_or_404(kind: str, language: str, channel: str):
    try:
        return message_settings.template_key(kind, language, channel)
    except DomainError:
        raise Http404("no such template") from None


def _template_page(request, key, form: TemplateForm, *, preview=None, customised: bool, status: int = 200):
    kind, language, channel = key
    context = {
        "title": _("Message template"), "nav": NAV, "form": form, "kind": kind, "language": language, "channel": channel,
        "kind_label": dict(MessageKindChoice.choices).get(kind, kind), "language_label": dict(Language.choices).get(language),
        "channel_label": dict(ChannelChoice.choices).get(channel), "is_email": channel == "email",
        "customised": customised, "builtin": texts.DEFAULTS[key], "placeholders": texts.PLACEHOLDERS, "preview": preview,
    }
    return render(request, "backoffice/settings_template_edit.html", context, status=status)


def _preview_or_error(request, key, form: TemplateForm, subject: str, body: str):
    try:
        return message_settings.preview_template(
            kind=key[0], language=key[1], channel=key[2], subject=subject, body=body, now=clock.now()
        )
    except DomainError as exc:
        _refused(request, form, exc)
        return None


@require_GET
@permission_required("manage_settings")
def template_edit(request, kind: str, language: str, channel: str):
    key = _template_key_or_404(kind, language, channel)
    text, customised = message_settings.current_template(*key)
    form = TemplateForm(initial={"subject": text.subject, "body": text.body})
    # The text in use is always valid, so its preview never fails; a built-in one may
    # not have been checked by anyone, so errors are shown rather than raised.
    preview = _preview_or_error(request, key, form, text.subject, text.body)
    return _template_page(request, key, form, preview=preview, customised=customised)


@require_POST
@permission_required("manage_settings")
def template_preview(request, kind: str, language: str, channel: str):
    """The typed text rendered for a sample subscriber; nothing is saved."""
    key = _template_key_or_404(kind, language, channel)
    form = TemplateForm(request.POST)
    customised = message_settings.current_template(*key)[1]
    if not form.is_valid():
        form_errors(request, form)
        return _template_page(request, key, form, customised=customised)
    preview = _preview_or_error(request, key, form, form.cleaned_data["subject"], form.cleaned_data["body"])
    if preview is not None:
        messages.info(request, _("Preview only: nothing has been saved."))
    return _template_page(request, key, form, preview=preview, customised=customised)


@require_POST
@permission_required("manage_settings")
def template_save(request, kind: str, language: str, channel: str):
    key = _template_key_or_404(kind, language, channel)
    form = TemplateForm(request.POST)
    customised = message_settings.current_template(*key)[1]
    if not form.is_valid():
        form_errors(request, form)
        return _template_page(request, key, form, customised=customised)
    try:
        message_settings.save_template(
            kind=kind, language=language, channel=channel, subject=form.cleaned_data["subject"],
            body=form.cleaned_data["body"], now=clock.now(), **_who(request),
        )
    except DomainError as exc:
        _refused(request, form, exc)
        return _template_page(request, key, form, customised=customised)
    messages.success(request, _("Template saved. Messages sent from now on use it."))
    return SeeOther(reverse("backoffice:settings-template", args=key))


@require_POST
@permission_required("manage_settings")
def template_reset(request, kind: str, language: str, channel: str):
    key = _template_key_or_404(kind, language, channel)
    message_settings.reset_template(kind=kind, language=language, channel=channel, now=clock.now(), **_who(request))
    messages.success(request, _("Template reset to the built-in text."))
    return SeeOther(reverse("backoffice:settings-template", args=key))


# -- payment gateways ---------------------------------------------------------------------------

@require_GET
@permission_required("manage_settings")
def gateways(request):
    context = {"title": _("Payment gateways"), "nav": NAV, "gateways": gateway_settings.gateway_rows()}
    return render(request, "backoffice/settings_gateways.html", context)


@require_POST
@permission_required("manage_settings")
def gateway_switch(request, name: str):
    enabled = request.POST.get("enabled")
    if enabled not in ("0", "1"):
        messages.error(request, _("Choose on or off."))
        return SeeOther(reverse("backoffice:settings-gateways"))
    try:
        gateway_settings.set_gateway_enabled(gateway=name, enabled=enabled == "1", now=clock.now(), **_who(request))
    except DomainError as exc:
        messages.error(request, exc.message)
        return SeeOther(reverse("backoffice:settings-gateways"))
    if enabled == "1":
        messages.success(request, _("%(name)s is switched on: offered on the payment page when it is configured.") % {"name": name})
    else:
        messages.success(request, _("%(name)s is switched off: no longer offered for new payments; payments already started still complete.") % {"name": name})
    return SeeOther(reverse("backoffice:settings-gateways"))


# -- test send ----------------------------------------------------------------------------------

class TestSendForm(forms.Form):
    channel = forms.ChoiceField(choices=ChannelChoice.choices, widget=forms.HiddenInput)
    to = forms.CharField(label=gettext_lazy("Send to"), max_length=254)
    language = forms.ChoiceField(label=gettext_lazy("Language"), choices=Language.choices, initial="en")


def _channels_in_use() -> dict:
    """Which providers are configured, by kind only (URLs and keys may carry secrets)."""
    sms = os.environ.get("SMS_PROVIDER", "console").strip().lower() or "console"
    backend = django_settings.EMAIL_BACKEND.rsplit(".", 2)[-2] if "." in django_settings.EMAIL_BACKEND else django_settings.EMAIL_BACKEND
    return {"sms": sms, "email": backend}


@require_GET
@permission_required("manage_settings")
def test_send(request):
    context = {
        "title": _("Test send"), "nav": NAV, "channels": _channels_in_use(),
        "sms_form": TestSendForm(initial={"channel": "sms"}, prefix="sms"),
        "email_form": TestSendForm(initial={"channel": "email"}, prefix="email"),
        "recent": message_settings.recent_test_sends(),
    }
    return render(request, "backoffice/settings_test_send.html", context)


@require_POST
@permission_required("manage_settings")
def test_send_post(request):
    back = SeeOther(reverse("backoffice:settings-test-send"))
    prefix = "email" if request.POST.get("email-channel") else "sms"
    form = TestSendForm(request.POST, prefix=prefix)
    if not form.is_valid():
        form_errors(request, form)
        return back
    data = form.cleaned_data
    try:
        outcome = message_settings.send_test(
            channel=data["channel"], to=data["to"], language=data["language"], now=clock.now(), **_who(request)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return back
    if outcome.ok:
        detail = f" ({outcome.encoding}, {outcome.segments} SMS)" if outcome.encoding else ""
        messages.success(request, _("Test %(channel)s sent to %(to)s%(detail)s; provider reference: %(ref)s.") % {
            "channel": outcome.channel, "to": outcome.to, "detail": detail, "ref": outcome.provider_reference or "—"})
    else:
        messages.error(request, _("Test %(channel)s to %(to)s failed: %(error)s") % {
            "channel": outcome.channel, "to": outcome.to, "error": outcome.error})
    return back


_TEMPLATE = "settings/templates/<str:kind>/<str:language>/<str:channel>"

urlpatterns: list = [
    path("settings/", index, name="settings"),
    path("settings/billing", billing, name="settings-billing"),
    path("settings/billing/save", billing_save, name="settings-billing-save"),
    path("settings/reminders", reminders, name="settings-reminders"),
    path("settings/reminders/save", reminders_save, name="settings-reminders-save"),
    path("settings/templates", templates, name="settings-templates"),
    path(_TEMPLATE, template_edit, name="settings-template"),
    path(f"{_TEMPLATE}/preview", template_preview, name="settings-template-preview"),
    path(f"{_TEMPLATE}/save", template_save, name="settings-template-save"),
    path(f"{_TEMPLATE}/reset", template_reset, name="settings-template-reset"),
    path("settings/gateways", gateways, name="settings-gateways"),
    path("settings/gateways/<str:name>", gateway_switch, name="settings-gateway-switch"),
    path("settings/test-send", test_send, name="settings-test-send"),
    path("settings/test-send/send", test_send_post, name="settings-test-send-post"),
]
