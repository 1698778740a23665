from __future__ import annotations

import secrets

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _, ngettext

from ispbill.backoffice import services
from ispbill.core import clock
from ispbill.core.money import MoneyError, parse_amount
from ispbill.payments.choices import PaymentMethod


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


class LoginForm(AuthenticationForm):
    """Django's login form, refused outright after too many recent failures for the same
    username from the same address (checked before the password is)."""

    throttled = False

    def clean(self):
        username = (self.cleaned_data.get("username") or "").strip()
        ip = client_ip(self.request)
        now = clock.now()
        if username and services.login_blocked(username=username, ip=ip, now=now):
            self.throttled = True
            minutes = max(1, settings.ISPBILL_LOGIN_WINDOW_SECONDS // 60)
            raise ValidationError(
                ngettext(
                    "Too many failed sign-ins for this username from your address. Wait %(minutes)d minute and try "
                    "again, or ask an admin to reset your password.",
                    "Too many failed sign-ins for this username from your address. Wait %(minutes)d minutes and try "
                    "again, or ask an admin to reset your password.",
                    minutes,
                ) % {"minutes": minutes},
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            if username:
                services.record_login_failure(username=username, ip=ip, now=now)
            raise
        services.clear_login_failures(username=username, ip=ip)
        return cleaned


class ChangePackageForm(forms.Form):
    package = forms.TypedChoiceField(label=_("New package"), coerce=int, choices=())
    # ISO format whatever the language: it is what <input type="date"> reads and sends.
    effective_on = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))

    def __init__(self, *args, packages=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["package"].choices = [(p.pk, f"{p.name} (৳ {p.price:,.2f})") for p in packages]


class PaymentForm(forms.Form):
    amount = forms.CharField(label=_("Amount"), max_length=20, widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "0.00"}))
    method = forms.ChoiceField(label=_("Method"), choices=[c for c in PaymentMethod.choices if c[0] != PaymentMethod.GATEWAY])
    reference = forms.CharField(label=_("Reference"), max_length=100, required=False)
    notes = forms.CharField(label=_("Notes"), max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    # One key per rendered form: a double submit records the payment once.
    key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("key", f"office-{secrets.token_urlsafe(18)}")
        super().__init__(*args, **kwargs)

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None


class StatusForm(forms.Form):
    action = forms.ChoiceField(label=_("Action"), choices=[(a, a) for a in services.STATUS_ACTIONS])
    reason = forms.CharField(
        label=_("Reason"), max_length=250, widget=forms.TextInput(attrs={"placeholder": _("reason (kept with the change)")})
    )


class ReminderForm(forms.Form):
    invoice = forms.IntegerField(widget=forms.HiddenInput)
    kind = forms.ChoiceField(
        label=_("Kind"), choices=[("reminder", _("Reminder")), ("due_today", _("Due today")), ("overdue", _("Overdue"))]
    )
    channel = forms.ChoiceField(
        label=_("Channel"),
        choices=[("", _("SMS and email")), ("sms", _("SMS only")), ("email", _("Email only"))],
        required=False,
    )


class ExemptForm(forms.Form):
    never_suspend = forms.TypedChoiceField(coerce=lambda v: v == "1", choices=[("1", _("exempt")), ("0", _("not exempt"))])
