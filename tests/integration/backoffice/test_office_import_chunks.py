"""Confirming an import a chunk of rows per transaction: a chunk that fails leaves the
ones before it and a batch that can be finished; the worker finishes what the request
left; a batch is imported once however many confirm it at the same time."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection

from ispbill.audit.models import AuditEvent
from ispbill.backoffice import imports
from ispbill.backoffice.models import ImportBatch, ImportStatus
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox, scheduler
from ispbill.worker.models import OutboxItem

from .office_support import make_staff
from .test_office_import import batch_id, csv_file, dry_run, messages_of, upload

USERNAMES = [f"chunk{n}" for n in range(1, 6)]
FIVE_ROWS = "Name,Mobile,PPPoE,Package\n" + "".join(
    f"Row {n},0171234567{n},chunk{n},Basic 10M\n" for n in range(1, 6)
)


def mapped_batch(client, text: str = FIVE_ROWS) -> int:
    batch = batch_id(upload(client, csv_file(text)))
    dry_run(client, batch)
    return batch


def imported_once(batch: int, usernames=USERNAMES) -> None:
    """Every row created exactly once, each with its own event, and one event for the batch."""
    subs = Subscriber.objects.filter(pppoe_username__in=usernames)
    assert sorted(subs.values_list("pppoe_username", flat=True)) == sorted(usernames)
    events = AuditEvent.objects.filter(action="subscriber.create", target_id__in=[s.pk for s in subs])
    assert events.count() == len(usernames)
    [event] = AuditEvent.objects.filter(action="import.confirm", target_id=batch)
    assert event.after == {"file": "subscribers.csv", "rows": len(usernames), "created": len(usernames), "failed": 0}
    done = ImportBatch.objects.get(pk=batch)
    assert done.status == ImportStatus.CONFIRMED and (done.created_count, done.failed_count) == (len(usernames), 0)
    assert [r["number"] for r in done.results] == list(range(2, len(usernames) + 2))
    assert done.rows == [] and done.locked_until is None


@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_fails_leaves_the_chunks_before_it_and_confirming_again_finishes(world, client_for, monkeypatch):
    client = client_for("admin")
    batch = mapped_batch(client)
    create = imports.create_subscriber

    def crash_on_the_third_row(**data):
        if data["pppoe_username"] == "chunk3":
            raise RuntimeError("the process died")
        return create(**data)

    monkeypatch.setattr(imports, "create_subscriber", crash_on_the_third_row)
    with pytest.raises(RuntimeError):
        imports.confirm_import(batch_id=batch, now=clock.now(), chunk_rows=2, seconds=60)
    # No transaction wraps this test: the first chunk was committed on its own.
    assert sorted(Subscriber.objects.filter(pppoe_username__in=USERNAMES).values_list("pppoe_username", flat=True)) == [
        "chunk1", "chunk2"]
    stopped = ImportBatch.objects.get(pk=batch)
    assert stopped.status == ImportStatus.IMPORTING
    assert (stopped.created_count, len(stopped.results), stopped.locked_until) == (2, 2, None)
    assert not AuditEvent.objects.filter(action="import.confirm").exists()

    monkeypatch.undo()
    response = client.post(f"/office/import/{batch}/confirm")
    assert response["Location"] == f"/office/import/{batch}/result"
    assert messages_of(response) == ["5 subscribers imported; 0 rows not imported."]
    imported_once(batch)


def test_confirming_while_the_import_runs_is_refused_and_after_it_stopped_carries_on(world, client_for, fixed_clock):
    client = client_for("admin")
    batch = mapped_batch(client)
    started = imports.confirm_import(batch_id=batch, now=clock.now(), chunk_rows=2, seconds=0)
    assert started.status == ImportStatus.IMPORTING and started.created_count == 2

    again = client.post(f"/office/import/{batch}/confirm")
    assert again["Location"] == f"/office/import/{batch}/result"
    assert messages_of(again) == ["This file is being imported; its page shows how far it has got."]
    assert Subscriber.objects.filter(pppoe_username__in=USERNAMES).count() == 2
    for path in (f"/office/import/{batch}/map", f"/office/import/{batch}/preview"):
        assert client.get(path)["Location"] == f"/office/import/{batch}/result"
    page = client.get(f"/office/import/{batch}/result")
    assert page["Refresh"] == "3"
    html = page.content.decode()
    assert 'data-running="yes"' in html and "2 of 5 rows done." in html and 'id="continue-button"' not in html

    # Its job stopped (a killed request): nothing recorded for longer than STALL_AFTER.
    fixed_clock.advance(imports.STALL_AFTER + timedelta(seconds=1))
    page = client.get(f"/office/import/{batch}/result")
    assert not page.has_header("Refresh") and 'id="continue-button"' in page.content.decode()
    response = client.post(f"/office/import/{batch}/confirm")
    assert messages_of(response) == ["5 subscribers imported; 0 rows not imported."]
    imported_once(batch)
    assert re.search(r'id="created-count">5<', client.get(response["Location"]).content.decode())


def test_a_file_the_request_cannot_finish_is_finished_by_the_worker(world, client_for, monkeypatch):
    monkeypatch.setattr(imports, "REQUEST_SECONDS", 0)
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    client = client_for("support")
    batch = mapped_batch(client)
    response = client.post(f"/office/import/{batch}/confirm")
    assert response["Location"] == f"/office/import/{batch}/result"
    assert messages_of(response) == ["2 of 5 rows imported so far; the rest are being imported in the background."]
    assert "2 of 5 rows done." in client.get(response["Location"]).content.decode()

    scheduler.load_job_modules()  # as the worker does
    assert imports.IMPORT_TOPIC in outbox.registered_topics()
    [item] = OutboxItem.objects.filter(topic=imports.IMPORT_TOPIC)
    attempt = outbox.Attempt(now=clock.now(), number=1, reclaimed=False, worker_id="test")
    imports.continue_import(item, attempt)
    imported_once(batch)
    # The worker acts for the staff member who confirmed.
    subs = list(Subscriber.objects.filter(pppoe_username__in=USERNAMES).values_list("pk", flat=True))
    events = AuditEvent.objects.filter(action="subscriber.create", target_id__in=subs) | AuditEvent.objects.filter(
        action="import.confirm", target_id=batch)
    assert set(events.values_list("actor_name", flat=True)) == {"support-user"}
    imports.continue_import(item, attempt)  # done: nothing more happens
    imported_once(batch)


def test_the_worker_waits_while_another_job_imports_the_batch(world, client_for, fixed_clock):
    client = client_for("admin")
    batch = mapped_batch(client)
    imports.confirm_import(batch_id=batch, now=clock.now(), chunk_rows=2, seconds=0)
    first = OutboxItem.objects.get(topic=imports.IMPORT_TOPIC)
    # The request stopped; staff confirmed again, and that job is working on it now.
    fixed_clock.advance(imports.STALL_AFTER + timedelta(seconds=1))
    imports.confirm_import(batch_id=batch, now=clock.now(), chunk_rows=2, seconds=0)
    assert ImportBatch.objects.get(pk=batch).created_count == 4
    attempt = outbox.Attempt(now=clock.now(), number=1, reclaimed=False, worker_id="test")
    with pytest.raises(outbox.RetryLater) as waiting:
        imports.continue_import(first, attempt)
    assert waiting.value.count_attempt is False
    assert ImportBatch.objects.get(pk=batch).created_count == 4
    fixed_clock.advance(imports.STALL_AFTER + timedelta(seconds=1))
    imports.continue_import(first, attempt)
    imported_once(batch)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_confirms_at_the_same_moment_import_the_file_once(world):
    staff = [make_staff("admin"), make_staff("support")]
    from django.test import Client

    client = Client()
    client.force_login(staff[0])
    usernames = [f"chunk{n}" for n in range(1, 11)]
    batch = mapped_batch(client, "Name,Mobile,PPPoE,Package\n" + "".join(
        f"Row {n},017123456{n:02d},chunk{n},Basic 10M\n" for n in range(1, 11)))
    together = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    def confirm(user) -> None:
        try:
            together.wait()
            done = imports.confirm_import(batch_id=batch, now=clock.now(), user=user, chunk_rows=2, seconds=60)
            outcomes.append(done.status)
        except DomainError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm, args=(user,)) for user in staff]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) in (
        ["confirmed", "import_in_progress"], ["confirmed", "import_already_confirmed"],
    ), outcomes
    imported_once(batch, usernames)
