"""The outbox's batch mechanisms (SQLite and PostgreSQL): a topic's preparer runs once
per claimed batch and hands each item its value; a handler's own write is committed
with the attempt's outcome, whatever that outcome, and a failing write turns the attempt
into a temporary failure."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)


@pytest.fixture(autouse=True)
def outbox_settings(settings):
    settings.ISPBILL_OUTBOX_LEASE_SECONDS = 120
    settings.ISPBILL_OUTBOX_MAX_ATTEMPTS = 8
    return settings


@pytest.fixture
def topics():
    """``register(topic, handler, prepare=None)``; unregistered after the test."""
    registered: list[str] = []

    def register(topic: str, fn, prepare=None):
        outbox.handler(topic, prepare=prepare)(fn)
        registered.append(topic)

    yield register
    for topic in registered:
        outbox.unregister(topic)


def put(topic: str, key: str, payload: dict | None = None, **options) -> OutboxItem:
    with transaction.atomic():
        assert outbox.enqueue(topic=topic, dedupe_key=key, payload=payload or {}, now=options.pop("now", NOW), **options)
    return OutboxItem.objects.get(dedupe_key=key)


def reload(item: OutboxItem) -> OutboxItem:
    return OutboxItem.objects.get(pk=item.pk)


def note_write(marker: OutboxItem, text: str) -> tuple[str, list]:
    """A plain write for a handler to record with its outcome: sets ``marker``'s last_error."""
    qn = connection.ops.quote_name
    return f"UPDATE {qn(OutboxItem._meta.db_table)} SET {qn('last_error')} = %s WHERE {qn('id')} = %s", [text, marker.pk]


@pytest.fixture
def marker():
    """A row nothing dispatches (far in the future), used as the target of handler writes."""
    return put("test.marker", "marker", now=NOW + timedelta(days=365))


# -- preparers ----------------------------------------------------------------------------

def test_the_preparer_runs_once_per_batch_and_each_item_gets_its_value(topics):
    batches: list[list[int]] = []
    seen: dict[int, object] = {}

    def prepare(items, *, now):
        assert now == NOW
        batches.append(sorted(i.pk for i in items))
        # the second item is left out: its handler gets None
        return {i.pk: f"value {i.payload['n']}" for i in items if i.payload["n"] != 2}

    def handle(item, attempt):
        seen[item.payload["n"]] = attempt.prepared

    topics("test.prepared", handle, prepare=prepare)
    topics("test.plain", lambda item, attempt: seen.setdefault("plain", attempt.prepared))
    rows = [put("test.prepared", f"p{n}", {"n": n}) for n in (1, 2, 3)]
    put("test.plain", "plain")

    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.done) == (4, 4)
    assert batches == [sorted(r.pk for r in rows)]  # one call, only its own topic's items
    assert seen == {1: "value 1", 2: None, 3: "value 3", "plain": None}


def test_a_failing_preparer_costs_only_the_speed_up(topics):
    handled: list[object] = []

    def prepare(items, *, now):
        OutboxItem.objects.filter(pk__in=[i.pk for i in items]).update(last_error="written by the preparer")
        raise RuntimeError("preparer broke")

    topics("test.prepared", lambda item, attempt: handled.append(attempt.prepared), prepare=prepare)
    items = [put("test.prepared", f"p{n}", {"n": n}) for n in range(3)]

    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.done) == (3, 3)
    assert handled == [None, None, None]
    # the preparer's transaction was rolled back
    assert [reload(i).last_error for i in items] == ["", "", ""]


def test_a_reclaimed_item_past_its_attempts_is_not_prepared(topics):
    prepared_for: list[int] = []
    topics("test.prepared", lambda item, attempt: None, prepare=lambda items, now: prepared_for.extend(i.pk for i in items) or {})
    item = put("test.prepared", "poison", max_attempts=1)
    outbox.claim(now=NOW, worker_id="crashed")

    result = outbox.dispatch(now=NOW + LEASE + timedelta(seconds=1), worker_id="w2")

    assert (result.claimed, result.dead) == (1, 1)
    assert prepared_for == []
    assert reload(item).state == OutboxState.DEAD


# -- writes recorded with the outcome -----------------------------------------------------

def test_a_handler_write_is_committed_with_a_success(topics, marker):
    topics("test.w", lambda item, attempt: attempt.record_with_outcome(*note_write(marker, f"done {item.pk}")))
    item = put("test.w", "k1")

    assert outbox.dispatch(now=NOW, worker_id="w1").done == 1

    assert reload(item).state == OutboxState.DONE
    assert reload(marker).last_error == f"done {item.pk}"


def test_a_handler_write_is_committed_with_a_failure_too(topics, marker):
    def handle(item, attempt):
        attempt.record_with_outcome(*note_write(marker, "provider down"))
        raise ConnectionError("down")

    def refuse(item, attempt):
        attempt.record_with_outcome(*note_write(marker, "refused"))
        raise outbox.PermanentFailure("bad number")

    topics("test.retry", handle)
    topics("test.dead", refuse)
    retried = put("test.retry", "k1")

    assert outbox.dispatch(now=NOW, worker_id="w1").retried == 1
    assert reload(retried).state == OutboxState.PENDING
    assert reload(marker).last_error == "provider down"

    dead = put("test.dead", "k2")
    assert outbox.dispatch(now=NOW, worker_id="w1").dead == 1
    assert (reload(dead).state, reload(dead).last_error) == (OutboxState.DEAD, "bad number")
    assert reload(marker).last_error == "refused"


def test_a_handler_write_is_applied_even_when_the_row_was_reclaimed(topics, marker):
    """The provider's late answer still counts for the handler's own record (the
    message), while the outbox row stays with the worker that reclaimed it."""
    def handle(item, attempt):
        if attempt.worker_id == "slow":
            outbox.claim(now=NOW + LEASE + timedelta(seconds=1), worker_id="fast")  # the lease ran out meanwhile
        attempt.record_with_outcome(*note_write(marker, f"answer of {attempt.worker_id}"))

    topics("test.w", handle)
    item = put("test.w", "k1")

    result = outbox.dispatch(now=NOW, worker_id="slow")

    assert (result.claimed, result.stale) == (1, 1)
    assert (reload(item).state, reload(item).locked_by) == (OutboxState.IN_FLIGHT, "fast")
    assert reload(marker).last_error == "answer of slow"


def test_a_failing_handler_write_makes_the_attempt_a_temporary_failure(topics, marker):
    def handle(item, attempt):
        attempt.record_with_outcome(*note_write(marker, "first write"))
        qn = connection.ops.quote_name
        attempt.record_with_outcome(f"UPDATE {qn('no_such_table')} SET x = %s", [1])

    topics("test.w", handle)
    item = put("test.w", "k1")

    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert result.retried == 1
    row = reload(item)
    assert row.state == OutboxState.PENDING and row.attempts == 1 and row.next_attempt_at > NOW
    assert row.last_error  # the database's complaint
    assert reload(marker).last_error == ""  # the first write was rolled back with it


def test_a_write_outside_the_dispatcher_runs_at_once(marker):
    attempt = outbox.Attempt(now=NOW, number=1, reclaimed=False, worker_id="test")
    attempt.record_with_outcome(*note_write(marker, "at once"))
    assert reload(marker).last_error == "at once"


# -- threads ------------------------------------------------------------------------------

def test_inside_a_transaction_a_pool_is_not_used(topics):
    """Other threads could not see this transaction's claim (PostgreSQL would wait on
    its row locks for ever), so the items run in the calling thread."""
    threads: list[str] = []
    topics("test.t", lambda item, attempt: threads.append(threading.current_thread().name))
    for n in range(3):
        put("test.t", f"k{n}")

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pool") as pool, transaction.atomic():
        result = outbox.dispatch(now=NOW, worker_id="w1", pool=pool)

    assert result.done == 3
    assert threads == [threading.current_thread().name] * 3
