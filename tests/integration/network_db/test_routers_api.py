"""``/api/v1/routers``: CRUD with write-only secrets, the connection test, drift and
reconcile-now; the subscribers' ``router`` field."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from ispbill.api.tokens import issue_token
from ispbill.network.models import ReconcileRun, Router

from ..api.api_support import JsonClient, assert_error
from .conftest import HOME, SUSPENDED, add_subscriber, free_port

PASSWORD = "s3cret-pw"


@pytest.fixture
def api(db, fixed_clock) -> JsonClient:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com")  # the API checks roles
    return JsonClient(issue_token(username=user.username))


def new_router(sim, **overrides) -> dict:
    return {"name": "core-1", "host": "127.0.0.1", "port": sim.port, "username": "admin", "password": PASSWORD} | overrides


def create(api, body) -> dict:
    response = api.post("/routers", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_get_list_patch_and_the_password_never_comes_back(api, sim):
    response = api.post("/routers", new_router(sim, radius_secret="radius-shh"))

    assert response.status_code == 201, response.content
    assert PASSWORD not in response.content.decode() and "radius-shh" not in response.content.decode()
    created = response.json()
    rid = created["id"]
    assert created == {
        "id": rid, "name": "core-1", "host": "127.0.0.1", "port": sim.port, "use_tls": False, "tls_verify": True,
        "username": "admin", "password_set": True, "method": "routeros", "suspended_profile": "Suspended_Profile",
        "suspended_address_list": "suspended", "radius_secret_set": True, "coa_port": 3799, "is_active": True,
        "healthy": True, "last_ok_at": None, "last_error": "", "last_error_at": None, "consecutive_failures": 0,
        "identity": "", "version": "", "subscribers": 0,
    }
    stored = Router.objects.get(pk=rid)
    assert stored.password_encrypted and PASSWORD not in stored.password_encrypted
    assert stored.password == PASSWORD  # encrypted at rest, readable by the driver
    assert stored.radius_secret_encrypted != "radius-shh" and stored.radius_secret == "radius-shh"

    assert api.get(f"/routers/{rid}").json() == created
    listing = api.get("/routers")
    assert listing.json() == {"items": [created], "count": 1}
    assert PASSWORD not in listing.content.decode()

    # Without a password the stored one stays; a new one replaces it; "" clears it.
    patched = api.patch(f"/routers/{rid}", {"name": "core-dhanmondi", "suspended_profile": "Unpaid"})
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"] == "core-dhanmondi" and patched.json()["suspended_profile"] == "Unpaid"
    assert Router.objects.get(pk=rid).password == PASSWORD
    assert api.patch(f"/routers/{rid}", {"password": "n3w"}).json()["password_set"] is True
    assert Router.objects.get(pk=rid).password == "n3w"
    assert api.patch(f"/routers/{rid}", {"password": ""}).json()["password_set"] is False
    assert Router.objects.get(pk=rid).password_encrypted == ""
    assert "password" not in api.get(f"/routers/{rid}").json()


def test_validation_errors(api, sim):
    create(api, new_router(sim))

    assert_error(api.post("/routers", new_router(sim)), 409, "duplicate_router")
    assert_error(api.post("/routers", new_router(sim, name="r2", port=0)), 422, "invalid_port", "port")
    assert_error(api.post("/routers", new_router(sim, name="r2", port=70000)), 422, "invalid_port", "port")
    assert_error(api.post("/routers", new_router(sim, name="r2", coa_port=-1)), 422, "invalid_port", "coa_port")
    assert_error(api.post("/routers", new_router(sim, name="r2", host="http://10.0.0.1/")), 422, "invalid_host", "host")
    assert_error(api.post("/routers", new_router(sim, name="r2", username="")), 422, "username_required", "username")
    assert_error(api.post("/routers", new_router(sim, name="r2", method="radius")), 422, "radius_secret_required")
    assert_error(api.post("/routers", new_router(sim, name="r2", method="snmp")), 422, "invalid_input", "method")
    assert_error(api.post("/routers", new_router(sim, name="r2", secret="x")), 422, "invalid_input")
    assert_error(api.post("/routers", new_router(sim, name=" ")), 422, "name_required", "name")
    other = create(api, new_router(sim, name="r2"))
    assert_error(api.patch(f"/routers/{other['id']}", {"name": "core-1"}), 409, "duplicate_router")
    assert_error(api.patch(f"/routers/{other['id']}", {"port": 65536}), 422, "invalid_port", "port")
    assert_error(api.patch(f"/routers/{other['id']}", {"password_set": False}), 422, "invalid_input")
    assert_error(api.get("/routers/999999"), 404, "not_found")
    assert Router.objects.count() == 2


def test_anonymous_clients_are_refused(db, fixed_clock):
    assert_error(JsonClient().get("/routers"), 401, "unauthorized")
    assert_error(JsonClient().post("/routers", {"name": "x", "host": "h"}), 401, "unauthorized")


def test_the_connection_test_reports_identity_and_version_and_records_health(api, sim, fixed_clock):
    rid = create(api, new_router(sim))["id"]

    response = api.post(f"/routers/{rid}/test")

    assert response.status_code == 200, response.content
    assert response.json() == {"reachable": True, "identity": "core-dhanmondi", "version": "7.16.2", "error": None}
    body = api.get(f"/routers/{rid}").json()
    assert (body["healthy"], body["identity"], body["version"]) == (True, "core-dhanmondi", "7.16.2")
    assert body["last_ok_at"] == "2026-11-25T10:00:00Z"


def test_the_connection_test_of_a_closed_port_marks_the_router_unhealthy(api, sim, fixed_clock):
    rid = create(api, new_router(sim, port=free_port()))["id"]

    first = api.post(f"/routers/{rid}/test").json()
    second = api.post(f"/routers/{rid}/test").json()

    assert first["reachable"] is False and first["identity"] is None and first["version"] is None
    assert "connect" in first["error"] and second["reachable"] is False
    body = api.get(f"/routers/{rid}").json()
    assert (body["healthy"], body["consecutive_failures"], body["last_ok_at"]) == (False, 2, None)
    assert body["last_error"] and body["last_error_at"] == "2026-11-25T10:00:00Z"

    # Pointed at the right port, the next test succeeds and the router is healthy again.
    api.patch(f"/routers/{rid}", {"port": sim.port})
    assert api.post(f"/routers/{rid}/test").json()["reachable"] is True
    body = api.get(f"/routers/{rid}").json()
    assert (body["healthy"], body["consecutive_failures"]) == (True, 0)


def test_a_wrong_password_is_reported_as_such(api, sim):
    rid = create(api, new_router(sim, password="wrong"))["id"]
    result = api.post(f"/routers/{rid}/test").json()
    assert result["reachable"] is False and result["error"].startswith("auth:")


def test_subscribers_carry_their_router(api, sim, packages):
    rid = create(api, new_router(sim))["id"]
    body = {
        "name": "Rahim Uddin", "phone": "01712345678", "pppoe_username": "rahim", "package": packages["home"].pk,
        "router": rid,
    }
    created = api.post("/subscribers", body)
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    assert created.json()["router"] == rid
    assert api.get(f"/routers/{rid}").json()["subscribers"] == 1
    assert_error(api.post("/subscribers", body | {"pppoe_username": "karim", "router": 999999}), 422, "unknown_router", "router")
    assert_error(api.patch(f"/subscribers/{sid}", {"router": 999999}), 422, "unknown_router", "router")

    assert api.patch(f"/subscribers/{sid}", {"notes": "x"}).json()["router"] == rid  # untouched when absent
    assert api.patch(f"/subscribers/{sid}", {"router": None}).json()["router"] is None
    assert api.get(f"/routers/{rid}").json()["subscribers"] == 0
    assert api.patch(f"/subscribers/{sid}", {"router": rid}).json()["router"] == rid


def test_reconcile_now_and_the_latest_drift_report(api, sim, packages):
    rid = create(api, new_router(sim))["id"]
    router = Router.objects.get(pk=rid)
    add_subscriber(packages["home"], "paid", router=router, n=1)
    add_subscriber(packages["home"], "ghost", router=router, n=2)
    sim.add_secret("paid", profile=SUSPENDED)
    sim.add_secret("stranger", profile=HOME)
    assert_error(api.get(f"/routers/{rid}/drift"), 404, "not_reconciled")

    response = api.post(f"/routers/{rid}/reconcile")

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["ok"] is True and report["error"] == ""
    assert report["paid_but_suspended"] == ["paid"]
    assert report["unknown_on_router"] == ["stranger"]
    assert report["missing_on_router"] == ["ghost"]
    assert report["online_unpaid"] == []
    assert report["counts"] == {"online_unpaid": 0, "unknown_on_router": 1, "paid_but_suspended": 1, "missing_on_router": 1}
    assert (report["secrets"], report["online"], report["repaired"]) == (2, 0, 1)
    assert sim.secret("paid")["profile"] == HOME
    assert api.get(f"/routers/{rid}/drift").json() == report

    again = api.post(f"/routers/{rid}/reconcile").json()
    assert again["id"] != report["id"] and again["paid_but_suspended"] == [] and again["repaired"] == 0
    assert api.get(f"/routers/{rid}/drift").json()["id"] == again["id"]
    assert ReconcileRun.objects.filter(router_id=rid).count() == 2


def test_reconciling_an_unreachable_router_answers_with_the_error(api, sim):
    rid = create(api, new_router(sim, port=free_port()))["id"]
    report = api.post(f"/routers/{rid}/reconcile").json()
    assert report["ok"] is False and "router unavailable" in report["error"]
    assert api.get(f"/routers/{rid}").json()["healthy"] is False


def test_an_inactive_router_is_not_reconciled(api, sim):
    rid = create(api, new_router(sim, is_active=False))["id"]
    assert_error(api.post(f"/routers/{rid}/reconcile"), 409, "router_inactive")
    assert api.get("/routers", active=False).json()["count"] == 1
    assert api.get("/routers", active=True).json()["count"] == 0
