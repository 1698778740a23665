from __future__ import annotations

from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from ispbill.audit import services as audit
from ispbill.core import clock
from ispbill.core.errors import Conflict, DomainError
from ispbill.core.phone import PhoneError, normalize_bd_mobile
from ispbill.plans.models import Package
from ispbill.subscribers.choices import BillingModeChoice, SubscriberStatus
from ispbill.subscribers.models import Subscriber

# Text columns that are NOT NULL: a null from a client clears them to "".
_TEXT_FIELDS = ("name", "email", "address", "area", "notes", "billing_mode", "language")


def _clean(data: dict) -> dict:
    out = dict(data)
    if "name" in out:
        out["name"] = (out["name"] or "").strip()
        if not out["name"]:
            raise DomainError("name is required", code="name_required", field="name", status=422)
    if "phone" in out:
        try:
            out["phone"] = normalize_bd_mobile(out["phone"] or "")
        except PhoneError as exc:
            raise DomainError(str(exc), code="invalid_phone", field="phone", status=422) from None
    if out.get("email"):
        out["email"] = out["email"].strip()
        try:
            validate_email(out["email"])
        except ValidationError:
            raise DomainError(f"'{out['email']}' is not an email address", code="invalid_email", field="email", status=422) from None
    if "pppoe_username" in out:
        username = (out["pppoe_username"] or "").strip()
        if not username or any(c.isspace() for c in username) or len(username) > 64:
            raise DomainError("pppoe_username must be 1-64 characters without spaces", code="invalid_username", field="pppoe_username", status=422)
        out["pppoe_username"] = username
    if "package_id" in out:
        if not Package.objects.filter(pk=out["package_id"]).exists():
            raise DomainError("unknown package", code="unknown_package", field="package", status=422)
    if out.get("router_id") is not None:
        from ispbill.network.models import Router

        if isinstance(out["router_id"], bool) or not Router.objects.filter(pk=out["router_id"]).exists():
            raise DomainError("unknown router", code="unknown_router", field="router", status=422)
    if out.get("billing_mode") not in (None, "", *BillingModeChoice.values):
        raise DomainError("billing_mode must be calendar or anniversary", code="invalid_billing_mode", field="billing_mode", status=422)
    if out.get("language") not in (None, "", "bn", "en"):
        raise DomainError("language must be bn or en", code="invalid_language", field="language", status=422)
    if "status" in out and out["status"] not in SubscriberStatus.values:
        raise DomainError("status must be active, suspended or disabled", code="invalid_status", field="status", status=422)
    if out.get("grace_days_override") is not None and not 0 <= out["grace_days_override"] <= 60:
        raise DomainError("grace_days_override must be 0-60", code="invalid_grace_days", field="grace_days_override", status=422)
    for field in _TEXT_FIELDS:
        if field in out and out[field] is None:
            out[field] = ""
    return out


def _save(sub: Subscriber) -> Subscriber:
    try:
        with transaction.atomic():
            sub.save()
    except IntegrityError:
        # Only a clash on the username is the client's doing; anything else is a bug to surface.
        if not Subscriber.objects.filter(pppoe_username=sub.pppoe_username).exclude(pk=sub.pk).exists():
            raise
        raise Conflict(f"PPPoE username '{sub.pppoe_username}' is already taken", code="duplicate_username") from None
    return sub


#: What the audit log keeps of a new subscriber.
_CREATE_AUDIT_FIELDS = (
    "name", "phone", "email", "address", "area", "pppoe_username", "package_id", "router_id", "status",
    "activated_on", "billing_mode", "grace_days_override", "never_suspend", "language",
)


def _status_action(old: str, new: str) -> str:
    if new == SubscriberStatus.SUSPENDED:
        return "subscriber.suspend"
    if new == SubscriberStatus.DISABLED:
        return "subscriber.disable"
    return "subscriber.enable" if old == SubscriberStatus.DISABLED else "subscriber.restore"


def create_subscriber(*, today: date, user=None, ip: str | None = None, **data) -> Subscriber:
    """Add a subscriber; the billing run invoices them from ``activated_on`` (default today).
    ``user``: who added them (the audit log's actor; None: the system)."""
    for required in ("name", "phone", "pppoe_username", "package_id"):
        if data.get(required) in (None, ""):
            raise DomainError(f"{required.removesuffix('_id')} is required", code="field_required", field=required, status=422)
    data = _clean(data)
    data.setdefault("activated_on", today)
    if data.get("activated_on") is None:
        data["activated_on"] = today
    if Subscriber.objects.filter(pppoe_username=data["pppoe_username"]).exists():
        raise Conflict(f"PPPoE username '{data['pppoe_username']}' is already taken", code="duplicate_username")
    with transaction.atomic():
        sub = _save(Subscriber(**{k: v for k, v in data.items() if v is not None or k == "grace_days_override"}))
        audit.record(
            action="subscriber.create", at=clock.now(), user=user, target=audit.target_of(sub), ip=ip,
            after=audit.snapshot(sub, _CREATE_AUDIT_FIELDS), summary="Subscriber added",
        )
        return sub


def update_subscriber(
    *, subscriber_id: int, today: date, user=None, reason: str = "", ip: str | None = None, **changes
) -> Subscriber:
    """Edit a subscriber's details. Package changes go through ``billing.services.change_package``.

    A status change also changes what the router enforces (see
    ``network.services.set_subscriber_status``). Re-enabling a disabled subscriber bills
    them from ``today``, not for the months they were disabled.

    One audit event records the fields that changed (``subscriber.update``, or
    ``subscriber.suspend``/``restore``/``disable``/``enable`` when the status changed),
    with ``reason`` in its summary; nothing is recorded when nothing changed.
    """
    if "package_id" in changes:
        raise DomainError("use change-package to move a subscriber to another package", code="use_change_package", field="package", status=422)
    changes = _clean(changes)
    if "never_suspend" in changes and changes["never_suspend"] is None:
        raise DomainError("never_suspend must be true or false", code="invalid_never_suspend", field="never_suspend", status=422)
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update().get(pk=subscriber_id)
        if "pppoe_username" in changes and changes["pppoe_username"] != sub.pppoe_username:
            if Subscriber.objects.filter(pppoe_username=changes["pppoe_username"]).exclude(pk=sub.pk).exists():
                raise Conflict(f"PPPoE username '{changes['pppoe_username']}' is already taken", code="duplicate_username")
        tracked = [f for f in changes if f != "status"] + ["status", "billed_through"]
        before = audit.snapshot(sub, tracked)
        new_status = changes.pop("status", sub.status)
        for field, value in changes.items():
            setattr(sub, field, value)
        if sub.status == SubscriberStatus.DISABLED and new_status != SubscriberStatus.DISABLED:
            yesterday = today - timedelta(days=1)
            if sub.billed_through is None or sub.billed_through < yesterday:
                sub.billed_through = max(yesterday, sub.activated_on - timedelta(days=1))
        _save(sub)
        if new_status != sub.status:
            from ispbill.network.services import set_subscriber_status

            set_subscriber_status(subscriber_id=sub.pk, status=new_status, now=clock.now(), user=user, audit=False)
            sub.refresh_from_db()
        after = audit.snapshot(sub, tracked)
        old, new = audit.changes(before, after)
        if new:
            action = "subscriber.update" if before["status"] == sub.status else _status_action(before["status"], sub.status)
            audit.record(
                action=action, at=clock.now(), user=user, target=audit.target_of(sub), before=old, after=new, ip=ip,
                summary=(reason or "").strip(),
            )
        return sub
