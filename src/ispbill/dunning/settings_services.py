"""Changing the reminder settings (ladder, quiet hours, payment-link lifetime): one
validation for the back office and the API, and an audit event with the values before
and after, in the same transaction."""

from __future__ import annotations

import re
from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from ispbill.audit.services import Target, record
from ispbill.core.errors import DomainError
from ispbill.dunning import services
from ispbill.dunning.models import DunningSettings
from ispbill.dunning.policy import DUNNING_KINDS, Channel

OFFSET_RANGE = (-60, 60)
LINK_DAYS_RANGE = (1, 365)
MAX_STEPS = 10
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
REMINDER_FIELDS = ("ladder", "quiet_hours_start", "quiet_hours_end", "payment_link_days")


def _invalid(field: str, message: str, code: str = "invalid_input") -> DomainError:
    return DomainError(message, code=code, field=field, status=422)


def check_ladder(ladder) -> list[dict]:
    """The ladder as stored (sorted by offset, channels de-duplicated), or DomainError:
    offsets whole days within ±60 and unique, kinds reminder/due_today/overdue, at least
    one channel per step."""
    if not isinstance(ladder, (list, tuple)):
        raise _invalid("ladder", _("the ladder must be a list of steps"), code="invalid_ladder")
    if len(ladder) > MAX_STEPS:
        raise _invalid("ladder", _("the ladder may have at most %(n)d steps") % {"n": MAX_STEPS}, code="invalid_ladder")
    kinds = [str(k) for k in DUNNING_KINDS]
    out = []
    for n, step in enumerate(ladder, start=1):
        step = dict(step)
        offset, kind, channels = step.get("offset"), step.get("kind"), step.get("channels")
        if isinstance(offset, bool) or not isinstance(offset, int) or not OFFSET_RANGE[0] <= offset <= OFFSET_RANGE[1]:
            raise _invalid("ladder", _("step %(n)d: the day must be a whole number from %(low)d to %(high)d") % {
                "n": n, "low": OFFSET_RANGE[0], "high": OFFSET_RANGE[1]}, code="invalid_ladder")
        if kind not in kinds:
            raise _invalid("ladder", _("step %(n)d: the kind must be one of %(kinds)s") % {"n": n, "kinds": ", ".join(kinds)},
                           code="invalid_ladder")
        if not isinstance(channels, (list, tuple)) or not channels or any(c not in (Channel.SMS, Channel.EMAIL) for c in channels):
            raise _invalid("ladder", _("step %(n)d: choose SMS, email or both") % {"n": n}, code="invalid_ladder")
        out.append({"offset": offset, "kind": str(kind), "channels": sorted({str(c) for c in channels})})
    offsets = [s["offset"] for s in out]
    if len(set(offsets)) != len(offsets):
        raise _invalid("ladder", _("two ladder steps share an offset (each day may have one step)"), code="invalid_ladder")
    return sorted(out, key=lambda s: s["offset"])


def check_reminder_changes(changes: dict) -> dict:
    out = {}
    for field, value in changes.items():
        if field not in REMINDER_FIELDS:
            raise _invalid(field, _("%(field)s is not a reminder setting") % {"field": field})
        if field == "ladder":
            value = check_ladder(value)
        elif field in ("quiet_hours_start", "quiet_hours_end"):
            if not isinstance(value, str) or not _HHMM.match(value):
                raise _invalid(field, _("%(field)s must be a time as HH:MM (24 hours)") % {"field": field})
        elif isinstance(value, bool) or not isinstance(value, int) or not LINK_DAYS_RANGE[0] <= value <= LINK_DAYS_RANGE[1]:
            raise _invalid(field, _("payment_link_days must be a whole number from %(low)d to %(high)d") % {
                "low": LINK_DAYS_RANGE[0], "high": LINK_DAYS_RANGE[1]})
        out[field] = value
    return out


def reminder_snapshot(ds: DunningSettings) -> dict:
    return {
        "ladder": [dict(s) for s in ds.ladder],
        "quiet_hours_start": ds.quiet_hours_start.strftime("%H:%M"),
        "quiet_hours_end": ds.quiet_hours_end.strftime("%H:%M"),
        "payment_link_days": ds.payment_link_days,
    }


def update_reminder_settings(*, changes: dict, now: datetime, user=None, ip: str | None = None) -> DunningSettings:
    """Check and save ``changes`` (fields of :data:`REMINDER_FIELDS`; None values are
    ignored) and record ``settings.reminders`` with the changed fields before and after.
    Nothing is saved if any value is refused."""
    changes = check_reminder_changes({k: v for k, v in changes.items() if v is not None})
    with transaction.atomic():
        DunningSettings.load()
        before = reminder_snapshot(DunningSettings.objects.select_for_update().get(pk=1))
        ds = services.update_dunning_settings(**changes)
        after = reminder_snapshot(ds)
        changed = [f for f in REMINDER_FIELDS if before[f] != after[f]]
        if changed:
            record(
                action="settings.reminders", at=now, user=user, target=Target("dunningsettings", ds.pk, "Reminder settings"),
                before={f: before[f] for f in changed}, after={f: after[f] for f in changed},
                summary=f"reminder settings changed: {', '.join(changed)}", ip=ip,
            )
    return ds
