"""Writes through the REST API name the token's user; the automatic runs (suspension,
restore after a payment) are recorded as the system, the suspension run in one bulk
INSERT per batch."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from ispbill.api.tokens import issue_token
from ispbill.audit.models import ActorKind, AuditEvent
from ispbill.billing.models import Invoice
from ispbill.payments.models import Payment
from ispbill.payments.services import refund_payment

from ..api.api_support import JsonClient
from ..billing.billing_support import bill, make_subscriber
from .audit_support import audit_inserts, new_events, only_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("apiuser", "api@example.com")


@pytest.fixture
def api(staff, fixed_clock) -> JsonClient:
    return JsonClient(issue_token(username=staff.username))


def _by(event, user):
    assert event.actor_kind == ActorKind.STAFF and event.actor_id == user.pk and event.actor_name == user.username


def test_creating_and_editing_a_subscriber(api, staff, world):
    body = {"name": "Karim", "phone": "01711000222", "pppoe_username": "karim", "package": world["basic"].pk}
    with new_events() as found:
        response = api.post("/subscribers", body)
    assert response.status_code == 201, response.content
    (created,) = found
    _by(created, staff)
    assert created.action == "subscriber.create" and created.target_id == response.json()["id"]
    assert created.after["pppoe_username"] == "karim" and created.after["phone"] == "+8801711000222"
    assert created.target_label == "Karim (karim)"

    with new_events() as found:
        assert api.patch(f"/subscribers/{created.target_id}", {"area": "Uttara", "name": "Karim"}).status_code == 200
    (edited,) = found
    _by(edited, staff)
    assert edited.action == "subscriber.update"
    assert edited.before == {"area": ""} and edited.after == {"area": "Uttara"}  # the unchanged name is left out

    with new_events() as found:
        assert api.patch(f"/subscribers/{created.target_id}", {"status": "suspended"}).status_code == 200
    (suspended,) = found
    assert suspended.action == "subscriber.suspend" and suspended.after == {"status": "suspended"}


def test_void_and_credit_note(api, staff, world):
    sub = world["sub"]
    invoice = Invoice.objects.get(subscriber=sub)
    with new_events() as found:
        assert api.post("/credit-notes", {"subscriber": sub.pk, "amount": "100.00", "reason": "outage"}).status_code == 201
    (note,) = found
    _by(note, staff)
    assert note.action == "credit_note.issue" and note.target_type == "creditnote" and note.subscriber_id == sub.pk
    assert note.after["total_paisa"] == 10_000 and note.summary == "outage"

    other = make_subscriber(world["basic"], date(2026, 11, 1))
    bill(date(2026, 11, 1))
    target = Invoice.objects.get(subscriber=other)
    with new_events() as found:
        assert api.post(f"/invoices/{target.pk}/void", {"reason": "billed by mistake"}).status_code == 200
    (void,) = found
    _by(void, staff)
    assert void.action == "invoice.void" and void.target_id == target.pk and void.subscriber_id == other.pk
    assert void.before == {"status": "open", "amount_due_paisa": target.total_paisa}
    assert void.after == {"status": "void", "amount_due_paisa": 0}
    with new_events() as again:  # voiding a void invoice changes nothing
        api.post(f"/invoices/{target.pk}/void", {"reason": "again"})
    assert again == []


def test_a_replayed_payment_request_records_one_event(api, staff, world):
    body = {"subscriber": world["sub"].pk, "amount": "250.00", "method": "bank", "reference": "B-1"}
    with new_events() as found:
        assert api.post("/payments", body, headers={"Idempotency-Key": "same"}).status_code == 201
        assert api.post("/payments", body, headers={"Idempotency-Key": "same"}).status_code == 200
    (event,) = found
    _by(event, staff)
    assert event.action == "payment.record" and event.after["amount_paisa"] == 25_000


def _held(txn: str, **extra) -> Payment:
    return Payment.objects.create(
        amount_paisa=50_000, method="gateway", method_label="bKash", status="needs_review",
        review_reason="unknown_reference", gateway="bkash", transaction_id=txn, received_at=extra.pop("at"), **extra,
    )


def test_match_and_reject_held_payments(api, staff, world, fixed_clock):
    sub = world["sub"]
    first, second = _held("TRX1", at=fixed_clock.now()), _held("TRX2", at=fixed_clock.now())
    with new_events() as found:
        assert api.post(f"/payments/{first.pk}/match", {"subscriber": sub.pk, "note": "phone call"}).status_code == 200
    (match,) = found
    _by(match, staff)
    assert match.action == "payment.match" and match.target_id == first.pk and match.subscriber_id == sub.pk
    assert match.before == {"status": "needs_review", "subscriber_id": None}
    assert match.after == {"status": "completed", "subscriber_id": sub.pk, "amount_paisa": 50_000}

    with new_events() as found:
        assert api.post(f"/payments/{second.pk}/reject", {"reason": "not ours"}).status_code == 200
    (reject,) = found
    assert reject.action == "payment.reject" and reject.after == {"status": "rejected"} and reject.summary == "not ours"


class RecordingRefunds:
    """A gateway adapter's refund side that records what it was asked and agrees."""

    def __init__(self):
        self.asked = []

    def refund(self, transaction_id, amount, reason, gateway_reference=None):
        self.asked.append((transaction_id, amount))
        return {"amount": amount, "status": "completed", "refund_id": f"R-{len(self.asked)}", "raw": {}}


def test_refund_records_the_amount_taken_back(staff, world, fixed_clock):
    sub = world["sub"]
    payment = _held("TRX9", at=fixed_clock.now(), subscriber=sub)
    with new_events() as found:
        refund_payment(payment_id=payment.pk, amount=Decimal("500.00"), reason="customer asked", now=fixed_clock.now(),
                       user=staff, gateway=RecordingRefunds())
    (event,) = found
    _by(event, staff)
    assert event.action == "payment.refund" and event.subscriber_id == sub.pk
    assert event.before == {"status": "needs_review", "refunded_paisa": 0}
    assert event.after == {"status": "refunded", "refunded_paisa": 50_000, "refund_paisa": 50_000, "refund_status": "completed"}


def test_packages_and_routers_through_the_api(api, staff, db, fixed_clock):
    with new_events() as found:
        response = api.post("/packages", {"name": "Gold", "price": "2000.00", "rate_limit": "40M/40M"})
        assert response.status_code == 201
        pk = response.json()["id"]
        assert api.patch(f"/packages/{pk}", {"price": "2100.00", "name": "Gold"}).status_code == 200
    created, updated = found
    _by(created, staff)
    assert created.action == "package.create" and created.after["price_paisa"] == 200_000
    assert updated.action == "package.update"
    assert updated.before == {"price_paisa": 200_000} and updated.after == {"price_paisa": 210_000}

    with new_events() as found:
        response = api.post("/routers", {"name": "core-1", "host": "10.0.0.1", "username": "api", "password": "s3cret!"})
        assert response.status_code == 201, response.content
        assert api.patch(f"/routers/{response.json()['id']}", {"password": "n3w-s3cret"}).status_code == 200
    created, updated = found
    _by(created, staff)
    _by(updated, staff)
    assert [created.action, updated.action] == ["router.create", "router.update"]
    for event in (created, updated):
        assert "s3cret" not in str(event.before) + str(event.after) + event.summary


def test_issuing_a_token_is_recorded_without_the_token(db, staff):
    with new_events() as found:
        key = issue_token(username=staff.username)
    (event,) = found
    assert event.action == "token.issue" and event.actor_kind == ActorKind.SYSTEM
    assert event.target_type == "user" and event.target_id == staff.pk
    assert key not in str(event.after) + event.summary


# -- the automatic runs ------------------------------------------------------------------------

def _overdue_subscribers(world, n: int):
    subs = [make_subscriber(world["basic"], date(2026, 11, 1)) for _ in range(n)]
    bill(date(2026, 11, 1))
    return subs


@pytest.mark.parametrize("extra", [2, 9])
def test_the_suspension_run_records_each_suspension_in_one_insert(world, fixed_clock, extra):
    from ispbill.network.services import suspend_overdue

    subs = [world["sub"], *_overdue_subscribers(world, extra)]
    with audit_inserts() as inserts, new_events() as found:
        assert suspend_overdue(now=fixed_clock.now()) == len(subs)
    assert inserts["n"] == 1
    assert sorted(e.target_id for e in found) == sorted(s.pk for s in subs)
    for event in found:
        assert event.action == "subscriber.suspend" and event.actor_kind == ActorKind.SYSTEM and event.actor_id is None
        assert event.before == {"status": "active"} and event.after == {"status": "suspended", "reason": "overdue"}
        assert event.subscriber_id == event.target_id and event.at == fixed_clock.now()
    with new_events() as again:  # a second run finds nobody left to suspend
        assert suspend_overdue(now=fixed_clock.now()) == 0
    assert again == []


def test_the_suspension_run_batches_its_transactions(world, fixed_clock):
    from ispbill.network.services import suspend_overdue

    _overdue_subscribers(world, 4)
    with audit_inserts() as inserts:
        assert suspend_overdue(now=fixed_clock.now(), batch_size=2) == 5
    assert inserts["n"] == 3
    assert AuditEvent.objects.filter(action="subscriber.suspend").count() == 5


def test_a_gateway_style_payment_restores_as_the_system(world, fixed_clock):
    """Money from elsewhere than staff (here: an import with no user) still restores as the system."""
    from ispbill.network.services import suspend_overdue
    from ispbill.payments.services import record_payment

    sub = world["sub"]
    suspend_overdue(now=fixed_clock.now())
    due = Invoice.objects.get(subscriber=sub).amount_due_paisa
    with new_events() as found:
        record_payment(subscriber_id=sub.pk, amount=Decimal(due) / 100, method="cash", received_at=fixed_clock.now())
    record, restore = found
    assert record.action == "payment.record" and record.actor_kind == ActorKind.SYSTEM
    assert restore.action == "subscriber.restore" and restore.actor_kind == ActorKind.SYSTEM
    assert only_event(action="subscriber.restore").target_id == sub.pk
