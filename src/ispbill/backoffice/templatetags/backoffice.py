"""Template helpers: ``taka`` (paisa → "৳ 1,234.56"), status badges coloured from the
choices classes, and table cells for the shared list template."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy

from ispbill.billing.choices import InvoiceStatus
from ispbill.core.money import format_taka
from ispbill.network.choices import ActionStatus, Reason
from ispbill.notifications.choices import MessageStatus
from ispbill.payments.choices import PaymentStatus, RefundStatus
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.worker.models import OutboxState

register = template.Library()

_CHOICES = {
    "subscriber": SubscriberStatus,
    "invoice": InvoiceStatus,
    "payment": PaymentStatus,
    "refund": RefundStatus,
    "message": MessageStatus,
    "action": ActionStatus,
    "outbox": OutboxState,
}


@register.filter
def taka(paisa) -> str:
    """Integer paisa as taka with two decimals and thousands separators: ``৳ 1,234.56``."""
    if paisa is None or paisa == "":
        return ""
    return format_taka(int(paisa))


_ROLE_NAMES = {
    "admin": pgettext_lazy("role", "admin"),
    "billing": pgettext_lazy("role", "billing"),
    "support": pgettext_lazy("role", "support"),
    "viewer": pgettext_lazy("role", "viewer"),
}


@register.filter
def role_name(value) -> str:
    """A staff role (the group's name) in the page's language."""
    return _ROLE_NAMES.get(value, value)


@register.filter
def enforcement_reason(value) -> str:
    """Why a subscriber was suspended or restored, in words."""
    try:
        return Reason(value).label
    except ValueError:
        return value


@register.filter
def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@register.simple_tag
def badge(value, kind: str):
    choices = _CHOICES[kind]
    try:
        choice = choices(value)
    except ValueError:
        return format_html('<span class="badge grey">{}</span>', value)
    return format_html('<span class="badge {}">{}</span>', choice.colour, choice.label)


@register.simple_tag
def cell(row, column):
    value = column.value(row)
    if column.kind == "money":
        text = taka(value)
    elif column.kind == "badge":
        return badge(value, column.badge)
    elif column.kind == "bool":
        text = gettext("yes") if value else gettext("no")
    else:
        text = "" if value is None else value
    if column.link is not None:
        return format_html('<a href="{}">{}</a>', column.link(row), text)
    return format_html("{}", text)


@register.simple_tag(takes_context=True)
def can(context, codename: str) -> bool:
    from ispbill.backoffice.permissions import has_permission

    return has_permission(context["request"].user, codename)


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with ``changes`` applied (None removes a key)."""
    params = context["request"].GET.copy()
    for key in ("after", "before"):
        params.pop(key, None)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
