"""Reconciliation against the RouterOS simulator: drift made behind the system's back
is found, repaired and reported; a router that is down loses nothing and converges
when it is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import librouteros
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.network import connections, jobs
from ispbill.network.models import NetworkState, ReconcileRun, Router
from ispbill.network.reconcile import reconcile_router, reconcile_routers
from ispbill.network.services import restore_subscriber, suspend_subscriber
from ispbill.sim.routeros import RouterOSSimulator
from ispbill.subscribers.models import Subscriber

from .conftest import HOME, NOV_1, PRO, SUSPENDED, add_subscriber, free_port, make_router

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def listed(sim) -> dict[str, str]:
    return {e["address"]: e.get("comment", "") for e in sim.address_list("suspended")}


def online(sim) -> set[str]:
    return {a["name"] for a in sim.active()}


def state(sub) -> NetworkState:
    return NetworkState.objects.get(subscriber=sub)


@pytest.fixture
def world(sim, router, packages, fixed_clock):
    """A router in step with billing: two paying subscribers online, one suspended one
    walled off on the suspended profile."""
    home = packages["home"]
    subs = {
        "alice": add_subscriber(home, "alice", router=router, n=1),
        "bob": add_subscriber(packages["pro"], "bob", router=router, n=2),
        "sumon": add_subscriber(home, "sumon", router=router, n=3, status="suspended"),
    }
    sim.add_secret("alice", profile=HOME)
    sim.add_secret("bob", profile=PRO)
    sim.add_secret("sumon", profile=SUSPENDED)
    sim.add_active("alice", "10.1.1.5")
    sim.add_active("bob", "10.1.1.6")
    sim.add_active("sumon", "10.200.0.3")
    sim.add_address_list_entry("suspended", "10.200.0.3", comment=str(subs["sumon"].pk))
    return subs


def test_a_router_in_step_with_billing_is_clean(sim, router, world):
    run = reconcile_router(router, now=NOW)

    assert run.pk and run.error == "" and run.repaired == 0
    assert (run.online_unpaid, run.unknown_on_router, run.paid_but_suspended, run.missing_on_router) == ([], [], [], [])
    assert (run.secrets, run.online) == (3, 3)
    assert run.started_at == NOW and run.finished_at >= NOW
    # What the run learnt: where everyone is, and that the router applies their state.
    assert state(world["alice"]).address == "10.1.1.5" and state(world["alice"]).address_seen_at == NOW
    assert state(world["sumon"]).address == "10.200.0.3"
    assert (state(world["alice"]).applied, state(world["sumon"]).applied) == ("active", "suspended")
    assert state(world["sumon"]).desired == "suspended"  # created from the subscriber's status
    router.refresh_from_db()
    assert router.healthy and router.last_ok_at == NOW


def test_drift_behind_the_systems_back_is_found_repaired_and_reported(sim, router, packages, world):
    home = packages["home"]
    carol = add_subscriber(home, "carol", router=router, n=4)  # pays
    dave = add_subscriber(home, "dave", router=router, n=5)
    erin = add_subscriber(home, "erin", router=router, n=6)
    gina = add_subscriber(home, "gina", router=router, n=7)  # pays for Home, not Pro
    frank = add_subscriber(home, "frank", router=router, n=8)  # no secret on the router
    suspend_subscriber(subscriber_id=dave.pk, reason="overdue", now=NOW)
    suspend_subscriber(subscriber_id=erin.pk, reason="overdue", now=NOW)
    # The state the router should have...
    sim.add_secret("carol", profile=HOME)
    sim.add_secret("dave", profile=SUSPENDED)
    sim.add_secret("erin", profile=SUSPENDED)
    sim.add_secret("gina", profile=HOME)
    sim.add_active("erin", "10.200.0.9")
    entry = sim.add_address_list_entry("suspended", "10.200.0.9", comment=str(erin.pk))
    # ...and what a technician did by hand.
    sim_set_profile(sim, "carol", SUSPENDED)  # a paying subscriber suspended
    sim_set_profile(sim, "dave", HOME)  # an unpaid subscriber given service again...
    sim.add_active("dave", "10.1.1.7")  # ...and online
    sim.add_secret("stranger", profile=HOME, comment="friend of the technician")  # an account nobody bills
    add_subscriber(home, "loner", n=9)  # billed, but not (yet) assigned to a router
    sim.add_secret("loner", profile=HOME)
    sim.add_active("stranger", "10.1.1.99")
    remove_list_entry(sim, entry)  # erin online, no longer walled off
    sim_set_profile(sim, "gina", PRO)  # a faster package than she pays for

    run = reconcile_router(router, now=NOW)

    assert run.error == ""
    assert sorted(run.online_unpaid) == ["dave", "erin"]
    assert run.paid_but_suspended == ["carol"]
    assert run.unknown_on_router == ["stranger"]  # "loner" is known to billing
    assert run.missing_on_router == ["frank"]
    assert run.repaired == 4  # carol, dave, erin, gina
    # The router is repaired...
    assert sim.secret("carol")["profile"] == HOME
    assert sim.secret("dave")["profile"] == SUSPENDED
    assert sim.secret("gina")["profile"] == HOME
    assert "dave" not in online(sim) and "erin" not in online(sim)  # kicked: the walled garden applies on redial
    assert listed(sim)["10.1.1.7"] == str(dave.pk) and listed(sim)["10.200.0.9"] == str(erin.pk)
    # ...strangers are reported, never touched.
    assert sim.secret("stranger")["profile"] == HOME and "stranger" in online(sim)
    # ...and the database knows what is applied now.
    assert (state(carol).applied, state(dave).applied, state(erin).applied) == ("active", "suspended", "suspended")
    assert state(dave).address == "10.1.1.7"
    assert not NetworkState.objects.filter(subscriber=frank).exclude(applied="unknown").exists()

    again = reconcile_router(router, now=NOW + timedelta(minutes=5))
    assert again.repaired == 0 and again.online_unpaid == [] and again.paid_but_suspended == []
    assert again.unknown_on_router == ["stranger"] and again.missing_on_router == ["frank"]
    assert ReconcileRun.objects.filter(router=router).count() == 2


def test_report_only_changes_nothing(sim, router, world):
    sim_set_profile(sim, "alice", SUSPENDED)
    run = reconcile_router(router, now=NOW, repair=False)
    assert run.paid_but_suspended == ["alice"] and run.repaired == 0
    assert sim.secret("alice")["profile"] == SUSPENDED


def test_a_refused_repair_is_recorded_and_retried_next_run(sim, router, world):
    sim_set_profile(sim, "alice", SUSPENDED)
    sim.inject_trap("/ppp/secret/set", "failure: not permitted", times=1)

    run = reconcile_router(router, now=NOW)

    assert run.paid_but_suspended == ["alice"] and run.repaired == 0
    assert run.error.startswith("1 repairs failed (first: alice: /ppp/secret/set: failure: not permitted")
    assert sim.secret("alice")["profile"] == SUSPENDED
    assert reconcile_router(router, now=NOW + timedelta(minutes=5)).repaired == 1
    assert sim.secret("alice")["profile"] == HOME


def test_a_disabled_secret_of_a_paying_subscriber_is_reported(sim, router, world):
    disable_secret(sim, "bob")
    run = reconcile_router(router, now=NOW)
    assert run.paid_but_suspended == ["bob"] and run.repaired == 0


def test_addresses_follow_the_sessions(sim, router, world):
    reconcile_router(router, now=NOW)
    sim.drop_session("alice")
    sim.drop_session("sumon")
    reconcile_router(router, now=NOW + timedelta(minutes=5))
    # alice went offline: her address may go to someone else, so it no longer names her.
    assert state(world["alice"]).address == ""
    # sumon's session is gone, but the entry for him on the suspended list still places him.
    assert state(world["sumon"]).address == "10.200.0.3"
    assert state(world["bob"]).address_seen_at == NOW + timedelta(minutes=5)


def test_the_router_down_records_an_error_loses_nothing_and_converges_when_back(packages, fixed_clock):
    port = free_port()
    sim = RouterOSSimulator(port=port, users={"admin": "s3cret-pw"}).start()
    try:
        sim.add_profile(HOME)
        router = make_router(sim)
        alice = add_subscriber(packages["home"], "alice", router=router, n=1)
        bob = add_subscriber(packages["home"], "bob", router=router, n=2)
        sim.add_secret("alice", profile=HOME)
        sim.add_secret("bob", profile=HOME)
        sim.add_active("alice", "10.1.1.5")
        first = reconcile_router(router, now=NOW)
        assert first.error == ""

        sim.stop()
        # While it is down, billing moves on: bob is suspended for not paying.
        suspend_subscriber(subscriber_id=bob.pk, reason="overdue", now=NOW)
        down = reconcile_router(router, now=NOW + timedelta(minutes=5))

        assert down.error.startswith("router unavailable")
        assert (down.secrets, down.repaired, down.online_unpaid, down.unknown_on_router) == (0, 0, [], [])
        router.refresh_from_db()
        assert not router.healthy and router.consecutive_failures == 1 and router.last_error
        assert state(alice).address == "10.1.1.5"  # nothing the last good run learnt is lost
        assert ReconcileRun.objects.get(pk=first.pk).error == ""

        sim.start()  # back, same port, same configuration
        back = reconcile_router(router, now=NOW + timedelta(minutes=10))

        assert back.error == "" and back.repaired == 1
        assert sim.secret("bob")["profile"] == SUSPENDED and sim.secret("alice")["profile"] == HOME
        assert state(bob).applied == "suspended"
        router.refresh_from_db()
        assert router.healthy
    finally:
        sim.stop()


def test_a_payment_during_the_repair_wins(sim, router, packages, world, monkeypatch):
    """The run read "suspend carol"; carol pays while the repair is under way. The run
    must not leave a paying customer cut off."""
    carol = add_subscriber(packages["home"], "carol", router=router, n=4)
    suspend_subscriber(subscriber_id=carol.pk, reason="overdue", now=NOW)
    sim.add_secret("carol", profile=HOME)  # the suspension never reached the router
    real = connections._factories["routeros"]

    class PaysMidway:
        def __init__(self, driver):
            self.driver = driver

        def __getattr__(self, name):
            return getattr(self.driver, name)

        def bulk_suspend(self, targets):
            result = self.driver.bulk_suspend(targets)
            if any(t.username == "carol" for t in targets):
                restore_subscriber(subscriber_id=carol.pk, reason="payment", now=NOW)
            return result

    monkeypatch.setitem(connections._factories, "routeros", lambda r: PaysMidway(real(r)))
    connections.forget_drivers()

    run = reconcile_router(router, now=NOW)

    assert sim.secret("carol")["profile"] == HOME  # put back straight away
    assert run.repaired == 0
    assert state(carol).applied != "suspended"


def test_the_job_reconciles_every_active_router_independently(sim, packages, fixed_clock):
    good = make_router(sim, name="good")
    bad = make_router(sim, name="bad", port=free_port())
    idle = make_router(sim, name="idle", is_active=False)
    add_subscriber(packages["home"], "alice", router=good, n=1)
    sim.add_secret("alice", profile=SUSPENDED)

    result = jobs.reconcile_routers(NOW)

    assert result == "2 routers reconciled (1 with errors), 1 repaired, 1 leaks found"
    assert ReconcileRun.objects.get(router=good).repaired == 1
    assert ReconcileRun.objects.get(router=bad).error
    assert not ReconcileRun.objects.filter(router=idle).exists()
    assert sim.secret("alice")["profile"] == HOME
    bad.refresh_from_db()
    assert not bad.healthy


def test_a_broken_router_record_does_not_stop_the_others(sim, packages, fixed_clock):
    broken = make_router(sim, name="a-broken")
    Router.objects.filter(pk=broken.pk).update(password_encrypted="not-a-fernet-token")
    good = make_router(sim, name="b-good")

    runs = reconcile_routers(now=NOW)

    assert [r.router_id for r in runs] == [broken.pk, good.pk]
    assert "cannot read the router" in runs[0].error and runs[1].error == ""


def test_the_database_is_read_once_per_router_not_per_subscriber(sim, router, packages, fixed_clock):
    def run_with(count: int) -> int:
        start = Subscriber.objects.count()
        names = [f"u{start + i:06d}" for i in range(count)]
        Subscriber.objects.bulk_create(
            Subscriber(
                name=f"Sub {n}", phone=f"+88017{i:08d}", pppoe_username=n, package=packages["home"], router=router,
                status="active" if i % 10 else "suspended", activated_on=NOV_1,
            )
            for i, n in enumerate(names, start)
        )
        sim.add_secrets(names, profile=HOME)
        for i, n in enumerate(names):
            if i % 3 == 0:
                sim.add_active(n, f"10.9.{(start + i) // 250}.{(start + i) % 250 + 1}")
        with CaptureQueriesContext(connection) as queries:
            run = reconcile_router(router, now=NOW)
        assert run.error == "", run.error
        return len(queries)

    small = run_with(50)
    large = run_with(1500)
    assert large <= small + 4, (small, large)  # a few more id chunks on SQLite, never one per subscriber


# -- helpers that change the simulated router directly ("behind the system's back") ----


def _api(sim):
    return librouteros.connect("127.0.0.1", "admin", "s3cret-pw", port=sim.port)


def sim_set_profile(sim, name: str, profile: str) -> None:
    api = _api(sim)
    try:
        api.path("ppp", "secret").update(**{".id": sim.secret(name)[".id"], "profile": profile})
    finally:
        api.close()


def disable_secret(sim, name: str) -> None:
    api = _api(sim)
    try:
        api.path("ppp", "secret").update(**{".id": sim.secret(name)[".id"], "disabled": True})
    finally:
        api.close()


def remove_list_entry(sim, ident: str) -> None:
    api = _api(sim)
    try:
        api.path("ip", "firewall", "address-list").remove(ident)
    finally:
        api.close()
