"""A payment's page lists its refunds with their follow-up (status, last check, the
error), and "check now" asks the gateway about a pending refund: billing staff only,
POST with CSRF, recorded in the audit log."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from ispbill.audit.models import AuditEvent
from ispbill.billing import ledger
from ispbill.payments import links
from ispbill.payments.models import Payment, Refund
from ispbill.payments.services import refund_payment

from ..gateways.conftest import rsa_key, serve  # noqa: F401  (simulator fixtures)
from ..payments_gateway.conftest import _no_gateway_environment, browser, receiver, sslcommerz  # noqa: F401
from ..payments_gateway.conftest import forward
from ..payments_gateway.pay_support import ipn, press, start
from .office_support import NO_ROLE, ROLES, make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(world, sslcommerz, receiver, browser, fixed_clock):  # noqa: F811
    """World's subscriber paid November's 1000.00 through SSLCommerz; 300.00 of it is
    being refunded, and SSLCommerz has not completed the refund yet."""
    sslcommerz.refunds_complete = False
    link = links.current_link(subscriber_id=world["sub"].pk, now=fixed_clock.now(), valid_days=30)
    client = Client()
    press(browser, start(client, links.token_for(link), "sslcommerz"), "Pay")
    forward(client, ipn(receiver))
    payment = Payment.objects.get(gateway="sslcommerz")
    return refund_payment(payment_id=payment.pk, amount=Decimal("300.00"), reason="charged twice", now=fixed_clock.now())


def check_url(refund: Refund) -> str:
    return f"/office/payments/{refund.payment_id}/refunds/{refund.pk}/check"


def page(client, refund: Refund) -> str:
    response = client.get(f"/office/payments/{refund.payment_id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_shows_a_pending_refund_and_offers_check_now_to_billing_staff(client_for, pending):
    html = page(client_for("billing"), pending)

    assert '<span class="badge blue">Accepted by the gateway, completing</span>' in html
    assert "Last check" in html and "Next check" in html
    assert f'action="{check_url(pending)}"' in html and ">Check now</button>" in html
    for role in ("viewer", "support"):
        shown = page(client_for(role), pending)
        assert "Accepted by the gateway, completing" in shown and check_url(pending) not in shown


def test_check_now_completes_a_refund_the_gateway_finished(client_for, pending, sslcommerz, fixed_clock):
    sslcommerz.finish_refund(pending.gateway_refund_id, "refunded")
    client = client_for("billing")

    response = client.post(check_url(pending), follow=True)

    assert response.redirect_chain == [(f"/office/payments/{pending.payment_id}/", 303)]
    html = response.content.decode()
    assert "The gateway has completed the refund of ৳ 300.00." in html
    assert '<span class="badge green">Completed</span>' in html and check_url(pending) not in html
    pending.refresh_from_db()
    assert (pending.status, pending.completed_at, pending.checks) == ("completed", fixed_clock.now(), 1)
    (event,) = AuditEvent.objects.filter(action="refund.complete")
    assert (event.actor_kind, event.actor_name, event.ip, event.target_id) == (
        "staff", "billing-user", "127.0.0.1", pending.payment_id,
    )


def test_check_now_on_a_refund_still_processing_shows_why_and_when_next(client_for, pending, fixed_clock):
    client = client_for("admin")

    response = client.post(check_url(pending), follow=True)

    html = response.content.decode()
    assert "The refund of ৳ 300.00 is not finished yet: not finished at the gateway (status=processing)" in html
    pending.refresh_from_db()
    assert (pending.status, pending.checks, pending.next_check_at) == (
        "pending", 1, fixed_clock.now() + timedelta(minutes=5),
    )
    assert 'class="small refund-error">not finished at the gateway (status=processing)</span>' in html
    assert "Checks: 1" in html
    (event,) = AuditEvent.objects.filter(action="refund.check")
    assert (event.actor_kind, event.actor_name) == ("staff", "admin-user")
    assert event.after["last_error"] == pending.last_error


def test_check_now_on_a_cancelled_refund_gives_the_credit_back(client_for, world, pending, sslcommerz):
    sslcommerz.finish_refund(pending.gateway_refund_id, "cancelled")
    assert ledger.balance(world["sub"].pk) == 30_000

    response = client_for("billing").post(check_url(pending), follow=True)

    html = response.content.decode()
    assert "The gateway cancelled the refund of ৳ 300.00: the money did not go back" in html
    assert '<span class="badge red">Cancelled by the gateway</span>' in html
    payment = Payment.objects.get(pk=pending.payment_id)
    assert (payment.status, payment.refunded_paisa) == ("completed", 0)
    assert ledger.balance(world["sub"].pk) == 0 and ledger.ledger_discrepancies() == []
    assert AuditEvent.objects.filter(action="refund.fail", actor_kind="staff").count() == 1


def test_a_refund_no_longer_checked_says_so(client_for, pending, fixed_clock):
    Refund.objects.filter(pk=pending.pk).update(
        next_check_at=None, checks=30, last_checked_at=fixed_clock.now(),
        last_error="stopped asking after 14 days; settle it with the gateway's merchant portal. Last: x",
    )

    html = page(client_for("billing"), pending)

    assert "No longer checked automatically: settle it with the gateway." in html
    assert "stopped asking after 14 days" in html and check_url(pending) in html


def test_check_now_on_a_settled_refund_is_refused_with_a_message(client_for, pending, sslcommerz):
    sslcommerz.finish_refund(pending.gateway_refund_id, "refunded")
    client = client_for("billing")
    client.post(check_url(pending))

    again = client.post(check_url(pending), follow=True)

    assert "only pending refunds are checked" in again.content.decode()
    assert AuditEvent.objects.filter(action__startswith="refund.").count() == 1


def test_check_now_for_a_refund_of_another_payment_is_404(client_for, pending):
    other = Payment.objects.create(amount_paisa=100, method="gateway", status="needs_review", gateway="bkash",
                                   transaction_id="OTHER1", received_at=pending.created_at)

    response = client_for("billing").post(f"/office/payments/{other.pk}/refunds/{pending.pk}/check")

    assert response.status_code == 404
    assert Refund.objects.get(pk=pending.pk).checks == 0


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "anonymous"])
def test_check_now_by_role(client_for, pending, role):
    client = Client() if role == "anonymous" else client_for(role)

    response = client.post(check_url(pending))

    pending.refresh_from_db()
    if role in ("admin", "billing"):
        assert response.status_code == 303 and pending.checks == 1
    else:
        assert response.status_code == (302 if role == "anonymous" else 403)
        assert pending.checks == 0 and pending.last_checked_at is None
        assert not AuditEvent.objects.filter(action__startswith="refund.").exists()


def test_check_now_is_post_only_and_needs_the_csrf_token(client_for, pending):
    assert client_for("admin").get(check_url(pending)).status_code == 405
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("billing"))

    response = client.post(check_url(pending))

    assert response.status_code == 403
    pending.refresh_from_db()
    assert pending.checks == 0
    html = page(client, pending)
    assert html.count('method="post"') == html.count('name="csrfmiddlewaretoken"')


def test_the_follow_up_reads_in_bangla(client_for, pending):
    client = client_for("billing")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "bn"
    client.post(check_url(pending))

    html = page(client, pending)

    for english in ("Accepted by the gateway, completing", "Last check", "Next check", "Check now", "Checks:"):
        assert english not in html
    assert "গেটওয়ে গ্রহণ করেছে, সম্পন্ন হচ্ছে" in html and "এখনই যাচাই করুন" in html and "শেষ যাচাই" in html
