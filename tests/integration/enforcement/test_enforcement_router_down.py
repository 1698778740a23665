"""The router is down while enforcement runs: the outbox retries with backoff, the
router is marked unhealthy, and once it is back a later dispatch converges on what
billing wants now — a stale suspend never undoes the restore a payment asked for."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from ispbill.billing.models import Invoice
from ispbill.core import clock
from ispbill.network.models import EnforcementAction, NetworkState, Router
from ispbill.network.services import ENFORCE_TOPIC
from ispbill.payments.services import record_payment
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import DUE_ON, PROFILE, SUSPENDED_PROFILE, at, listed, online, profile, tick, writes

pytestmark = pytest.mark.django_db(transaction=True)

FIFTH_9AM = at(date(2026, 12, 5), 9)


def item_for(action: EnforcementAction) -> OutboxItem:
    return OutboxItem.objects.get(topic=ENFORCE_TOPIC, payload__action_id=action.pk)


def test_router_down_during_suspension_retries_with_backoff_then_converges(sim, router, make_subscriber):
    sub = make_subscriber()
    tick("2026-11-24T09:00")
    sim.stop()

    tick("2026-12-05T09:00")

    sub.refresh_from_db()
    assert sub.status == "suspended"
    action = EnforcementAction.objects.get(subscriber=sub)
    item = item_for(action)
    assert (action.status, action.attempts) == ("pending", 1)
    assert "router unavailable" in action.error
    assert item.state == OutboxState.PENDING and item.attempts == 1 and item.last_error
    first_delay = item.next_attempt_at - FIFTH_9AM
    assert timedelta(seconds=20) <= first_delay <= timedelta(seconds=40)  # 30 s ± 10 %
    # Unhealthy (the reconcile job, which also ran in the tick, may have counted a failure too).
    router.refresh_from_db()
    failures = router.consecutive_failures
    assert failures >= 1 and not router.healthy
    assert "connect" in router.last_error and router.last_error_at == FIFTH_9AM
    state = NetworkState.objects.get(subscriber=sub)
    assert state.desired == "suspended" and state.applied != "suspended"

    # Another tick before the backoff is over does not try again.
    tick("2026-12-05T09:00:15")
    item.refresh_from_db()
    assert item.attempts == 1

    # Still down at the retry: the next wait is longer.
    failures = Router.objects.get(pk=router.pk).consecutive_failures
    retry_at = item.next_attempt_at
    assert outbox.drain(now=retry_at).retried == 1
    item.refresh_from_db()
    assert item.attempts == 2 and item.state == OutboxState.PENDING
    assert item.next_attempt_at - retry_at > first_delay
    router.refresh_from_db()
    assert router.consecutive_failures == failures + 1

    # The router comes back (same address, state kept); the next dispatch converges.
    sim.start()
    assert profile(sim, sub) == PROFILE and writes(sim) == 0
    result = outbox.drain(now=item.next_attempt_at)
    assert (result.done, result.retried, result.dead) == (1, 0, 0)
    assert profile(sim, sub) == SUSPENDED_PROFILE
    assert listed(sim) == {sub.address_on_router: str(sub.pk)}
    assert online(sim) == set()
    action.refresh_from_db()
    item.refresh_from_db()
    assert (action.status, action.attempts, action.error) == ("done", 3, "")
    assert item.state == OutboxState.DONE and item.attempts == 3
    router.refresh_from_db()
    assert router.consecutive_failures == 0 and router.healthy and router.last_ok_at == item.finished_at
    state = NetworkState.objects.get(subscriber=sub)
    assert (state.desired, state.applied, state.generation) == ("suspended", "suspended", 1)

    # Later ticks find nothing left to do.
    before = writes(sim)
    tick("2026-12-06T09:00")
    assert writes(sim) == before


def test_payment_while_router_down_supersedes_the_stale_suspend(sim, router, make_subscriber):
    sub = make_subscriber()
    tick("2026-11-24T09:00")
    sim.stop()
    tick("2026-12-05T09:00")  # the suspend fails: router down
    suspend = EnforcementAction.objects.get(subscriber=sub, action="suspend")
    assert suspend.status == "pending"
    failures = Router.objects.get(pk=router.pk).consecutive_failures
    assert failures >= 1

    # The subscriber pays an hour later; the on-commit restore fails too (router still down).
    paid_at = at(date(2026, 12, 5), 10)
    amount = Decimal(Invoice.objects.get(subscriber=sub, due_on=DUE_ON).amount_due_paisa) / 100
    with clock.use_clock(clock.FixedClock(paid_at)):
        record_payment(subscriber_id=sub.pk, amount=amount, method="cash", received_at=paid_at)
    sub.refresh_from_db()
    assert sub.status == "active"
    restore = EnforcementAction.objects.get(subscriber=sub, action="restore")
    assert (restore.generation, restore.status, restore.attempts) == (2, "pending", 1)
    assert item_for(restore).state == OutboxState.PENDING and item_for(restore).attempts == 1
    router.refresh_from_db()
    assert router.consecutive_failures == failures + 1 and "connect" in router.last_error

    # The router is back. The stale suspend is retried first (it has waited longer) and
    # must not suspend a subscriber who has paid.
    sim.start()
    later = paid_at + timedelta(hours=1)
    assert item_for(suspend).next_attempt_at < item_for(restore).next_attempt_at
    assert outbox.dispatch(now=later, ids=[item_for(suspend).pk]).done == 1
    suspend.refresh_from_db()
    assert suspend.status == "superseded"
    assert profile(sim, sub) == PROFILE and writes(sim) == 0

    assert outbox.dispatch(now=later, topics=[ENFORCE_TOPIC]).done == 1
    restore.refresh_from_db()
    assert restore.status == "done"
    # Nothing was ever changed on the router: the subscriber never lost service there.
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}
    assert online(sim) == {sub.pppoe_username}
    assert writes(sim) == 0
    state = NetworkState.objects.get(subscriber=sub)
    assert (state.desired, state.applied, state.generation) == ("active", "active", 2)
    router.refresh_from_db()
    assert router.healthy
    assert OutboxItem.objects.filter(topic=ENFORCE_TOPIC).exclude(state=OutboxState.DONE).count() == 0


def test_router_down_after_suspension_restore_wins_when_it_returns(sim, router, make_subscriber):
    sub = make_subscriber()
    tick("2026-11-24T09:00")
    tick("2026-12-05T09:00")
    assert profile(sim, sub) == SUSPENDED_PROFILE
    sim.add_active(sub.pppoe_username, address=sub.address_on_router)  # redialled into the walled garden
    sim.stop()

    paid_at = at(date(2026, 12, 5), 11)
    amount = Decimal(Invoice.objects.get(subscriber=sub, due_on=DUE_ON).amount_due_paisa) / 100
    with clock.use_clock(clock.FixedClock(paid_at)):
        record_payment(subscriber_id=sub.pk, amount=amount, method="cash", received_at=paid_at)
    restore = EnforcementAction.objects.get(subscriber=sub, action="restore")
    assert restore.status == "pending" and "router unavailable" in restore.error
    assert Router.objects.get(pk=router.pk).consecutive_failures >= 1

    sim.start()
    tick("2026-12-05T11:05")  # the worker's next pass after the backoff
    restore.refresh_from_db()
    assert restore.status == "done"
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}
    assert online(sim) == set()  # the walled-garden session was ended
    assert Router.objects.get(pk=router.pk).healthy
