"""The reconcile job talks to several routers at once: a router that accepts the
connection and never answers costs its timeout once, and the other routers are
reconciled meanwhile, not after it. Threads need committed data, hence transactional
tests (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from django.db import connection

from ispbill.network import connections, jobs
from ispbill.network.drivers.routeros import RouterOSDriver
from ispbill.network.models import NetworkState, ReconcileRun, Router
from ispbill.network.reconcile import reconcile_routers
from ispbill.sim.routeros import RouterOSSimulator

from .conftest import HOME, SUSPENDED, add_subscriber, make_router

pytestmark = pytest.mark.django_db(transaction=True)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
TIMEOUT = 1.0  # seconds per read, one attempt


@pytest.fixture
def quick_drivers(monkeypatch):
    """The job's RouterOS drivers give up on a silent router after one TIMEOUT."""

    def factory(router: Router) -> RouterOSDriver:
        return RouterOSDriver(
            router.host, router.port, router.username, router.password, suspended_profile=router.suspended_profile,
            address_list=router.suspended_address_list, timeout=TIMEOUT, attempts=1,
        )

    monkeypatch.setitem(connections._factories, "routeros", factory)


@pytest.fixture
def silent():
    """A RouterOS API server that accepts connections and never answers."""
    with RouterOSSimulator(users={"admin": "s3cret-pw"}, latency=3600) as s:
        yield s


@pytest.fixture
def second_sim():
    with RouterOSSimulator(users={"admin": "s3cret-pw"}) as s:
        s.add_profile(HOME)
        yield s


def backends() -> int:
    """Other sessions connected to this PostgreSQL database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_silent_router_costs_one_timeout_and_delays_no_other(
    sim, second_sim, silent, packages, quick_drivers, caplog
):
    caplog.set_level(logging.INFO, logger="ispbill.network")
    dead = make_router(silent, name="dead")  # first in id order: one at a time, the others would wait for it
    good = make_router(sim, name="good")
    other = make_router(second_sim, name="other")
    carol = add_subscriber(packages["home"], "carol", router=good, n=1)  # pays, but walled off by hand
    sim.add_secret("carol", profile=SUSPENDED)
    dave = add_subscriber(packages["home"], "dave", router=other, n=2, status="suspended")  # unpaid, online
    second_sim.add_secret("dave", profile=HOME)
    second_sim.add_active("dave", "10.1.1.7")
    before = backends() if connection.vendor == "postgresql" else 0

    started = time.time()
    result = jobs.reconcile_routers(NOW)
    took = time.time() - started

    assert took < 2 * TIMEOUT, took
    finished = {
        r.getMessage().split(":")[0].removeprefix("reconcile "): r.created - started
        for r in caplog.records if r.getMessage().startswith("reconcile ")
    }
    assert finished["good"] < TIMEOUT and finished["other"] < TIMEOUT, finished  # not after the silent one
    assert finished["dead"] >= TIMEOUT * 0.9, finished
    assert result == "3 routers reconciled (1 with errors), 2 repaired, 2 leaks found"
    runs = {run.router_id: run for run in ReconcileRun.objects.all()}
    assert runs[dead.pk].error.startswith("router unavailable (timeout)"), runs[dead.pk].error
    assert (runs[good.pk].error, runs[good.pk].paid_but_suspended, runs[good.pk].repaired) == ("", ["carol"], 1)
    assert (runs[other.pk].error, runs[other.pk].online_unpaid, runs[other.pk].repaired) == ("", ["dave"], 1)
    assert sim.secret("carol")["profile"] == HOME
    assert second_sim.secret("dave")["profile"] == SUSPENDED and not second_sim.active()
    assert NetworkState.objects.get(subscriber=carol).applied == "active"
    assert NetworkState.objects.get(subscriber=dave).applied == "suspended"
    dead.refresh_from_db()
    assert not dead.healthy and dead.consecutive_failures == 1
    if connection.vendor == "postgresql":
        # Each thread's connection is closed once its router is done (the server ends
        # the backend a moment after the client hangs up).
        deadline = time.monotonic() + 5
        while backends() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backends() == before


def test_the_runs_come_back_in_router_id_order(sim, packages, quick_drivers, settings):
    settings.ISPBILL_RECONCILE_CONCURRENCY = 3
    routers = [make_router(sim, name=f"core-{n}") for n in range(5)]
    Router.objects.filter(pk=routers[1].pk).update(password_encrypted="not-a-fernet-token")

    runs = reconcile_routers(now=NOW)

    assert [r.router_id for r in runs] == [r.pk for r in routers]
    assert "cannot read the router" in runs[1].error
    assert [r.error for i, r in enumerate(runs) if i != 1] == [""] * 4
