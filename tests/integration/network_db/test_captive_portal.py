"""``/portal``: the captive "please pay" page, by source address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client

from ispbill.billing.models import BillingSettings
from ispbill.billing.services import run_billing
from ispbill.network.models import NetworkState
from ispbill.network.reconcile import reconcile_router
from ispbill.payments import links

from .conftest import HOME, NOV_1, SUSPENDED, add_subscriber, make_router

pytestmark = pytest.mark.django_db
BILLED_AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def world(sim, router, packages, fixed_clock):
    """Sumon is suspended and online in the suspended pool; Ayesha pays and is online.
    Their addresses are known from a reconcile run."""
    settings = BillingSettings.load()
    settings.isp_name, settings.hotline = "Dhanmondi Net", "09610-123456"
    settings.save()
    sumon = add_subscriber(packages["home"], "sumon", router=router, n=1, name="Sumon Ahmed", status="suspended")
    ayesha = add_subscriber(packages["home"], "ayesha", router=router, n=2, name="Ayesha Siddiqua")
    run_billing(today=NOV_1, now=BILLED_AT)
    sim.add_secret("sumon", profile=SUSPENDED)
    sim.add_secret("ayesha", profile=HOME)
    sim.add_active("sumon", "10.200.0.7")
    sim.add_active("ayesha", "10.1.1.5")
    sim.add_address_list_entry("suspended", "10.200.0.7")
    assert reconcile_router(router, now=fixed_clock.now()).error == ""
    return {"sumon": sumon, "ayesha": ayesha}


def visit(remote: str = "10.200.0.7", **headers):
    response = Client(REMOTE_ADDR=remote).get("/portal", headers=headers)
    return response, response.content.decode()


def assert_private(response):
    for part in ("no-cache", "no-store", "must-revalidate", "private"):
        assert part in response["Cache-Control"], response["Cache-Control"]
    assert response["Referrer-Policy"] == "no-referrer"


def assert_generic(response, html: str):
    assert response.status_code == 200
    assert "Your internet service is suspended" in html and "Please pay your bill" in html
    assert "Dhanmondi Net" in html and "09610-123456" in html
    for secret in ("Sumon", "Ayesha", "sumon", "ayesha", "1,000.00", "1000.00", "/pay/"):
        assert secret not in html, secret
    assert_private(response)


def test_a_suspended_subscriber_sees_their_bill_and_a_way_to_pay(world, fixed_clock):
    response, html = visit("10.200.0.7")

    assert response.status_code == 200
    assert_private(response)
    assert "Your internet service is suspended" in html
    assert "Sumon Ahmed" in html and "Account sumon" in html
    assert 'data-testid="total-due">৳ 1000.00' in html
    assert "Dhanmondi Net" in html and "09610-123456" in html
    [link] = [p for p in html.split('"') if "/pay/" in p]
    token = urlsplit(link).path.removeprefix("/pay/")
    assert links.resolve(token, now=fixed_clock.now()).subscriber_id == world["sumon"].pk
    # The same link on the next visit (one live link per subscriber, as in reminders).
    assert visit("10.200.0.7")[1].count(link) == 1


def test_a_paying_subscriber_sees_their_bill_without_the_suspension_banner(world):
    response, html = visit("10.1.1.5")
    assert "Ayesha Siddiqua" in html and "Your internet service is suspended" not in html


def test_an_unknown_address_gets_the_generic_page(world):
    assert_generic(*visit("10.200.0.99"))
    assert_generic(*visit("2001:db8::1"))


def test_an_address_two_subscribers_share_identifies_nobody(world, sim, packages, fixed_clock):
    # Another router hands out the same private range.
    other = make_router(sim, name="core-2")
    twin = add_subscriber(packages["home"], "twin", router=other, n=3, name="Twin")
    NetworkState.objects.create(subscriber=twin, address="10.200.0.7", address_seen_at=fixed_clock.now())
    response, html = visit("10.200.0.7")
    assert_generic(response, html)
    assert "Twin" not in html


def test_an_address_not_confirmed_for_an_hour_identifies_nobody(world, fixed_clock):
    fixed_clock.advance(timedelta(minutes=59))
    assert "Sumon Ahmed" in visit("10.200.0.7")[1]
    fixed_clock.advance(timedelta(minutes=2))
    assert_generic(*visit("10.200.0.7"))


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(world, monkeypatch):
    monkeypatch.delenv("ISPBILL_TRUSTED_PROXIES", raising=False)
    # Untrusted: the header is the client's own claim, ignored.
    assert_generic(*visit("127.0.0.1", **{"X-Forwarded-For": "10.200.0.7"}))
    assert_generic(*visit("10.200.0.99", **{"X-Forwarded-For": "10.200.0.7"}))

    monkeypatch.setenv("ISPBILL_TRUSTED_PROXIES", "127.0.0.1, 172.16.0.0/12, not-an-ip")
    assert "Sumon Ahmed" in visit("127.0.0.1", **{"X-Forwarded-For": "10.200.0.7"})[1]
    # The right-most address that is not a trusted proxy; what the client put first is ignored.
    assert "Sumon Ahmed" in visit("127.0.0.1", **{"X-Forwarded-For": "10.1.1.5, 10.200.0.7, 172.16.4.4"})[1]
    assert "Ayesha" not in visit("127.0.0.1", **{"X-Forwarded-For": "10.1.1.5, 10.200.0.7"})[1]
    # A trusted proxy that forwards nothing, or garbage, identifies nobody.
    assert_generic(*visit("127.0.0.1"))
    assert_generic(*visit("127.0.0.1", **{"X-Forwarded-For": "10.200.0.7, bogus"}))
    # A request straight from a subscriber's address is still theirs.
    assert "Sumon Ahmed" in visit("10.200.0.7", **{"X-Forwarded-For": "10.1.1.5"})[1]


def test_an_ipv4_mapped_source_address_is_read_as_ipv4(world):
    assert "Sumon Ahmed" in visit("::ffff:10.200.0.7")[1]


def test_names_are_escaped(world, sim, router, packages):
    evil = add_subscriber(packages["home"], "evil", router=router, n=4, name='<script>alert("x")</script>')
    sim.add_secret("evil", profile=HOME)
    sim.add_active("evil", "10.1.1.66")
    reconcile_router(router, now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    assert NetworkState.objects.get(subscriber=evil).address == "10.1.1.66"

    html = visit("10.1.1.66")[1]

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_only_get_and_head(world):
    assert Client(REMOTE_ADDR="10.200.0.7").post("/portal").status_code == 405
    assert Client(REMOTE_ADDR="10.200.0.7").head("/portal").status_code == 200
    assert Client(REMOTE_ADDR="10.200.0.7").get("/portal/").status_code == 200
