"""Two dispatchers on PostgreSQL, each on its own connection: every row is performed
exactly once (``FOR UPDATE SKIP LOCKED``), and a locked row is skipped, not waited for."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.db import transaction

from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def enqueue_many(topic: str, n: int) -> list[int]:
    with transaction.atomic():
        for i in range(n):
            outbox.enqueue(topic=topic, dedupe_key=f"{topic}:{i}", payload={"i": i}, now=NOW)
    return list(OutboxItem.objects.filter(topic=topic).values_list("pk", flat=True))


def test_two_dispatchers_perform_every_row_exactly_once(recording_handler, peers):
    ids = enqueue_many("test.sms", 200)
    # Each worker's first call waits until the other worker is also performing a row:
    # both have claimed batches at the same time before either finishes.
    both_busy = threading.Barrier(2, timeout=15)
    first_call_seen: set[str] = set()

    def hold_first_call(call):
        worker = call.attempt.worker_id
        if worker not in first_call_seen:
            first_call_seen.add(worker)
            both_busy.wait()

    sms = recording_handler("test.sms", before=hold_first_call)
    start = threading.Barrier(2, timeout=15)

    def work(worker_id: str) -> outbox.DispatchResult:
        start.wait()
        total = outbox.DispatchResult()
        while True:
            r = outbox.dispatch(now=NOW, worker_id=worker_id, limit=20)
            if r.claimed == 0:
                return total
            total.claimed += r.claimed
            total.done += r.done

    a, b = peers(2)
    fa, fb = a.submit(work, "worker-a"), b.submit(work, "worker-b")
    ra, rb = fa.result(timeout=30), fb.result(timeout=30)

    performed = Counter(sms.item_ids)
    assert sorted(performed) == sorted(ids)
    assert [i for i, n in performed.items() if n > 1] == []
    assert ra.done + rb.done == 200 == ra.claimed + rb.claimed
    assert ra.done > 0 and rb.done > 0
    by_worker = Counter(c.attempt.worker_id for c in sms.calls)
    assert by_worker == {"worker-a": ra.done, "worker-b": rb.done}
    assert OutboxItem.objects.filter(state=OutboxState.DONE).count() == 200
    # each row is recorded as done by the worker that performed it
    done_by = dict(OutboxItem.objects.values_list("pk", "locked_by"))
    assert all(done_by[c.item_id] == c.attempt.worker_id for c in sms.calls)


def test_two_drains_at_once_perform_every_row_exactly_once(recording_handler, peers):
    ids = enqueue_many("test.sms", 200)
    sms = recording_handler("test.sms")
    start = threading.Barrier(2, timeout=15)

    def drain(worker_id):
        start.wait()
        return outbox.drain(now=NOW, worker_id=worker_id)

    a, b = peers(2)
    fa, fb = a.submit(drain, "worker-a"), b.submit(drain, "worker-b")
    ra, rb = fa.result(timeout=30), fb.result(timeout=30)

    assert Counter(sms.item_ids) == Counter(ids)
    assert ra.done + rb.done == 200
    assert OutboxItem.objects.filter(state=OutboxState.DONE).count() == 200


def test_claim_skips_rows_locked_by_another_transaction(recording_handler, peers):
    ids = sorted(enqueue_many("test.sms", 30))
    sms = recording_handler("test.sms")
    locked_ids = ids[:10]
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        # another dispatcher is mid-claim on the first ten rows
        with transaction.atomic():
            list(OutboxItem.objects.select_for_update().filter(pk__in=locked_ids))
            locked.set()
            assert release.wait(timeout=20)

    (holder,) = peers(1)
    (claimer,) = peers(1)
    held = holder.submit(hold_lock)
    assert locked.wait(timeout=10)
    try:
        # would block behind the lock without SKIP LOCKED; the timeout turns that into a failure
        first = claimer.run(outbox.dispatch, now=NOW, worker_id="w2", limit=100, timeout=10)
    finally:
        release.set()
        held.result(timeout=10)

    assert first.done == 20
    assert sorted(sms.item_ids) == ids[10:]
    second = claimer.run(outbox.dispatch, now=NOW, worker_id="w2", limit=100)
    assert second.done == 10
    assert Counter(sms.item_ids) == Counter(ids)
