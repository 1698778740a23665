"""Payment links and the /pay/<token> page (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import signing

from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing
from ispbill.core.timeutil import isp_zone
from ispbill.payments import links
from ispbill.payments.models import PaymentLink
from ispbill.payments.services import record_payment
from ispbill.plans.services import create_package
from ispbill.subscribers.services import create_subscriber

pytestmark = pytest.mark.django_db

NOV_1 = date(2026, 11, 1)
SALT = "ispbill.payment-link"  # the salt links.py signs with
VALID_DAYS = 30


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=isp_zone()).astimezone(UTC)


def subscriber(package, n: int, name: str):
    return create_subscriber(
        today=NOV_1, name=name, phone=f"0171100000{n}", pppoe_username=f"pl-user-{n}",
        package_id=package.pk, activated_on=NOV_1,
    )


@pytest.fixture
def world(fixed_clock):
    """Two subscribers on different packages, each with November's invoice open."""
    home = create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M")
    office = create_package(name="Office 40M", price=Decimal("1500.00"), rate_limit="40M/40M")
    alice = subscriber(home, 1, "Ayesha Siddiqua")
    bob = subscriber(office, 2, "Bokul Mia")
    run_billing(today=NOV_1, now=at(NOV_1))
    return alice, bob


def link_for(sub, clock) -> PaymentLink:
    return links.current_link(subscriber_id=sub.pk, now=clock.now(), valid_days=VALID_DAYS)


def path_of(link: PaymentLink) -> str:
    return urlsplit(links.url_for(link)).path


def page(client, path: str):
    response = client.get(path)
    return response, response.content.decode()


def assert_private(response):
    cache = response["Cache-Control"]
    for part in ("no-cache", "no-store", "must-revalidate", "private"):
        assert part in cache, cache
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Robots-Tag"] == "noindex"


# -- links ------------------------------------------------------------------------------

def test_billing_left_one_open_invoice_each(world):
    alice, bob = world
    assert list(Invoice.objects.filter(subscriber=alice).values_list("amount_due_paisa", "status")) == [(100_000, "open")]
    assert list(Invoice.objects.filter(subscriber=bob).values_list("amount_due_paisa", "status")) == [(150_000, "open")]


def test_current_link_is_reused_while_seven_days_or_more_are_left(world, fixed_clock):
    alice, bob = world
    t0 = fixed_clock.now()
    first = link_for(alice, fixed_clock)
    assert first.expires_at == t0 + timedelta(days=VALID_DAYS)

    fixed_clock.set(t0 + timedelta(days=10))
    assert link_for(alice, fixed_clock).pk == first.pk
    fixed_clock.set(first.expires_at - timedelta(days=7))  # exactly seven days left
    assert link_for(alice, fixed_clock).pk == first.pk

    fixed_clock.set(first.expires_at - timedelta(days=7) + timedelta(seconds=1))  # fewer than seven
    second = link_for(alice, fixed_clock)
    assert second.pk != first.pk
    assert second.expires_at == fixed_clock.now() + timedelta(days=VALID_DAYS)
    assert link_for(alice, fixed_clock).pk == second.pk  # and the new one is reused in turn

    # Each subscriber has their own link.
    assert link_for(bob, fixed_clock).pk not in (first.pk, second.pk)


def test_current_link_never_reuses_a_revoked_link(world, fixed_clock):
    alice, _ = world
    first = link_for(alice, fixed_clock)
    assert links.revoke(subscriber_id=alice.pk, now=fixed_clock.now()) == 1
    assert link_for(alice, fixed_clock).pk != first.pk


def test_url_is_under_the_public_url(world, fixed_clock):
    alice, _ = world
    link = link_for(alice, fixed_clock)
    url = links.url_for(link)
    assert url.startswith(settings.ISPBILL_PUBLIC_URL + "/pay/")
    token = url.removeprefix(settings.ISPBILL_PUBLIC_URL + "/pay/")
    assert "/" not in token and token == links.token_for(link)
    assert links.resolve(token, now=fixed_clock.now()) == link


# -- the page ---------------------------------------------------------------------------

def test_page_shows_the_right_subscriber_and_amount(client, world, fixed_clock):
    alice, bob = world
    response, html = page(client, path_of(link_for(alice, fixed_clock)))
    assert response.status_code == 200
    assert "Ayesha Siddiqua" in html
    assert "pl-user-1" in html
    assert '<div class="total" data-testid="total-due">৳ 1000.00</div>' in html
    assert "Bokul Mia" not in html
    assert "pl-user-2" not in html
    assert "1500.00" not in html
    assert_private(response)

    response, html = page(client, path_of(link_for(bob, fixed_clock)))
    assert response.status_code == 200
    assert "Bokul Mia" in html and "৳ 1500.00" in html
    assert "Ayesha Siddiqua" not in html and "1000.00" not in html


def test_opening_the_page_is_recorded(client, world, fixed_clock):
    alice, _ = world
    link = link_for(alice, fixed_clock)
    assert link.last_opened_at is None
    fixed_clock.advance(timedelta(hours=2))
    assert client.get(path_of(link)).status_code == 200
    link.refresh_from_db()
    assert link.last_opened_at == fixed_clock.now()


def test_partial_payment_shows_what_is_left(client, world, fixed_clock):
    alice, _ = world
    record_payment(subscriber_id=alice.pk, amount=Decimal("400.50"), method="cash", received_at=fixed_clock.now())
    response, html = page(client, path_of(link_for(alice, fixed_clock)))
    assert response.status_code == 200
    assert "৳ 599.50" in html
    assert "1000.00" not in html


def test_nothing_due(client, world, fixed_clock):
    alice, _ = world
    record_payment(subscriber_id=alice.pk, amount=Decimal("1000.00"), method="cash", received_at=fixed_clock.now())
    response, html = page(client, path_of(link_for(alice, fixed_clock)))
    assert response.status_code == 200
    assert "Nothing is due" in html
    assert "Amount due" not in html
    assert "Advance credit" not in html
    assert "Ayesha Siddiqua" in html


def test_advance_credit_is_shown(client, world, fixed_clock):
    alice, _ = world
    record_payment(subscriber_id=alice.pk, amount=Decimal("1200.00"), method="cash", received_at=fixed_clock.now())
    _, html = page(client, path_of(link_for(alice, fixed_clock)))
    assert "Nothing is due" in html
    assert "Advance credit: ৳ 200.00" in html


def test_subscriber_with_no_invoice_yet(client, world, fixed_clock):
    home = create_package(name="Starter", price=Decimal("500.00"))
    carol = create_subscriber(
        today=NOV_1, name="Chameli Akter", phone="01711000003", pppoe_username="pl-user-3",
        package_id=home.pk, activated_on=date(2027, 1, 1),
    )
    response, html = page(client, path_of(link_for(carol, fixed_clock)))
    assert response.status_code == 200
    assert "Nothing is due" in html and "Chameli Akter" in html


def test_subscriber_name_is_escaped(client, world, fixed_clock):
    home = create_package(name="Starter", price=Decimal("500.00"))
    mallory = create_subscriber(
        today=NOV_1, name="<script>alert(1)</script>", phone="01711000004", pppoe_username="pl-user-4",
        package_id=home.pk, activated_on=NOV_1,
    )
    run_billing(today=NOV_1, now=at(NOV_1))
    response, html = page(client, path_of(link_for(mallory, fixed_clock)))
    assert response.status_code == 200
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "৳ 500.00" in html


# -- links that do not work -------------------------------------------------------------

def assert_not_valid(response, html, *subs):
    assert response.status_code == 404
    assert "Link not valid" in html
    assert "This payment link is not valid." in html
    for sub in subs:
        assert sub.name not in html
        assert sub.pppoe_username not in html
    assert "৳" not in html
    assert_private(response)


def _flip(ch: str) -> str:
    return "B" if ch != "B" else "C"


@pytest.mark.parametrize("position", [0, 5, -1, "separator"])
def test_one_changed_character_is_rejected(client, world, fixed_clock, position):
    alice, bob = world
    token = links.token_for(link_for(alice, fixed_clock))
    if position == "separator":
        i = token.index(":")
        tampered = token[: i + 1] + _flip(token[i + 1]) + token[i + 2:]
    else:
        i = position % len(token)
        tampered = token[:i] + _flip(token[i]) + token[i + 1:]
    assert tampered != token
    response, html = page(client, f"/pay/{tampered}")
    assert_not_valid(response, html, alice, bob)


def test_token_re_signed_with_another_key_is_rejected(client, world, fixed_clock):
    alice, bob = world
    link = link_for(alice, fixed_clock)
    forged = signing.dumps([link.pk, bob.pk], key="not-the-secret-key", salt=SALT, compress=False)
    response, html = page(client, f"/pay/{forged}")
    assert_not_valid(response, html, alice, bob)
    same_ids = signing.dumps([link.pk, alice.pk], key="not-the-secret-key", salt=SALT, compress=False)
    response, html = page(client, f"/pay/{same_ids}")
    assert_not_valid(response, html, alice, bob)


def test_token_signed_for_another_purpose_is_rejected(client, world, fixed_clock):
    alice, bob = world
    link = link_for(alice, fixed_clock)
    other_salt = signing.dumps([link.pk, alice.pk], salt="something-else", compress=False)
    response, html = page(client, f"/pay/{other_salt}")
    assert_not_valid(response, html, alice, bob)


def test_link_of_one_subscriber_with_the_id_of_another_is_rejected(client, world, fixed_clock):
    """Even a correctly signed token must name the link's own subscriber."""
    alice, bob = world
    link_a = link_for(alice, fixed_clock)
    link_for(bob, fixed_clock)
    mixed = signing.dumps([link_a.pk, bob.pk], salt=SALT, compress=False)
    response, html = page(client, f"/pay/{mixed}")
    assert_not_valid(response, html, alice, bob)


@pytest.mark.parametrize("token", ["nonsense", "a:b:c", "WzEsMl0", "W10:1xWFbO:x", "%00", "..", "-"])
def test_garbage_tokens_are_rejected(client, world, token):
    alice, bob = world
    response, html = page(client, f"/pay/{token}")
    assert_not_valid(response, html, alice, bob)


def test_signed_token_for_a_missing_link_is_rejected(client, world):
    alice, bob = world
    response, html = page(client, "/pay/" + signing.dumps([999_999, alice.pk], salt=SALT, compress=False))
    assert_not_valid(response, html, alice, bob)


def test_expired_link(client, world, fixed_clock):
    alice, bob = world
    link = link_for(alice, fixed_clock)
    fixed_clock.set(link.expires_at - timedelta(seconds=1))
    assert client.get(path_of(link)).status_code == 200

    fixed_clock.set(link.expires_at)
    response, html = page(client, path_of(link))
    assert response.status_code == 410
    assert "Link expired" in html and "expired" in html
    assert "Ayesha Siddiqua" not in html and "৳" not in html
    assert_private(response)

    fixed_clock.advance(timedelta(days=100))
    assert client.get(path_of(link)).status_code == 410


def test_revoked_link(client, world, fixed_clock):
    alice, bob = world
    link = link_for(alice, fixed_clock)
    bob_link = link_for(bob, fixed_clock)
    links.revoke(subscriber_id=alice.pk, now=fixed_clock.now())
    response, html = page(client, path_of(link))
    assert response.status_code == 410
    assert "Link cancelled" in html and "cancelled" in html
    assert "Ayesha Siddiqua" not in html and "৳" not in html
    assert_private(response)
    # Revoking one subscriber's links leaves the others alone.
    assert client.get(path_of(bob_link)).status_code == 200
    # A fresh link works again.
    assert client.get(path_of(link_for(alice, fixed_clock))).status_code == 200


def test_page_only_answers_get(client, world, fixed_clock):
    alice, _ = world
    assert client.post(path_of(link_for(alice, fixed_clock))).status_code == 405
