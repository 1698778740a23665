"""The demo on its simulated router: loading the demo only queues enforcement (no router
is contacted), the simulator is rebuilt from the database as ``serve --demo-router``
does, the worker's pass suspends the unpaid on it, and a payment reconnects at once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ispbill.billing import ledger
from ispbill.core import clock
from ispbill.demo.data import DEMO_ROUTER_NAME, load_demo
from ispbill.network.connections import forget_drivers
from ispbill.network.models import EnforcementAction, NetworkState, Router
from ispbill.network.services import ENFORCE_TOPIC
from ispbill.payments.services import record_payment
from ispbill.plans.models import Package
from ispbill.sim.routeros import RouterOSSimulator, load_database_router, read_database_router
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem

from .conftest import SUSPENDED_PROFILE, free_port

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka


@pytest.fixture
def demo_port(monkeypatch):
    port = free_port()
    monkeypatch.setenv("ISPBILL_DEMO_ROUTER_PORT", str(port))
    yield port
    forget_drivers()


def test_demo_queues_suspensions_then_the_simulated_router_enforces_them(demo_port):
    with clock.use_clock(clock.FixedClock(NOW)):
        load_demo(now=NOW)

    # Every subscriber is on the demo router; loading contacted no router.
    router = Router.objects.get(name=DEMO_ROUTER_NAME)
    assert (router.host, router.port, router.username, router.password) == ("127.0.0.1", demo_port, "admin", "admin")
    assert not Subscriber.objects.filter(router__isnull=True).exists()
    assert (router.consecutive_failures, router.last_ok_at, router.last_error) == (0, None, "")
    enforce = OutboxItem.objects.filter(topic=ENFORCE_TOPIC)
    assert enforce.exists() and set(enforce.values_list("state", "attempts")) == {("pending", 0)}

    # The demo's unpaid suspensions are billing's (reason overdue: a payment lifts them);
    # disabled subscribers are blocked too.
    suspended = list(Subscriber.objects.filter(status="suspended"))
    disabled = list(Subscriber.objects.filter(status="disabled"))
    assert suspended and disabled
    for sub in suspended:
        state = NetworkState.objects.get(subscriber=sub)
        assert (state.desired, state.applied, state.reason) == ("suspended", "unknown", "overdue")
    for sub in disabled:
        assert NetworkState.objects.get(subscriber=sub).desired == "suspended"

    # What `serve --demo-router` starts: the simulator loaded from the database. Nothing
    # is applied yet, so every account is on its package's profile.
    data = read_database_router(DEMO_ROUTER_NAME)
    assert len(data.accounts) == Subscriber.objects.count()
    with RouterOSSimulator(port=demo_port, users={data.username: data.password}) as sim:
        load_database_router(sim, data)
        assert {s["profile"] for s in sim.secrets()} <= set(Package.objects.values_list("router_profile", flat=True))
        assert len(sim.active()) == Subscriber.objects.exclude(status="disabled").count()

        # The worker's pass: everything queued is applied.
        result = outbox.drain(now=NOW)
        assert result.dead == 0 and result.retried == 0
        profiles = {s["name"]: s["profile"] for s in sim.secrets()}
        for sub in Subscriber.objects.select_related("package"):
            blocked = sub.status != "active"
            assert (profiles[sub.pppoe_username] == SUSPENDED_PROFILE) == blocked, sub
            if not blocked:
                assert profiles[sub.pppoe_username] == sub.package.router_profile
        listed = {e["comment"] for e in sim.address_list("suspended")}
        assert listed == {str(s.pk) for s in suspended}
        assert set(EnforcementAction.objects.values_list("status", flat=True)) <= {"done", "superseded"}

        # A suspended subscriber pays what they owe: reconnected on commit.
        sub = suspended[0]
        with clock.use_clock(clock.FixedClock(NOW)):
            record_payment(
                subscriber_id=sub.pk, amount=Decimal(ledger.balance(sub.pk)) / 100, method="cash", received_at=NOW,
            )
        sub.refresh_from_db()
        assert sub.status == "active"
        assert sim.secret(sub.pppoe_username)["profile"] == sub.package.router_profile
        assert str(sub.pk) not in {e["comment"] for e in sim.address_list("suspended")}

    # Restarted, the simulator comes back as billing last applied it (a router keeps its
    # configuration across a reboot).
    data = read_database_router(DEMO_ROUTER_NAME)
    with RouterOSSimulator(port=free_port(), users={data.username: data.password}) as sim:
        load_database_router(sim, data)
        profiles = {s["name"]: s["profile"] for s in sim.secrets()}
        assert profiles[sub.pppoe_username] == sub.package.router_profile
        for other in suspended[1:]:
            assert profiles[other.pppoe_username] == SUSPENDED_PROFILE
