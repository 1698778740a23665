"""Enforcement running concurrently.

Two workers run the suspension pass and then dispatch at the same time (PostgreSQL),
over ~100 overdue subscribers on one simulated router: each is suspended exactly once —
one EnforcementAction per subscriber and generation, one profile change on the router.

A payment arrives while the worker is still applying the suspension on a slow router:
whichever reaches the router last, the subscriber who paid ends up restored.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing
from ispbill.core import clock
from ispbill.network.connections import forget_drivers
from ispbill.network.models import EnforcementAction, NetworkState
from ispbill.network.services import ENFORCE_TOPIC, suspend_overdue
from ispbill.notifications.models import Message
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import DUE_ON, ISSUED_ON, PROFILE, SUSPENDED_PROFILE, address_of, at, listed, profile, tick

pytestmark = pytest.mark.django_db(transaction=True)

N = 100
NOW = at(date(2026, 12, 5), 9)  # due 1 Dec + 3 days' grace: suspension day


@pytest.mark.postgres_only
def test_two_workers_suspend_and_dispatch_at_once_each_subscriber_once(sim, router, package):
    sim.latency = 0.002  # a router a little way off: dispatch batches overlap in time
    subs = Subscriber.objects.bulk_create(
        Subscriber(
            name=f"Parallel {i}", phone=f"+88017{i:08d}", pppoe_username=f"par{i:03d}", package=package,
            router=router, activated_on=date(2026, 11, 1), billed_through=date(2026, 11, 30),
        )
        for i in range(N)
    )
    for i, sub in enumerate(subs):
        sim.add_secret(sub.pppoe_username, "pw", profile=PROFILE)
        sim.add_active(sub.pppoe_username, address=address_of(1000 + i))
    assert run_billing(today=ISSUED_ON, now=at(ISSUED_ON)).issued == N

    start = threading.Barrier(2, timeout=30)
    dispatch_together = threading.Barrier(2, timeout=30)
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            start.wait()
            suspended = suspend_overdue(now=NOW)
            dispatch_together.wait()
            done = 0
            while True:
                r = outbox.dispatch(now=NOW, worker_id=worker_id, limit=10, topics=[ENFORCE_TOPIC])
                if r.claimed == 0:
                    break
                assert r.done == r.claimed, r
                done += r.done
            results[worker_id] = (suspended, done)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            start.abort()
            dispatch_together.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(w,), name=w) for w in ("worker-a", "worker-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    # Decided once: the two passes together suspended each subscriber exactly once.
    assert sum(s for s, _ in results.values()) == N
    per_sub = Counter(EnforcementAction.objects.values_list("subscriber_id", "action", "generation"))
    assert len(per_sub) == N and set(per_sub.values()) == {1}
    assert {a for _, a, _ in per_sub} == {"suspend"} and {g for _, _, g in per_sub} == {1}
    assert set(EnforcementAction.objects.values_list("status", flat=True)) == {"done"}
    assert set(NetworkState.objects.values_list("desired", "applied", "generation")) == {("suspended", "suspended", 1)}
    assert Message.objects.filter(kind="suspended").count() == N  # SMS only: nobody has an email

    # Applied once: both workers dispatched, and the router saw one profile change each.
    assert sum(d for _, d in results.values()) == N
    assert all(d > 0 for _, d in results.values()), results
    counts = sim.command_counts
    assert counts["/ppp/secret/set"] == N
    assert counts["/ip/firewall/address-list/add"] == N
    assert counts["/ppp/active/remove"] == N
    assert {s["profile"] for s in sim.secrets()} == {SUSPENDED_PROFILE}
    assert sorted(e["comment"] for e in sim.address_list("suspended")) == sorted(str(s.pk) for s in subs)
    assert sim.active() == []
    assert OutboxItem.objects.filter(topic=ENFORCE_TOPIC, state=OutboxState.DONE).count() == N
    assert OutboxItem.objects.filter(topic=ENFORCE_TOPIC).exclude(attempts=1).count() == 0
    router.refresh_from_db()
    assert router.healthy


def test_payment_while_the_suspension_is_being_applied_ends_restored(sim, make_subscriber):
    sub = make_subscriber()
    tick("2026-11-24T09:00")
    assert suspend_overdue(now=NOW) == 1
    suspend_item = OutboxItem.objects.get(topic=ENFORCE_TOPIC)

    # A slow router: each command's reply (and its effect) comes 0.3 s after it was sent.
    # The worker starts applying the suspension; once it has checked that the suspension
    # is still wanted (and counted the attempt), while its commands are on the way, the
    # subscriber pays and the restore is dispatched on commit. The restore reads the
    # router before the suspension's writes land there.
    sim.latency = 0.3
    forget_drivers()  # both sides log in first (one round trip each)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            outbox.dispatch(now=NOW, ids=[suspend_item.pk], worker_id="worker")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 10
    while not EnforcementAction.objects.filter(subscriber=sub, attempts=1).exists():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    paid_at = at(date(2026, 12, 5), 9, 1)
    amount = Decimal(Invoice.objects.get(subscriber=sub, due_on=DUE_ON).amount_due_paisa) / 100
    with clock.use_clock(clock.FixedClock(paid_at)):
        record_payment(subscriber_id=sub.pk, amount=amount, method="cash", received_at=paid_at)
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []

    sub.refresh_from_db()
    assert sub.status == "active"
    state = NetworkState.objects.get(subscriber=sub)
    assert (state.desired, state.generation) == ("active", 2)
    # The router agrees with billing: the package profile, no walled garden, whatever
    # order the two actions' commands reached it in.
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}
    assert state.applied == "active"
    assert set(EnforcementAction.objects.filter(subscriber=sub).values_list("action", "status")) == {
        ("suspend", "done"), ("restore", "done"),
    }
