"""Helpers for the audit tests."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.audit.models import AuditEvent


def events(**filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


def only_event(**filters) -> AuditEvent:
    """The one event matching ``filters``; fails if there are none or several."""
    found = events(**filters)
    assert len(found) == 1, [(e.action, e.actor_name, e.before, e.after) for e in found]
    return found[0]


@contextmanager
def new_events():
    """Yields a list filled, on exit, with the events written inside the block."""
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    found: list[AuditEvent] = []
    yield found
    found.extend(AuditEvent.objects.filter(id__gt=last).order_by("id"))


@contextmanager
def audit_inserts():
    """Counts the INSERT statements into the audit table run inside the block."""
    table = AuditEvent._meta.db_table
    with CaptureQueriesContext(connection) as ctx:
        counter = {"n": 0}
        yield counter
    counter["n"] = sum(1 for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("INSERT") and table in q["sql"])
