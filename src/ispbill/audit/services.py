"""Writing the audit log. Call :func:`record` inside the transaction that makes the
change, so the event commits (or rolls back) with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

from ispbill.audit.models import ActorKind, AuditEvent


def _plain(value: Any) -> Any:
    """JSON-safe copy of a before/after value (dates as ISO text, Decimals as strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class Target:
    type: str
    id: int | None
    label: str = ""


def target_of(obj) -> Target:
    """The audit target for a model instance: its model name, pk and ``str()``."""
    return Target(obj._meta.model_name, obj.pk, str(obj)[:200])


def _actor(user, actor_kind: str | None) -> tuple[str, int | None, str]:
    if user is not None and getattr(user, "is_authenticated", False):
        return actor_kind or ActorKind.STAFF, user.pk, user.get_username()[:150]
    return actor_kind or ActorKind.SYSTEM, None, ""


def build(
    *, action: str, at: datetime, user=None, actor_kind: str | None = None, target: Target | None = None,
    before: dict | None = None, after: dict | None = None, summary: str = "", ip: str | None = None,
    subscriber_id: int | None = None,
) -> AuditEvent:
    """An unsaved event (for :func:`record_many`). ``subscriber_id``: the subscriber the
    event concerns; a subscriber target stands for itself."""
    kind, actor_id, actor_name = _actor(user, actor_kind)
    if subscriber_id is None and target is not None and target.type == "subscriber":
        subscriber_id = target.id
    return AuditEvent(
        at=at, actor_kind=kind, actor_id=actor_id, actor_name=actor_name, action=action,
        target_type=target.type if target else "", target_id=target.id if target else None,
        target_label=(target.label if target else "")[:200], subscriber_id=subscriber_id, summary=summary[:500],
        before=_plain(before) if before is not None else None, after=_plain(after) if after is not None else None,
        ip=ip or None,
    )


def snapshot(obj, fields: Iterable[str]) -> dict:
    """``fields`` of a model instance as a dict (foreign keys by their ``*_id``)."""
    return {field: getattr(obj, field) for field in fields}


def changes(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the fields whose value differs: ``(before, after)``, both JSON-safe."""
    old, new = _plain(before), _plain(after)
    keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
    return {k: old.get(k) for k in keys}, {k: new.get(k) for k in keys}


def record(**kwargs) -> AuditEvent:
    """Append one event. Keyword arguments as :func:`build`; ``user`` None (or an
    anonymous user) means the system acted, unless ``actor_kind`` says who."""
    event = build(**kwargs)
    event.save(force_insert=True)
    return event


def record_many(events: Iterable[AuditEvent], *, batch_size: int = 2000) -> int:
    """Append many events built by :func:`build` in bulk (a run that suspends 10,000)."""
    rows = list(events)
    AuditEvent.objects.bulk_create(rows, batch_size=batch_size)
    return len(rows)
