"""The audit page and ``GET /api/v1/audit``: admin only, filters, keyset paging, the same
queries however many events, every value escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.api.tokens import issue_token
from ispbill.audit.services import Target, build, record, record_many

from ..api.api_support import JsonClient
from ..backoffice.office_support import NO_ROLE, ROLES, make_staff

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _many(n: int, *, start=T0, action="subscriber.update", **kwargs):
    record_many(
        build(action=action, at=start + timedelta(minutes=i), target=Target("subscriber", i + 1, f"Sub {i}"),
              before={"area": f"a{i}"}, after={"area": f"b{i}"}, summary=f"event {i}", **kwargs)
        for i in range(n)
    )


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "superuser"])
def test_only_admins_see_the_page(client_for, role):
    response = client_for(role).get("/office/audit/")
    assert response.status_code == (200 if role in ("admin", "superuser") else 403)


def test_the_nav_link_shows_for_admins_only(client_for):
    assert b'href="/office/audit/"' in client_for("admin").get("/office/").content
    assert b'href="/office/audit/"' not in client_for("billing").get("/office/").content


@pytest.mark.parametrize("params", [{}, {"q": "event", "actor": "system", "action": "subscriber.", "date_from": "2026-11-01",
                                        "date_to": "2026-12-31", "target_type": "subscriber"}])
def test_the_page_runs_the_same_queries_for_few_and_many_events(client_for, params):
    client = client_for("admin")
    _many(3)
    client.get("/office/audit/", params)  # warm up (session, permissions cache)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/office/audit/", params).status_code == 200
    _many(120, start=T0 + timedelta(days=1))
    with CaptureQueriesContext(connection) as many:
        response = client.get("/office/audit/", params)
    assert len(response.context["page"].rows) == 50
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


def test_everything_an_event_holds_is_escaped(client_for):
    record(action="subscriber.update", at=T0, target=Target("subscriber", 1, XSS), summary=XSS,
           before={XSS: XSS}, after={XSS: {"nested": XSS}})
    html = client_for("admin").get("/office/audit/").content.decode()
    assert XSS not in html and "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_filters(client_for, fixed_clock):
    admin = make_staff("superuser")
    record(action="payment.refund", at=T0, user=admin, target=Target("payment", 7, "Payment 7"), summary="customer asked")
    record(action="payment.record", at=T0 + timedelta(hours=1), target=Target("payment", 8, "Payment 8"))
    # 20:00 UTC on 25 Nov is 02:00 on 26 Nov in Dhaka.
    record(action="subscriber.suspend", at=datetime(2026, 11, 25, 20, 0, tzinfo=UTC), target=Target("subscriber", 3, "Rahim"))
    client = client_for("admin")

    def shown(**params) -> list[str]:
        return [e.action for e in client.get("/office/audit/", params).context["page"].rows]

    assert shown() == ["subscriber.suspend", "payment.record", "payment.refund"]
    assert shown(q="customer") == ["payment.refund"]
    assert shown(q="rahim") == ["subscriber.suspend"]
    assert shown(q="root") == ["payment.refund"]  # the actor's name
    assert shown(actor=str(admin.pk)) == ["payment.refund"]
    assert shown(actor="system") == ["subscriber.suspend", "payment.record"]
    assert shown(action="payment.") == ["payment.record", "payment.refund"]
    assert shown(action="payment.refund") == ["payment.refund"]
    assert shown(target_type="payment", target_id="8") == ["payment.record"]
    assert shown(subscriber="3") == ["subscriber.suspend"]
    assert shown(date_from="2026-11-26") == ["subscriber.suspend"]
    assert shown(date_to="2026-11-25") == ["payment.record", "payment.refund"]
    assert shown(date_from="bad", target_id="x", actor="<b>") == shown()  # malformed filters are ignored


def test_keyset_paging_walks_every_event_once_both_ways(client_for):
    # Events out of id order in time, and ties on the instant: paging follows (at, id).
    _many(60)
    _many(60, start=T0 - timedelta(days=1))
    record_many(build(action="tie.event", at=T0, summary=f"tie {i}") for i in range(5))
    client = client_for("admin")
    seen, pages, params = [], [], {}
    while True:
        page = client.get("/office/audit/", params).context["page"]
        pages.append(page)
        seen.extend((e.at, e.pk) for e in page.rows)
        if not page.next_after:
            break
        params = {"after": page.next_after}
    assert len(seen) == 125 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert pages[-1].prev_before
    back = client.get("/office/audit/", {"before": pages[-1].prev_before}).context["page"]
    assert [e.pk for e in back.rows] == [e.pk for e in pages[-2].rows]


def test_targets_link_to_their_pages(client_for, world):
    sub, admin = world["sub"], client_for("admin")
    admin.post(f"/office/subscribers/{sub.pk}/exempt", {"never_suspend": "1"})
    html = admin.get("/office/audit/").content.decode()
    assert f'href="/office/subscribers/{sub.pk}/"' in html
    assert "never_suspend" in html


def test_the_subscriber_page_shows_its_activity_to_admins(client_for, world):
    sub = world["sub"]
    admin = client_for("admin")
    admin.post(f"/office/subscribers/{sub.pk}/status", {"action": "suspend", "reason": "asked by the owner"})
    html = admin.get(f"/office/subscribers/{sub.pk}/").content.decode()
    assert "subscriber.suspend" in html and "asked by the owner" in html
    assert "subscriber.suspend" not in client_for("support").get(f"/office/subscribers/{sub.pk}/").content.decode()


# -- the API -------------------------------------------------------------------------------

def test_the_api_needs_view_audit(db, fixed_clock):
    billing = make_staff("billing")
    assert JsonClient(issue_token(username=billing.username)).get("/audit").status_code == 403
    assert JsonClient().get("/audit").status_code == 401


def test_the_api_filters_and_pages_by_cursor(db, fixed_clock):
    admin = make_staff("admin")
    api = JsonClient(issue_token(username=admin.username))
    _many(7)
    record(action="payment.refund", at=T0 + timedelta(days=2), user=admin, target=Target("payment", 9, "P9"),
           before={"refunded_paisa": 0}, after={"refunded_paisa": 500})
    body = api.get("/audit", action="payment.").json()
    assert [e["action"] for e in body["items"]] == ["payment.refund"] and body["next_cursor"] is None
    item = body["items"][0]
    assert item["actor_kind"] == "staff" and item["actor_name"] == admin.username and item["target_id"] == 9
    assert item["before"] == {"refunded_paisa": 0} and item["after"] == {"refunded_paisa": 500}

    ids, cursor = [], None
    while True:
        params = {"action": "subscriber.", "limit": 3, **({"cursor": cursor} if cursor else {})}
        body = api.get("/audit", **params).json()
        ids.extend(e["id"] for e in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == 7 == len(set(ids)) and ids == sorted(ids, reverse=True)
    assert api.get("/audit", limit=0).status_code == 422
    assert [e["summary"] for e in api.get("/audit", q="event 3").json()["items"]] == ["event 3"]
    assert len(api.get("/audit", date_from="2026-11-22", date_to="2026-11-22").json()["items"]) == 1
