"""Routers in the back office: health and leakage, the connection test, drift, reconcile
now, import from the router, add and edit, all against the RouterOS simulator over the
real wire protocol (and against a closed port and a silent one)."""

from __future__ import annotations

import socket
import threading

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ispbill.audit.models import AuditEvent
from ispbill.backoffice.views import routers as router_views
from ispbill.network import connections
from ispbill.network.models import ReconcileRun, Router
from ispbill.network.reconcile import reconcile_router
from ispbill.network.routers import create_router
from ispbill.sim.routeros import RouterOSSimulator
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import update_subscriber

from ..network_db.conftest import HOME, PRO, SUSPENDED, add_subscriber, free_port
from .office_support import make_staff

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-pw"
XSS = '<script>alert("r")</script>'


@pytest.fixture(autouse=True)
def _fresh_drivers():
    connections.forget_drivers()
    yield
    connections.forget_drivers()


@pytest.fixture(autouse=True)
def _clock(fixed_clock):
    return fixed_clock


@pytest.fixture
def sim():
    with RouterOSSimulator(users={"admin": PASSWORD}, identity="core-dhanmondi", version="7.16.2") as s:
        s.add_profile(HOME)
        s.add_profile(PRO)
        yield s


@pytest.fixture
def packages(db):
    from decimal import Decimal

    from ispbill.plans.services import create_package

    return {
        "home": create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile=HOME),
        "pro": create_package(name="Pro 20M", price=Decimal("1500.00"), rate_limit="20M/20M", router_profile=PRO),
    }


@pytest.fixture
def router(sim):
    return create_router(name="core-1", host="127.0.0.1", port=sim.port, username="admin", password=PASSWORD)


@pytest.fixture
def admin():
    client = Client()
    client.force_login(make_staff("admin"))
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def follow(client, path, data=None):
    response = client.post(path, data or {}, follow=True)
    assert response.redirect_chain and response.redirect_chain[0][1] == 303
    return response


# -- list and detail ----------------------------------------------------------------------------

def test_list_shows_health_counts_and_the_latest_leakage(admin, sim, router, packages, fixed_clock):
    a = add_subscriber(packages["home"], "alice", router=router, n=1)
    add_subscriber(packages["home"], "bob", router=router, n=2)
    update_subscriber(subscriber_id=a.pk, today=fixed_clock.now().date(), status="suspended")
    sim.add_secret("alice", profile=HOME)
    sim.add_active("alice", "10.1.1.5")
    sim.add_secret("stranger", profile=HOME)
    reconcile_router(Router.objects.get(pk=router.pk), now=fixed_clock.now(), repair=False)
    create_router(name="edge-2", host="127.0.0.1", port=free_port(), username="admin", password="x")

    html = admin.get("/office/routers/").content.decode()

    assert "core-1" in html and "edge-2" in html
    assert "not contacted yet" in html  # edge-2
    assert "online unpaid 1" in html and "unknown 1" in html and "missing 1" in html
    row = html[html.index("core-1"):html.index("edge-2")]
    assert '<td data-label="Subscribers" class="num">2</td>' in row
    assert '<td data-label="Active" class="num">1</td>' in row
    assert '<td data-label="Suspended" class="num">1</td>' in row


def test_list_runs_a_constant_number_of_queries(admin, sim, packages, fixed_clock):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin.get("/office/routers/").status_code == 200
        return len(ctx.captured_queries)

    first = create_router(name="r0", host="127.0.0.1", port=sim.port, username="admin", password=PASSWORD)
    ReconcileRun.objects.create(router=first, started_at=fixed_clock.now(), online_unpaid=["x"])
    baseline = count()
    for i in range(1, 8):
        r = create_router(name=f"r{i}", host="127.0.0.1", port=sim.port, username="admin", password=PASSWORD)
        ReconcileRun.objects.create(router=r, started_at=fixed_clock.now(), unknown_on_router=["a", "b"])
        add_subscriber(packages["home"], f"user{i}", router=r, n=i)
    assert count() == baseline


def test_detail_shows_health_runs_and_enforcement(admin, sim, router, packages, fixed_clock):
    sub = add_subscriber(packages["home"], "alice", router=router, n=1)
    update_subscriber(subscriber_id=sub.pk, today=fixed_clock.now().date(), status="suspended")
    Router.objects.filter(pk=router.pk).update(last_error="timeout: no answer", consecutive_failures=2)
    ReconcileRun.objects.create(router=router, started_at=fixed_clock.now(), paid_but_suspended=["zed"], repaired=3)

    html = admin.get(f"/office/routers/{router.pk}/").content.decode()

    assert "timeout: no answer" in html and "failing (2 times)" in html
    assert "Alice" in html and "Suspend" in html  # the enforcement action
    assert 'title="zed"' in html
    assert "password set" in html and PASSWORD not in html


def test_unknown_router_is_404(admin):
    assert admin.get("/office/routers/999/").status_code == 404
    assert admin.post("/office/routers/999/test").status_code == 404


# -- test connection ----------------------------------------------------------------------------

def test_connection_test_against_the_simulator(admin, sim, router):
    response = follow(admin, f"/office/routers/{router.pk}/test")

    assert any("identity core-dhanmondi, RouterOS 7.16.2" in m for m in messages_of(response))
    stored = Router.objects.get(pk=router.pk)
    assert stored.identity == "core-dhanmondi" and stored.last_ok_at is not None and stored.healthy
    event = AuditEvent.objects.get(action="router.test")
    assert event.after["reachable"] is True and event.actor_name == "admin-user"
    assert sim.connections_total >= 1


def test_connection_test_with_a_wrong_password_says_the_login_was_refused(admin, sim):
    bad = create_router(name="core-1", host="127.0.0.1", port=sim.port, username="admin", password="wrong")
    response = follow(admin, f"/office/routers/{bad.pk}/test")
    text = " ".join(messages_of(response))
    assert "refused the login" in text and "invalid user name or password" in text
    assert Router.objects.get(pk=bad.pk).consecutive_failures == 1


def test_connection_test_against_a_closed_port_is_a_clear_error(admin, db):
    closed = create_router(name="gone", host="127.0.0.1", port=free_port(), username="admin", password=PASSWORD)
    response = follow(admin, f"/office/routers/{closed.pk}/test")
    text = " ".join(messages_of(response))
    assert "could not connect" in text and "refused" in text.lower()
    stored = Router.objects.get(pk=closed.pk)
    assert stored.consecutive_failures == 1 and stored.last_ok_at is None and stored.identity == ""


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for s in held:
        s.close()
    server.close()


def test_connection_test_of_a_silent_router_times_out(admin, db, silent_port, monkeypatch):
    monkeypatch.setattr(router_views, "ROUTER_TIMEOUT", 0.5)
    mute = create_router(name="mute", host="127.0.0.1", port=silent_port, username="admin", password=PASSWORD)
    response = follow(admin, f"/office/routers/{mute.pk}/test")
    assert "did not answer in time" in " ".join(messages_of(response))


# -- drift ----------------------------------------------------------------------------------

def test_drift_lists_differences_and_changes_nothing(admin, sim, router, packages, fixed_clock):
    alice = add_subscriber(packages["home"], "alice", router=router, n=1)
    add_subscriber(packages["pro"], "bob", router=router, n=2)
    add_subscriber(packages["home"], "carol", router=router, n=3)
    update_subscriber(subscriber_id=alice.pk, today=fixed_clock.now().date(), status="suspended")
    sim.add_secret("alice", profile=HOME)
    sim.add_active("alice", "10.1.1.5")
    sim.add_secret("bob", profile=HOME)  # on the wrong package's profile
    sim.add_secret("stranger", profile=HOME)
    before = sim.state()
    events = AuditEvent.objects.count()

    html = admin.get(f"/office/routers/{router.pk}/drift/").content.decode()

    assert "online unpaid" in html and "alice" in html
    assert "bob" in html and PRO in html
    assert "carol" in html and "missing on the router" in html
    assert "stranger" in html and "unknown to billing" in html
    assert sim.state() == before
    assert ReconcileRun.objects.count() == 0 and AuditEvent.objects.count() == events


def test_drift_of_an_unreachable_router_shows_the_error(admin, db):
    closed = create_router(name="gone", host="127.0.0.1", port=free_port(), username="admin", password=PASSWORD)
    response = admin.get(f"/office/routers/{closed.pk}/drift/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "could not be read" in html and "could not connect" in html and "Nothing was changed" in html


def test_drift_of_a_silent_router_times_out(admin, db, silent_port, monkeypatch):
    monkeypatch.setattr(router_views, "ROUTER_TIMEOUT", 0.5)
    mute = create_router(name="mute", host="127.0.0.1", port=silent_port, username="admin", password=PASSWORD)
    assert "did not answer in time" in admin.get(f"/office/routers/{mute.pk}/drift/").content.decode()


# -- reconcile now --------------------------------------------------------------------------

def test_reconcile_now_repairs_records_and_audits(admin, sim, router, packages, fixed_clock):
    alice = add_subscriber(packages["home"], "alice", router=router, n=1)
    update_subscriber(subscriber_id=alice.pk, today=fixed_clock.now().date(), status="suspended")
    sim.add_secret("alice", profile=HOME)
    sim.add_active("alice", "10.1.1.5")

    response = follow(admin, f"/office/routers/{router.pk}/reconcile")

    assert any("1 repaired" in m and "1 online unpaid" in m for m in messages_of(response))
    assert sim.secret("alice")["profile"] == SUSPENDED
    run = ReconcileRun.objects.get()
    event = AuditEvent.objects.get(action="router.reconcile")
    assert event.after["run"] == run.pk and event.after["repaired"] == 1 and event.after["online_unpaid"] == 1


def test_reconcile_now_against_a_closed_port_changes_nothing_but_reports(admin, packages, fixed_clock):
    closed = create_router(name="gone", host="127.0.0.1", port=free_port(), username="admin", password=PASSWORD)
    sub = add_subscriber(packages["home"], "alice", router=closed, n=1)
    before = Subscriber.objects.values().get(pk=sub.pk)

    response = follow(admin, f"/office/routers/{closed.pk}/reconcile")

    assert any("Reconcile failed" in m and "router unavailable (connect)" in m for m in messages_of(response))
    assert Subscriber.objects.values().get(pk=sub.pk) == before
    run = ReconcileRun.objects.get()
    assert run.error and run.repaired == 0
    assert AuditEvent.objects.get(action="router.reconcile").after["ok"] is False


def test_reconcile_now_is_refused_for_an_inactive_router(admin, sim, router):
    Router.objects.filter(pk=router.pk).update(is_active=False)
    response = follow(admin, f"/office/routers/{router.pk}/reconcile")
    assert any("not active" in m for m in messages_of(response))
    assert ReconcileRun.objects.count() == 0 and sim.connections_total == 0


# -- import ---------------------------------------------------------------------------------

def test_import_preview_then_confirm(admin, sim, router, packages):
    sim.add_secret("rahim", profile=HOME, comment="Rahim Uddin 01712-345678")
    sim.add_secret("karim", profile=PRO, comment="Karim 01811111111")
    sim.add_secret("nophone", profile=HOME, comment="no number here")
    sim.add_profile("weird")
    sim.add_secret("oddprofile", profile="weird", comment="X 01911111111")
    sim.add_secret("off", profile=HOME, comment="Off 01611111111", disabled=True)

    page = admin.get(f"/office/routers/{router.pk}/import/", {"preview": "1", "phone_from_comment": "on"})
    html = page.content.decode()

    assert "2 subscribers would be created" in html
    assert "Rahim Uddin" in html and "+8801712345678" in html
    assert "no phone number" in html and "matches no package" in html and "disabled" in html
    assert Subscriber.objects.count() == 0  # a preview writes nothing

    response = follow(admin, f"/office/routers/{router.pk}/import", {
        "phone_from_comment": "on", "maps": "", "default_package": "", "placeholder_phone": "",
        "username": ["rahim", "karim"],
    })
    assert any("Created 2 subscribers" in m for m in messages_of(response))
    rahim = Subscriber.objects.get(pppoe_username="rahim")
    assert rahim.name == "Rahim Uddin" and rahim.router_id == router.pk and rahim.package == packages["home"]
    event = AuditEvent.objects.get(action="router.import")
    assert sorted(event.after["usernames"]) == ["karim", "rahim"]


def test_import_confirm_creates_only_what_was_previewed(admin, sim, router, packages):
    sim.add_secret("rahim", profile=HOME, comment="Rahim 01712345678")
    sim.add_secret("late", profile=HOME, comment="Late 01712345679")  # appeared after the preview
    follow(admin, f"/office/routers/{router.pk}/import", {"phone_from_comment": "on", "username": ["rahim"]})
    assert list(Subscriber.objects.values_list("pppoe_username", flat=True)) == ["rahim"]


def test_import_from_an_unreachable_router_changes_nothing(admin, packages):
    closed = create_router(name="gone", host="127.0.0.1", port=free_port(), username="admin", password=PASSWORD)
    html = admin.get(f"/office/routers/{closed.pk}/import/", {"preview": "1"}).content.decode()
    assert "could not be read" in html and "could not connect" in html
    response = follow(admin, f"/office/routers/{closed.pk}/import", {"username": ["rahim"]})
    assert any("Nothing imported" in m for m in messages_of(response))
    assert Subscriber.objects.count() == 0 and not AuditEvent.objects.filter(action="router.import").exists()


def test_import_with_a_bad_map_is_refused(admin, sim, router, packages):
    html = admin.get(f"/office/routers/{router.pk}/import/", {"preview": "1", "maps": "home-10M=No Such"}).content.decode()
    assert "no package named" in html and "would be created" not in html


# -- add and edit ---------------------------------------------------------------------------

def _form(sim, **overrides) -> dict:
    data = {
        "name": "core-9", "host": "127.0.0.1", "port": str(sim.port), "username": "admin", "password": PASSWORD,
        "method": "routeros", "suspended_profile": "Suspended_Profile", "suspended_address_list": "suspended",
        "coa_port": "3799", "is_active": "on", "tls_verify": "on",
    }
    return data | overrides


def test_add_router_stores_the_password_encrypted_and_never_shows_it(admin, sim):
    response = admin.post("/office/routers/add/", _form(sim))
    assert response.status_code == 303
    router = Router.objects.get(name="core-9")
    assert response["Location"] == f"/office/routers/{router.pk}/"
    assert router.password == PASSWORD and PASSWORD not in router.password_encrypted

    for path in (f"/office/routers/{router.pk}/edit/", f"/office/routers/{router.pk}/", "/office/routers/"):
        assert PASSWORD not in admin.get(path).content.decode()
    event = AuditEvent.objects.get(action="router.create")
    assert event.after["password_set"] is True and event.after["name"] == "core-9"
    assert PASSWORD not in str(event.before) + str(event.after) + event.summary


def test_edit_with_a_blank_password_keeps_it_and_a_new_one_replaces_it(admin, sim, router):
    response = admin.post(f"/office/routers/{router.pk}/edit/", _form(sim, name="core-1b", password=""))
    assert response.status_code == 303
    stored = Router.objects.get(pk=router.pk)
    assert stored.name == "core-1b" and stored.password == PASSWORD

    admin.post(f"/office/routers/{router.pk}/edit/", _form(sim, name="core-1b", password="n3w-secret"))
    assert Router.objects.get(pk=router.pk).password == "n3w-secret"

    events = list(AuditEvent.objects.filter(action="router.update").order_by("id"))
    assert len(events) == 2
    assert events[0].before["name"] == "core-1" and events[0].after["name"] == "core-1b"
    assert "password" not in events[0].summary and "password" in events[1].summary
    for event in events:
        assert "n3w-secret" not in str(event.before) + str(event.after) + event.summary
        assert PASSWORD not in str(event.before) + str(event.after) + event.summary


def test_add_router_with_problems_shows_them_on_the_form(admin, sim, router):
    response = admin.post("/office/routers/add/", _form(sim, name="core-1"))
    assert response.status_code == 422 and "already exists" in response.content.decode()
    response = admin.post("/office/routers/add/", _form(sim, host="http://x/", port="70000"))
    html = response.content.decode()
    assert response.status_code == 422 and "65535" in html
    assert PASSWORD not in html  # the typed password is not echoed back
    response = admin.post("/office/routers/add/", _form(sim, host="http://x/"))
    assert "host must be an IP address" in response.content.decode()
    assert Router.objects.count() == 1


def test_markup_in_router_name_and_error_is_escaped(admin, sim, packages, fixed_clock):
    r = create_router(name=XSS, host="127.0.0.1", port=sim.port, username="admin", password=PASSWORD)
    Router.objects.filter(pk=r.pk).update(last_error=XSS, identity=XSS)
    sim.add_secret("evil", profile=HOME, comment=f"{XSS} 01712345678")
    ReconcileRun.objects.create(router=r, started_at=fixed_clock.now(), error=XSS, unknown_on_router=[XSS])
    pages = [
        "/office/routers/", f"/office/routers/{r.pk}/", f"/office/routers/{r.pk}/edit/", f"/office/routers/{r.pk}/drift/",
        f"/office/routers/{r.pk}/import/?preview=1&phone_from_comment=on",
    ]
    for page in pages:
        html = admin.get(page).content.decode()
        assert XSS not in html, page
        assert "&lt;script&gt;" in html, page


@pytest.mark.parametrize("action", ["test", "reconcile", "import"])
def test_router_actions_without_a_csrf_token_are_refused(sim, router, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    events = AuditEvent.objects.count()
    response = client.post(f"/office/routers/{router.pk}/{action}", {"username": ["x"]})
    assert response.status_code == 403
    assert AuditEvent.objects.count() == events and sim.connections_total == 0


def test_router_forms_without_a_csrf_token_are_refused(sim, router):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    assert client.post("/office/routers/add/", _form(sim)).status_code == 403
    assert client.post(f"/office/routers/{router.pk}/edit/", _form(sim, name="x")).status_code == 403
    assert list(Router.objects.values_list("name", flat=True)) == ["core-1"]
