"""The database itself refuses to rewrite history: UPDATE and DELETE on the audit table
fail on SQLite and PostgreSQL, through the ORM and in plain SQL, and the row stays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection, transaction

from ispbill.audit.models import AuditEvent
from ispbill.audit.services import Target, record

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


@pytest.fixture
def guarded(settings):
    """The guard as production has it (the test runner's purge switch off)."""
    settings.ISPBILL_AUDIT_PURGE_ALLOWED = False

    def refused(action) -> None:
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL ispbill.audit_purge = 'off'")
                action()

    return refused


def _event() -> AuditEvent:
    return record(action="invoice.void", at=T0, target=Target("invoice", 5, "INV-5"), summary="original",
                  before={"status": "open"}, after={"status": "void"})


def _sql(statement: str, params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement.format(table=connection.ops.quote_name(AuditEvent._meta.db_table)), params)


def test_update_is_refused(guarded):
    event = _event()
    guarded(lambda: AuditEvent.objects.filter(pk=event.pk).update(summary="rewritten"))
    guarded(lambda: _sql("UPDATE {table} SET summary = %s WHERE id = %s", ["rewritten", event.pk]))
    event.summary = "rewritten"
    guarded(lambda: event.save())
    kept = AuditEvent.objects.get(pk=event.pk)
    assert kept.summary == "original" and kept.after == {"status": "void"}


def test_delete_is_refused(guarded):
    event = _event()
    guarded(lambda: AuditEvent.objects.filter(pk=event.pk).delete())
    guarded(lambda: _sql("DELETE FROM {table} WHERE id = %s", [event.pk]))
    guarded(lambda: AuditEvent.objects.all().delete())
    assert AuditEvent.objects.filter(pk=event.pk, summary="original").exists()


def test_truncate_is_refused_on_postgresql(guarded):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    event = _event()
    guarded(lambda: _sql("TRUNCATE {table}", []))
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_appending_still_works_under_the_guard(guarded):
    first = _event()
    second = _event()
    assert second.pk > first.pk and AuditEvent.objects.count() == 2
