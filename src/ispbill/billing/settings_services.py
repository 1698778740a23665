"""Changing the ISP's billing settings: one validation for the back office and the API,
and an audit event with the values before and after, in the same transaction."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils.translation import gettext as _

from ispbill.audit.services import record, target_of
from ispbill.billing import services
from ispbill.billing.choices import DueRuleChoice, PaymentTermsChoice, RoundingChoice
from ispbill.billing.models import BillingSettings
from ispbill.core.errors import DomainError
from ispbill.subscribers.choices import BillingModeChoice

#: field -> allowed values
CHOICE_FIELDS = {
    "billing_mode": BillingModeChoice,
    "payment_terms": PaymentTermsChoice,
    "due_rule": DueRuleChoice,
    "rounding": RoundingChoice,
}
#: field -> (lowest, highest)
DAY_FIELDS = {
    "billing_day": (1, 31),
    "invoice_lead_days": (0, 60),
    "due_days": (0, 90),
    "grace_days": (0, 60),
}
#: field -> longest text
TEXT_FIELDS = {
    "invoice_number_format": 64,
    "credit_note_number_format": 64,
    "tax_name": 32,
    "isp_name": 120,
    "hotline": 32,
}
BILLING_FIELDS = (*CHOICE_FIELDS, *DAY_FIELDS, *TEXT_FIELDS, "tax_rate")


def _invalid(field: str, message: str, code: str = "invalid_input") -> DomainError:
    return DomainError(message, code=code, field=field, status=422)


def check_billing_changes(changes: dict) -> dict:
    """The changes with their values checked (and tax_rate a Decimal), or DomainError
    naming the first field at fault. Number formats are checked as the billing service
    checks them when it saves."""
    out = {}
    for field, value in changes.items():
        if field not in BILLING_FIELDS:
            raise _invalid(field, _("%(field)s is not a billing setting") % {"field": field})
        if field in CHOICE_FIELDS:
            allowed = CHOICE_FIELDS[field].values
            if value not in allowed:
                raise _invalid(field, _("%(field)s must be one of: %(allowed)s") % {"field": field, "allowed": ", ".join(allowed)})
        elif field in DAY_FIELDS:
            low, high = DAY_FIELDS[field]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _invalid(field, _("%(field)s must be a whole number from %(low)d to %(high)d") % {"field": field, "low": low, "high": high})
        elif field in TEXT_FIELDS:
            if not isinstance(value, str) or len(value) > TEXT_FIELDS[field]:
                raise _invalid(field, _("%(field)s must be text of at most %(n)d characters") % {"field": field, "n": TEXT_FIELDS[field]})
            value = value.strip()
            if field == "isp_name" and not value:
                raise _invalid(field, _("isp_name must not be blank"))
        elif field == "tax_rate":
            value = _tax_rate(value)
        out[field] = value
    for field in services._FORMAT_FIELDS:
        if field in out:
            services._check_number_format(out[field], field)
    return out


def _tax_rate(value) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise _invalid("tax_rate", _("tax_rate must be a decimal written as text, e.g. 7.5"))
    try:
        rate = Decimal(str(value).strip())
    except InvalidOperation:
        raise _invalid("tax_rate", _("tax_rate must be a number, e.g. 7.5")) from None
    if not rate.is_finite() or rate.as_tuple().exponent < -2:
        raise _invalid("tax_rate", _("tax_rate may have at most two decimal places"))
    if not Decimal(0) <= rate <= Decimal(100):
        raise _invalid("tax_rate", _("tax_rate must be between 0 and 100"), code="invalid_tax_rate")
    return rate.quantize(Decimal("0.01"))


def billing_snapshot(obj: BillingSettings) -> dict:
    return {field: getattr(obj, field) for field in BILLING_FIELDS}


def update_billing_settings(*, changes: dict, now: datetime, user=None, ip: str | None = None) -> BillingSettings:
    """Check and save ``changes`` (fields of :data:`BILLING_FIELDS`; None values are
    ignored) and record ``settings.billing`` with the changed fields before and after.
    Nothing is saved if any value is refused. Settings apply from the next billing run;
    issued invoices never change."""
    changes = check_billing_changes({k: v for k, v in changes.items() if v is not None})
    with transaction.atomic():
        BillingSettings.load()
        before = billing_snapshot(BillingSettings.objects.select_for_update().get(pk=1))
        obj = services.update_billing_settings(**changes)
        after = billing_snapshot(obj)
        changed = sorted(f for f in BILLING_FIELDS if before[f] != after[f])
        if changed:
            record(
                action="settings.billing", at=now, user=user, target=target_of(obj),
                before={f: before[f] for f in changed}, after={f: after[f] for f in changed},
                summary=f"billing settings changed: {', '.join(changed)}", ip=ip,
            )
    return obj
