"""``run_forever``: the leader runs due jobs, every worker dispatches the outbox, and
leadership is given up when the loop stops."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ispbill.core.db import lock_key
from ispbill.worker import outbox, scheduler
from ispbill.worker.loop import run_forever
from ispbill.worker.models import JobRun, LeaderLease, OutboxItem, OutboxState
from ispbill.worker.scheduler import Every, Leadership

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def job_calls():
    calls: list[datetime] = []
    scheduler.job("test.loop-job", Every(seconds=60))(lambda now: calls.append(now) or "ran")
    yield calls
    scheduler.unregister("test.loop-job")


@pytest.fixture
def stop_when_sent(recording_handler):
    """An outbox item whose handler stops the loop: one pass of the loop, no waiting."""
    stop = threading.Event()
    handler = recording_handler("test.loop-item", before=lambda call: stop.set())
    with transaction.atomic():
        outbox.enqueue(topic="test.loop-item", dedupe_key="loop-1", payload={}, now=NOW)
    return stop, handler


def advisory_lock_held() -> bool:
    with connection.cursor() as cursor:
        # a bigint advisory key is split into classid (high half) and objid (low half)
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            [lock_key(Leadership.NAME)],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db
def test_leader_runs_due_jobs_and_dispatches_then_lets_go(fixed_clock, job_calls, stop_when_sent):
    fixed_clock.set(NOW)
    stop, handler = stop_when_sent

    run_forever(stop, poll_seconds=0.01, worker_id="loop-worker")

    assert job_calls == [NOW]
    assert JobRun.objects.get(name="test.loop-job").runs == 1
    assert [c.attempt.worker_id for c in handler.calls] == ["loop-worker"]
    assert OutboxItem.objects.get(dedupe_key="loop-1").state == OutboxState.DONE
    # leadership released on the way out
    if connection.vendor == "postgresql":
        assert not advisory_lock_held()
    else:
        assert not LeaderLease.objects.exists()


@pytest.mark.django_db
def test_a_worker_that_is_not_leader_only_dispatches(fixed_clock, job_calls, stop_when_sent):
    if connection.vendor != "sqlite":
        pytest.skip("on PostgreSQL another session must hold the lock: see the postgres_only test below")
    fixed_clock.set(NOW)
    stop, handler = stop_when_sent
    assert Leadership("other-worker").acquire(NOW) is True

    run_forever(stop, poll_seconds=0.01, worker_id="loop-worker")

    assert job_calls == []
    assert len(handler.calls) == 1
    assert LeaderLease.objects.get().holder == "other-worker"  # not taken, not released


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_postgres_worker_that_is_not_leader_only_dispatches(fixed_clock, job_calls, stop_when_sent, peers):
    fixed_clock.set(NOW)
    stop, handler = stop_when_sent
    (other,) = peers(1)
    other_leader = Leadership("other-worker")
    assert other.run(other_leader.acquire, NOW) is True

    run_forever(stop, poll_seconds=0.01, worker_id="loop-worker")

    assert job_calls == []
    assert len(handler.calls) == 1
    assert advisory_lock_held()  # still the other worker's
    other.run(other_leader.release)
