"""A payment's refunds over the API: listed with their follow-up, and "check now" asks
the gateway about a pending one (manage_billing only). The SSLCommerz simulator answers
over real HTTP and keeps refunds processing until a test settles them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ispbill.api.tokens import issue_token
from ispbill.audit.models import AuditEvent
from ispbill.billing import ledger
from ispbill.payments.models import Payment, Refund

from ..backoffice.office_support import NO_ROLE, ROLES, make_staff
from ..gateways.conftest import rsa_key, serve  # noqa: F401  (simulator fixtures)
from ..payments_gateway.conftest import _no_gateway_environment, browser, receiver, sslcommerz, world  # noqa: F401
from ..payments_gateway.pay_support import paid_with
from .api_support import JsonClient, assert_error

pytestmark = pytest.mark.django_db

FIVE_MINUTES = timedelta(minutes=5)


@pytest.fixture
def pending(api, client, world, sslcommerz, receiver, browser, fixed_clock):  # noqa: F811
    """World's subscriber paid November's 1000.00 through SSLCommerz; 300.00 of it is
    being refunded (through the API), and SSLCommerz has not completed the refund yet."""
    sslcommerz.refunds_complete = False
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "300.00", "reason": "charged twice"})
    assert response.status_code == 201, response.content
    return Refund.objects.get(pk=response.json()["refund"]["id"])


def refunds_path(refund: Refund) -> str:
    return f"/payments/{refund.payment_id}/refunds"


def check_path(refund: Refund) -> str:
    return f"/payments/{refund.payment_id}/refunds/{refund.pk}/check"


def listed(api, refund: Refund) -> list[dict]:
    response = api.get(refunds_path(refund))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["items"])
    return body["items"]


def test_the_list_shows_a_pending_refund_with_its_follow_up(api, pending, fixed_clock):
    (shown,) = listed(api, pending)

    assert shown == {
        "id": pending.pk, "payment": pending.payment_id, "amount": "300.00", "reason": "charged twice",
        "status": "pending", "gateway_refund_id": pending.gateway_refund_id,
        "created_at": shown["created_at"], "completed_at": None, "checks": 0, "last_checked_at": None,
        "next_check_at": shown["next_check_at"], "last_error": "",
    }
    assert shown["gateway_refund_id"]
    assert pending.next_check_at == fixed_clock.now() + FIVE_MINUTES and shown["next_check_at"] is not None


def test_the_list_is_newest_first_and_only_the_payments(api, pending, fixed_clock):
    fixed_clock.advance(FIVE_MINUTES)
    second = api.post(f"/payments/{pending.payment_id}/refund", {"amount": "100.00", "reason": "goodwill"})
    assert second.status_code == 201, second.content
    other = Payment.objects.create(amount_paisa=100, method="gateway", status="needs_review", gateway="bkash",
                                   transaction_id="OTHER1", received_at=pending.created_at)

    assert [r["id"] for r in listed(api, pending)] == [second.json()["refund"]["id"], pending.pk]
    assert api.get(f"/payments/{other.pk}/refunds").json() == {"items": [], "count": 0}


def test_check_now_after_the_gateway_completed_it(api, staff, pending, sslcommerz, fixed_clock):
    sslcommerz.finish_refund(pending.gateway_refund_id, "refunded")
    fixed_clock.advance(timedelta(minutes=1))  # before the worker's next check is due

    response = api.post(check_path(pending))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["outcome"] == "completed"
    refund = body["refund"]
    assert (refund["status"], refund["checks"], refund["next_check_at"]) == ("completed", 1, None)
    assert refund["completed_at"] is not None and refund["last_checked_at"] is not None
    assert (body["payment"]["status"], body["payment"]["refunded"]) == ("partially_refunded", "300.00")
    (shown,) = listed(api, pending)
    assert shown == refund
    pending.refresh_from_db()
    assert (pending.status, pending.completed_at) == ("completed", fixed_clock.now())
    (event,) = AuditEvent.objects.filter(action="refund.complete")
    assert (event.actor_kind, event.actor_id, event.ip) == ("staff", staff.pk, "127.0.0.1")
    assert ledger.ledger_discrepancies() == []


def test_check_now_on_a_cancelled_refund_gives_the_credit_back(api, world, pending, sslcommerz):
    assert ledger.balance(world.sub.pk) == 30_000
    sslcommerz.finish_refund(pending.gateway_refund_id, "cancelled")

    response = api.post(check_path(pending))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["outcome"], body["refund"]["status"], body["refund"]["completed_at"]) == ("failed", "failed", None)
    assert (body["payment"]["status"], body["payment"]["refunded"]) == ("completed", "0.00")
    assert [r["status"] for r in listed(api, pending)] == ["failed"]
    assert ledger.balance(world.sub.pk) == 0
    assert ledger.ledger_discrepancies() == []


def test_check_now_while_still_processing_reschedules(api, pending, fixed_clock):
    response = api.post(check_path(pending))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["outcome"], body["refund"]["status"], body["refund"]["checks"]) == ("still pending", "pending", 1)
    assert "status=processing" in body["refund"]["last_error"]
    pending.refresh_from_db()
    assert pending.next_check_at == fixed_clock.now() + FIVE_MINUTES


def test_check_now_on_a_settled_refund_is_409(api, pending, sslcommerz):
    sslcommerz.finish_refund(pending.gateway_refund_id, "refunded")
    assert api.post(check_path(pending)).status_code == 200

    assert_error(api.post(check_path(pending)), 409, "refund_not_pending")
    assert AuditEvent.objects.filter(action__startswith="refund.").count() == 1


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
def test_check_now_needs_manage_billing(pending, sslcommerz, role):
    sslcommerz.finish_refund(pending.gateway_refund_id, "refunded")
    client = JsonClient(issue_token(username=make_staff(role).username))

    response = client.post(check_path(pending))

    pending.refresh_from_db()
    if role in ("admin", "billing"):
        assert response.status_code == 200, response.content
        assert pending.status == "completed"
    else:
        assert_error(response, 403, "forbidden")
        assert (pending.status, pending.checks, pending.last_checked_at) == ("pending", 0, None)
        assert not AuditEvent.objects.filter(action__startswith="refund.").exists()
        # Reading the refunds needs no more than any token.
        assert client.get(refunds_path(pending)).status_code == 200


def test_a_refund_of_another_payment_is_404(api, pending):
    other = Payment.objects.create(amount_paisa=100, method="gateway", status="needs_review", gateway="bkash",
                                   transaction_id="OTHER1", received_at=pending.created_at)

    assert_error(api.post(f"/payments/{other.pk}/refunds/{pending.pk}/check"), 404, "refund_not_found")
    assert_error(api.post(f"/payments/{pending.payment_id}/refunds/{pending.pk + 100}/check"), 404, "refund_not_found")
    assert_error(api.post(f"/payments/{pending.payment_id + 100}/refunds/{pending.pk}/check"), 404, "refund_not_found")
    pending.refresh_from_db()
    assert (pending.status, pending.checks) == ("pending", 0)


def test_the_refunds_of_an_unknown_payment_are_404(api, db):
    assert_error(api.get("/payments/999999/refunds"), 404, "payment_not_found")


def test_unauthenticated_requests_are_401(anon, pending):
    assert_error(anon.get(refunds_path(pending)), 401, "unauthorized")
    assert_error(anon.post(check_path(pending)), 401, "unauthorized")
    pending.refresh_from_db()
    assert pending.checks == 0
