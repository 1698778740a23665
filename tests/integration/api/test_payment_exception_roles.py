"""The exceptions-queue routes (match, reject, refund) need ``manage_billing``: a token
carries its user's role."""

from __future__ import annotations

from datetime import date

import pytest

from ispbill.api.tokens import issue_token
from ispbill.billing.models import LedgerEntry
from ispbill.payments.gateways import GATEWAYS
from ispbill.payments.models import Payment, Refund

from ..backoffice.office_support import ROLES, make_staff
from ..billing.billing_support import bill, make_package, make_subscriber
from .api_support import JsonClient, assert_error

pytestmark = pytest.mark.django_db

ALLOWED = {"admin", "billing"}


@pytest.fixture(autouse=True)
def _no_gateway_configured(monkeypatch):
    for cls in GATEWAYS.values():
        for name in cls.env_vars:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def held(fixed_clock):
    """A subscriber owing 1000.00 and a bKash payment held for its unknown reference."""
    sub = make_subscriber(make_package("Home 10M", "1000.00"), date(2026, 11, 1))
    bill(date(2026, 11, 1))
    payment = Payment.objects.create(
        amount_paisa=100_000, method="gateway", method_label="bKash", status="needs_review",
        review_reason="unknown_reference: no payment attempt", gateway="bkash", transaction_id="TRXROLE01",
        received_at=fixed_clock.now(),
    )
    return sub, payment


def client(role: str) -> JsonClient:
    return JsonClient(issue_token(username=make_staff(role).username))


@pytest.mark.parametrize("role", ROLES)
def test_match_needs_manage_billing(held, role):
    sub, payment = held
    response = client(role).post(f"/payments/{payment.pk}/match", {"subscriber": sub.pk})
    payment.refresh_from_db()
    if role in ALLOWED:
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "completed" and payment.subscriber_id == sub.pk
        assert LedgerEntry.objects.filter(payment=payment).exists()
    else:
        assert_error(response, 403, "forbidden")
        assert (payment.status, payment.subscriber_id) == ("needs_review", None)
        assert not LedgerEntry.objects.filter(payment=payment).exists()


@pytest.mark.parametrize("role", ROLES)
def test_reject_needs_manage_billing(held, role):
    _, payment = held
    response = client(role).post(f"/payments/{payment.pk}/reject", {"reason": "not ours"})
    payment.refresh_from_db()
    if role in ALLOWED:
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "rejected" == payment.status
    else:
        assert_error(response, 403, "forbidden")
        assert payment.status == "needs_review" and "not ours" not in payment.notes


@pytest.mark.parametrize("role", ROLES)
def test_refund_needs_manage_billing(held, role):
    """The permission is checked before anything else: with no gateway configured an
    allowed role gets the gateway's refusal (503), the others 403."""
    _, payment = held
    response = client(role).post(f"/payments/{payment.pk}/refund", {"amount": "1000.00", "reason": "x"})
    if role in ALLOWED:
        assert_error(response, 503, "gateway_not_configured")
    else:
        assert_error(response, 403, "forbidden")
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("needs_review", 0) and not Refund.objects.exists()


@pytest.mark.parametrize("path", ["match", "reject", "refund"])
def test_a_user_without_a_role_is_refused(held, path):
    sub, payment = held
    body = {"match": {"subscriber": sub.pk}, "reject": {"reason": "x"}, "refund": {"amount": "1000.00", "reason": "x"}}[path]
    assert_error(client("norole").post(f"/payments/{payment.pk}/{path}", body), 403, "forbidden")
    assert Payment.objects.get(pk=payment.pk).status == "needs_review"


@pytest.mark.parametrize("role", ROLES)
def test_webhook_inbox_needs_manage_billing(fixed_clock, role):
    """Stored webhooks carry customers' payment details: listing, reading and replaying
    them is billing work."""
    from ispbill.payments.models import InboundWebhook

    stored = InboundWebhook.objects.create(
        gateway="sslcommerz", kind="ipn", method="POST", path="/webhooks/sslcommerz/ipn", headers={},
        body="tran_id=T1&status=VALID", received_at=fixed_clock.now(),
    )
    api = client(role)
    answers = [api.get("/webhooks"), api.get(f"/webhooks/{stored.pk}"), api.post(f"/webhooks/{stored.pk}/replay")]
    stored.refresh_from_db()
    if role in ALLOWED:
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert answers[0].json()["items"][0]["id"] == stored.pk
        assert stored.replays == 1
    else:
        for answer in answers:
            assert_error(answer, 403, "forbidden")
        assert stored.replays == 0
