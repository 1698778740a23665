"""Two workers run the dunning pass and then dispatch at the same time (PostgreSQL):
every (invoice, step, channel) gets exactly one message and one delivery."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date

import pytest
from django.db import connection
from django.db.models import Count

from ispbill.billing.services import run_billing
from ispbill.dunning.services import run_dunning
from ispbill.notifications.models import Message
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import ISSUED_ON, at

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

N = 200
NOW = at(date(2026, 11, 26), 10)  # the -5 reminder day for invoices due 1 Dec


def test_two_workers_run_dunning_and_dispatch_at_once_without_duplicates(channel, package):
    Subscriber.objects.bulk_create(
        Subscriber(
            name=f"Parallel {i}", phone=f"+88017{i:08d}", email=f"p{i}@example.com" if i % 2 else "",
            pppoe_username=f"par{i}", package=package, activated_on=date(2026, 11, 1),
            billed_through=date(2026, 11, 30),
        )
        for i in range(N)
    )
    assert run_billing(today=ISSUED_ON, now=at(ISSUED_ON)).issued == N
    expected = N + N // 2  # SMS for all, email for the half with an address

    start = threading.Barrier(2, timeout=30)
    dispatch_together = threading.Barrier(2, timeout=30)
    both_sending = threading.Barrier(2, timeout=30)  # each worker's first send waits for the other's
    first_send_seen: set[str] = set()
    seen_lock = threading.Lock()

    def hold_first_send(kind: str) -> None:
        me = threading.current_thread().name
        with seen_lock:
            first = me not in first_send_seen
            first_send_seen.add(me)
        if first:
            both_sending.wait()

    channel.before = hold_first_send
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            start.wait()
            queued = run_dunning(now=NOW).queued
            dispatch_together.wait()
            done = 0
            while True:
                r = outbox.dispatch(now=NOW, worker_id=worker_id, limit=10)
                if r.claimed == 0:
                    break
                assert r.done == r.claimed, r
                done += r.done
            results[worker_id] = (queued, done)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            for b in (start, dispatch_together, both_sending):
                b.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(w,), name=w) for w in ("worker-a", "worker-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    # Decided once: the two passes together queued each message exactly once.
    assert sum(q for q, _ in results.values()) == expected
    per_key = Message.objects.values("invoice_id", "step", "channel").annotate(n=Count("id"))
    assert len(per_key) == expected and {row["n"] for row in per_key} == {1}
    assert Message.objects.count() == expected
    assert Counter(Message.objects.values_list("channel", flat=True)) == {"sms": N, "email": N // 2}

    # Sent once: both workers delivered, and no message reached the channel twice.
    assert sum(d for _, d in results.values()) == expected
    assert all(d > 0 for _, d in results.values())
    refs = Counter(d.reference for d in channel.deliveries)
    assert len(channel.deliveries) == expected and set(refs.values()) == {1}
    sent = set(Message.objects.filter(status="sent").values_list("pk", flat=True))
    assert {d.message_id for d in channel.deliveries} == sent and len(sent) == expected
    assert Counter(d.thread for d in channel.deliveries) == {w: d for w, (_, d) in results.items()}
    assert OutboxItem.objects.filter(state=OutboxState.DONE).count() == expected
