"""Whole enforcement cycles against a simulated MikroTik, the clock moved with
``ispbill tick --at``.

Prepaid subscribers on the default settings (grace 3 days): the December invoice is
issued on 24 Nov and due on 1 Dec, so an unpaid subscriber is suspended on 5 Dec, not
on 4 Dec. A payment restores the router as soon as its transaction commits, with no
tick and no worker poll in between (the on-commit dispatch), so these tests run with
real commits (``transaction=True``).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest

from ispbill.billing.models import Invoice
from ispbill.core import clock
from ispbill.network.models import EnforcementAction, NetworkState
from ispbill.network.services import ENFORCE_TOPIC
from ispbill.notifications.models import Message
from ispbill.payments.services import record_payment
from ispbill.subscribers.services import update_subscriber
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import (
    DUE_ON,
    PROFILE,
    SUSPENDED_PROFILE,
    at,
    listed,
    online,
    profile,
    tick,
    writes,
)

pytestmark = pytest.mark.django_db(transaction=True)


def pay(sub, amount: Decimal, when) -> None:
    """Cash at the counter at ``when``; the clock stands there while the payment commits."""
    with clock.use_clock(clock.FixedClock(when)):
        record_payment(
            subscriber_id=sub.pk, amount=amount, method="cash", received_at=when, reference=f"counter {sub.pk}",
        )


def december_due(sub) -> Decimal:
    return Decimal(Invoice.objects.get(subscriber=sub, due_on=DUE_ON).amount_due_paisa) / 100


def kinds(sub) -> Counter:
    return Counter(Message.objects.filter(subscriber=sub).values_list("kind", flat=True))


def enforce_items(state: str | None = None):
    qs = OutboxItem.objects.filter(topic=ENFORCE_TOPIC)
    return qs if state is None else qs.filter(state=state)


def suspend_on_fifth(sim, *subs) -> None:
    """Issue December on 24 Nov and move on to the first tick of 5 Dec: every unpaid
    subscriber given is suspended on the router."""
    tick("2026-11-24T09:00")
    tick("2026-12-05T09:00")
    for sub in subs:
        assert profile(sim, sub) == SUSPENDED_PROFILE


def test_unpaid_subscriber_is_suspended_once_on_the_day_after_grace(sim, make_subscriber, channel):
    unpaid = make_subscriber(email="unpaid@example.com")
    exempt = make_subscriber(never_suspend=True)
    payer = make_subscriber()

    seen_writes: dict[tuple[date, int], int] = {}
    day = date(2026, 11, 24)
    while day <= date(2026, 12, 6):
        for hour in (9, 15):
            tick(f"{day.isoformat()}T{hour:02d}:00")
            seen_writes[(day, hour)] = writes(sim)
            if (day, hour) == (date(2026, 11, 28), 9):
                pay(payer, december_due(payer), at(day, 12))
        day += timedelta(days=1)

    # Nothing touched the router before 5 Dec: not on the due date, not on the last day of grace.
    assert seen_writes[(date(2026, 12, 4), 15)] == 0
    # The first tick of 5 Dec suspended the unpaid subscriber: profile, address list
    # (comment = subscriber id) and a kicked session, three commands, and no more ever.
    assert seen_writes[(date(2026, 12, 5), 9)] == 3
    assert seen_writes[(date(2026, 12, 6), 15)] == 3
    counts = sim.command_counts
    assert counts["/ppp/secret/set"] == 1
    assert counts["/ip/firewall/address-list/add"] == 1
    assert counts["/ppp/active/remove"] == 1

    assert profile(sim, unpaid) == SUSPENDED_PROFILE
    assert listed(sim) == {unpaid.address_on_router: str(unpaid.pk)}
    assert online(sim) == {exempt.pppoe_username, payer.pppoe_username}

    # The exempt subscriber and the one who paid keep the package's profile.
    assert profile(sim, exempt) == PROFILE
    assert profile(sim, payer) == PROFILE
    exempt.refresh_from_db()
    payer.refresh_from_db()
    assert (exempt.status, payer.status) == ("active", "active")
    assert not EnforcementAction.objects.filter(subscriber__in=[exempt, payer]).exists()

    # Exactly one action, done, for the one generation; the state says it is applied.
    unpaid.refresh_from_db()
    assert unpaid.status == "suspended"
    actions = list(EnforcementAction.objects.filter(subscriber=unpaid))
    assert [(a.action, a.generation, a.reason, a.status, a.attempts) for a in actions] == [
        ("suspend", 1, "overdue", "done", 1)
    ]
    assert actions[0].router_id == unpaid.router_id
    assert clock_local(actions[0].created_at) == "2026-12-05T09:00:00"
    state = NetworkState.objects.get(subscriber=unpaid)
    assert (state.desired, state.applied, state.generation, state.reason) == ("suspended", "suspended", 1, "overdue")
    assert enforce_items().count() == 1 and enforce_items(OutboxState.DONE).count() == 1

    # The router's health was recorded.
    unpaid.router.refresh_from_db()
    assert unpaid.router.consecutive_failures == 0 and unpaid.router.last_ok_at is not None

    # "Service suspended" went out once on each channel the subscriber has.
    assert Message.objects.filter(subscriber=unpaid, kind="suspended").count() == 2
    assert {(m.channel, m.status) for m in Message.objects.filter(subscriber=unpaid, kind="suspended")} == {
        ("sms", "sent"), ("email", "sent"),
    }
    assert not Message.objects.filter(subscriber__in=[exempt, payer], kind="suspended").exists()
    assert kinds(payer)["receipt"] == 1


def clock_local(dt) -> str:
    from ispbill.core.timeutil import isp_zone

    return dt.astimezone(isp_zone()).replace(tzinfo=None).isoformat()


def test_payment_restores_the_router_as_soon_as_it_commits(sim, make_subscriber, channel):
    sub = make_subscriber(email="late@example.com")
    suspend_on_fifth(sim, sub)
    assert listed(sim) == {sub.address_on_router: str(sub.pk)}
    # The subscriber redials and lands in the walled garden with the same address.
    sim.add_active(sub.pppoe_username, address=sub.address_on_router)
    before = writes(sim)

    pay(sub, december_due(sub), at(date(2026, 12, 5), 13))

    # No tick, no worker: the restore was dispatched right after the commit.
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}
    assert online(sim) == set()  # the walled-garden session was ended so the package applies
    counts = sim.command_counts
    assert counts["/ip/firewall/address-list/remove"] == 1
    assert writes(sim) - before == 3  # profile back, entry removed, session ended

    sub.refresh_from_db()
    assert sub.status == "active"
    restore = EnforcementAction.objects.get(subscriber=sub, action="restore")
    assert (restore.generation, restore.reason, restore.status, restore.attempts) == (2, "payment", "done", 1)
    state = NetworkState.objects.get(subscriber=sub)
    assert (state.desired, state.applied, state.generation) == ("active", "active", 2)
    assert enforce_items(OutboxState.DONE).count() == 2

    # Receipt and "service restored" are queued with the payment (sent by the worker later).
    queued = Counter(
        Message.objects.filter(subscriber=sub, kind__in=("receipt", "reconnected")).values_list("kind", "status")
    )
    assert queued == {("receipt", "queued"): 2, ("reconnected", "queued"): 2}

    # The next tick sends them and changes nothing more on the router.
    done = writes(sim)
    tick("2026-12-05T15:00")
    tick("2026-12-06T09:00")
    assert writes(sim) == done
    assert Counter(Message.objects.filter(subscriber=sub).values_list("kind", "status"))[("reconnected", "sent")] == 2
    assert EnforcementAction.objects.filter(subscriber=sub).count() == 2


def test_partial_payment_that_leaves_an_overdue_invoice_keeps_the_suspension(sim, make_subscriber):
    sub = make_subscriber()
    suspend_on_fifth(sim, sub)
    before = writes(sim)

    pay(sub, december_due(sub) / 2, at(date(2026, 12, 5), 13))

    assert profile(sim, sub) == SUSPENDED_PROFILE
    assert listed(sim) == {sub.address_on_router: str(sub.pk)}
    assert writes(sim) == before
    sub.refresh_from_db()
    assert sub.status == "suspended"
    assert Invoice.objects.get(subscriber=sub, due_on=DUE_ON).status == "partially_paid"
    assert not EnforcementAction.objects.filter(subscriber=sub, action="restore").exists()
    assert kinds(sub)["receipt"] == 1 and kinds(sub)["reconnected"] == 0

    # The rest of the money lifts it.
    pay(sub, december_due(sub), at(date(2026, 12, 5), 17))
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}


def test_staff_suspension_is_not_lifted_by_a_payment(sim, make_subscriber):
    sub = make_subscriber()
    tick("2026-11-24T09:00")
    # Staff suspend before the invoice is even due (abuse report, say); the worker applies it.
    update_subscriber(subscriber_id=sub.pk, today=date(2026, 11, 26), status="suspended")
    tick("2026-11-26T09:00")
    assert profile(sim, sub) == SUSPENDED_PROFILE
    assert listed(sim) == {sub.address_on_router: str(sub.pk)}
    assert NetworkState.objects.get(subscriber=sub).reason == "staff"
    before = writes(sim)

    pay(sub, december_due(sub), at(date(2026, 11, 27), 11))

    assert Invoice.objects.get(subscriber=sub, due_on=DUE_ON).status == "paid"
    sub.refresh_from_db()
    assert sub.status == "suspended"
    assert profile(sim, sub) == SUSPENDED_PROFILE
    assert writes(sim) == before
    assert not EnforcementAction.objects.filter(subscriber=sub, action="restore").exists()
    assert kinds(sub)["receipt"] == 1 and kinds(sub)["reconnected"] == 0

    # Ticks through the suspension day leave it as staff set it ...
    tick("2026-12-05T09:00")
    assert writes(sim) == before

    # ... until staff lift it: restored at once on commit, like a payment.
    with clock.use_clock(clock.FixedClock(at(date(2026, 12, 5), 12))):
        update_subscriber(subscriber_id=sub.pk, today=date(2026, 12, 5), status="active")
    assert profile(sim, sub) == PROFILE
    assert listed(sim) == {}
    state = NetworkState.objects.get(subscriber=sub)
    assert (state.desired, state.applied, state.reason) == ("active", "active", "staff")
