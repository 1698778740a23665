"""Refunds the gateway completes later are followed up by the worker's refund_follow_up
job: completed, cancelled (the payment's credit comes back on the ledger), still
processing or no answer (asked again later, then no more after 14 days). The
simulators answer over real HTTP."""

from __future__ import annotations

import importlib
from datetime import date, timedelta
from decimal import Decimal

import pytest

from ispbill.audit.models import AuditEvent
from ispbill.billing import ledger
from ispbill.billing.models import LedgerEntry
from ispbill.network.choices import Reason
from ispbill.network.models import EnforcementAction
from ispbill.network.services import suspend_subscriber
from ispbill.notifications.models import Message
from ispbill.payments import refund_services
from ispbill.payments.models import Payment, Refund
from ispbill.payments.services import audit_target, record_payment, refund_payment, reject_payment
from ispbill.subscribers.models import Subscriber
from ispbill.worker import scheduler
from ispbill.worker.models import JobRun
from ispbill.worker.scheduler import Every

from ..billing.billing_support import bill, invoices_of
from .pay_support import paid_with

pytestmark = pytest.mark.django_db

FIVE_MINUTES = timedelta(minutes=5)


def refund(payment: Payment, amount: str, now, **kwargs) -> Refund:
    return refund_payment(payment_id=payment.pk, amount=Decimal(amount), reason="customer asked", now=now, **kwargs)


def run_follow_up(now) -> str:
    (job,) = [j for j in scheduler.jobs() if j.name == "refund_follow_up"]
    outcome = scheduler.run_job(job, now)
    assert outcome.ok, outcome.result
    return outcome.result


def dues(sub) -> list[tuple[int, str]]:
    return [(i.amount_due_paisa, i.status) for i in invoices_of(sub)]


def refund_entries(payment: Payment) -> int:
    return sum(LedgerEntry.objects.filter(payment=payment, kind="refund").values_list("amount_paisa", flat=True))


@pytest.fixture
def later(sslcommerz):
    """SSLCommerz keeps refunds ``processing`` until the test settles them."""
    sslcommerz.refunds_complete = False
    return sslcommerz


def test_the_job_is_registered_every_five_minutes():
    (job,) = [j for j in scheduler.jobs() if j.name == "refund_follow_up"]
    assert job.schedule == Every(seconds=300)
    (requery,) = [j for j in scheduler.jobs() if j.name == "payment_requery"]
    assert job.order > requery.order


def test_a_refund_completed_later_is_marked_completed(client, world, later, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    created = fixed_clock.now()
    pending = refund(payment, "300.00", created)
    assert (pending.status, pending.checks, pending.next_check_at) == ("pending", 0, created + FIVE_MINUTES)
    assert pending.payment_status_before == "completed" and pending.completed_at is None
    first_response = dict(pending.gateway_response)
    assert first_response["refund_ref_id"] == pending.gateway_refund_id
    assert run_follow_up(created) == "no refunds to follow up"  # not due yet

    # Due, and still processing at the gateway: asked again in 5 minutes, then 10.
    fixed_clock.advance(FIVE_MINUTES)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"
    pending.refresh_from_db()
    assert (pending.status, pending.checks, pending.last_checked_at) == ("pending", 1, fixed_clock.now())
    assert pending.next_check_at == fixed_clock.now() + FIVE_MINUTES
    assert "status=processing" in pending.last_error

    later.finish_refund(pending.gateway_refund_id, "refunded")
    fixed_clock.advance(FIVE_MINUTES)
    result = run_follow_up(fixed_clock.now())

    assert result == "1 followed up: 1 completed"
    assert JobRun.objects.get(name="refund_follow_up").last_result == result
    done = Refund.objects.get()
    assert (done.status, done.completed_at, done.checks, done.next_check_at, done.last_error) == (
        "completed", fixed_clock.now(), 2, None, "",
    )
    # What the gateway first answered is kept; its final word is added.
    assert {k: done.gateway_response[k] for k in first_response} == first_response
    assert done.gateway_response["follow_up"]["status"] == "refunded"
    # The ledger already took the money back when the refund was recorded: unchanged.
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("partially_refunded", 30_000)
    assert ledger.balance(world.sub.pk) == 30_000 and refund_entries(payment) == 30_000
    assert ledger.ledger_discrepancies() == []
    (event,) = AuditEvent.objects.filter(action="refund.complete")
    assert (event.actor_kind, event.target_type, event.target_id, event.subscriber_id) == (
        "gateway", "payment", payment.pk, world.sub.pk,
    )
    assert event.after["refund_status"] == "completed" and event.after["refund_paisa"] == 30_000
    assert run_follow_up(fixed_clock.now() + timedelta(days=1)) == "no refunds to follow up"


def test_a_cancelled_refund_gives_the_credit_back_oldest_invoice_first(
    client, world, later, receiver, browser, fixed_clock,
):
    sub = world.sub
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    now = fixed_clock.now()
    pending = refund(payment, "600.30", now)
    assert dues(sub) == [(60_030, "partially_paid")]
    bill(date(2026, 11, 25))  # December's 1000.00
    record_payment(subscriber_id=sub.pk, amount=Decimal("100.00"), method="cash", received_at=now)
    assert dues(sub) == [(50_030, "partially_paid"), (100_000, "open")]
    receipts = Message.objects.filter(kind="receipt").count()

    later.finish_refund(pending.gateway_refund_id, "cancelled")
    fixed_clock.advance(FIVE_MINUTES)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 failed"

    failed = Refund.objects.get()
    assert (failed.status, failed.completed_at, failed.next_check_at) == ("failed", None, None)
    assert failed.gateway_response["follow_up"]["status"] == "cancelled"
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("completed", 0)
    assert "cancelled the refund of 600.30; credit given back" in payment.notes
    # 600.30 back: November's remaining 500.30 first, then 100.00 of December.
    assert dues(sub) == [(0, "paid"), (90_000, "partially_paid")]
    assert ledger.balance(sub.pk) == 90_000 and ledger.unapplied_credit(sub.pk) == 0
    assert sum(LedgerEntry.objects.filter(payment=payment).values_list("amount_paisa", flat=True)) == -100_000
    assert refund_entries(payment) == 0
    assert ledger.ledger_discrepancies() == []
    assert Message.objects.filter(kind="receipt").count() == receipts  # no money arrived: no receipt
    (event,) = AuditEvent.objects.filter(action="refund.fail")
    nov, dec = invoices_of(sub)
    assert event.actor_kind == "gateway" and event.subscriber_id == sub.pk
    assert event.before == {"status": "partially_refunded", "refunded_paisa": 60_030, "refund_status": "pending"}
    assert event.after["status"] == "completed" and event.after["credited_back_paisa"] == 60_030
    assert event.after["applied"] == [{"invoice_id": nov.pk, "amount_paisa": 50_030},
                                      {"invoice_id": dec.pk, "amount_paisa": 10_000}]

    # The money is the merchant's again: it can be refunded again, and the books follow.
    again = refund(payment, "1000.00", fixed_clock.now())
    assert again.status == "pending"
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("refunded", 100_000)
    assert ledger.balance(sub.pk) == 190_000 and ledger.ledger_discrepancies() == []


def test_one_of_two_refunds_cancelled_leaves_the_payment_partially_refunded(
    client, world, later, receiver, browser, fixed_clock,
):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    first = refund(payment, "400.00", fixed_clock.now())
    second = refund(payment, "600.00", fixed_clock.now())
    payment.refresh_from_db()
    assert (payment.status, first.payment_status_before, second.payment_status_before) == (
        "refunded", "completed", "partially_refunded",
    )
    later.finish_refund(first.gateway_refund_id, "refunded")
    later.finish_refund(second.gateway_refund_id, "cancelled")
    fixed_clock.advance(FIVE_MINUTES)

    assert run_follow_up(fixed_clock.now()) == "2 followed up: 1 completed, 1 failed"

    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("partially_refunded", 40_000)
    assert dict(Refund.objects.values_list("pk", "status")) == {first.pk: "completed", second.pk: "failed"}
    assert dues(world.sub) == [(40_000, "partially_paid")]
    assert refund_entries(payment) == 40_000 and ledger.ledger_discrepancies() == []


def test_a_cancelled_refund_of_a_rejected_payment_makes_it_rejected_again(
    client, world, later, receiver, browser, fixed_clock,
):
    later.risky = True
    held = paid_with("sslcommerz", client, world, receiver, browser)
    assert held.status == "needs_review"
    reject_payment(payment_id=held.pk, reason="card flagged as stolen", now=fixed_clock.now())
    pending = refund(held, "1000.00", fixed_clock.now())
    held.refresh_from_db()
    assert (held.status, pending.payment_status_before) == ("refunded", "rejected")

    later.finish_refund(pending.gateway_refund_id, "cancelled")
    fixed_clock.advance(FIVE_MINUTES)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 failed"

    held.refresh_from_db()
    assert (held.status, held.refunded_paisa) == ("rejected", 0)
    assert not LedgerEntry.objects.filter(payment=held).exists()
    assert ledger.balance(world.sub.pk) == 100_000 and ledger.ledger_discrepancies() == []
    (event,) = AuditEvent.objects.filter(action="refund.fail")
    assert event.before["status"] == "refunded" and event.after["status"] == "rejected"
    assert event.after["credited_back_paisa"] == 0 and event.after["applied"] == []


def test_a_cancelled_refund_that_settles_the_account_restores_service(
    client, world, later, receiver, browser, fixed_clock,
):
    sub = world.sub
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    pending = refund(payment, "1000.00", fixed_clock.now())
    suspend_subscriber(subscriber_id=sub.pk, reason=Reason.OVERDUE, now=fixed_clock.now())
    assert Subscriber.objects.get(pk=sub.pk).status == "suspended"

    later.finish_refund(pending.gateway_refund_id, "cancelled")
    fixed_clock.advance(FIVE_MINUTES)
    run_follow_up(fixed_clock.now())

    assert Subscriber.objects.get(pk=sub.pk).status == "active"
    restore = EnforcementAction.objects.filter(subscriber=sub).order_by("-id").first()
    assert (restore.action, restore.reason) == ("restore", Reason.PAYMENT)
    assert dues(sub) == [(0, "paid")] and ledger.ledger_discrepancies() == []


def test_a_cancelled_partial_refund_that_leaves_money_owed_keeps_the_suspension(
    client, world, later, receiver, browser, fixed_clock,
):
    sub = world.sub
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    cancelled = refund(payment, "200.00", fixed_clock.now())
    refund(payment, "500.00", fixed_clock.now())
    suspend_subscriber(subscriber_id=sub.pk, reason=Reason.OVERDUE, now=fixed_clock.now())
    actions = EnforcementAction.objects.count()

    later.finish_refund(cancelled.gateway_refund_id, "cancelled")
    fixed_clock.advance(FIVE_MINUTES)
    run_follow_up(fixed_clock.now())

    assert Refund.objects.get(pk=cancelled.pk).status == "failed"
    assert dues(sub) == [(50_000, "partially_paid")]
    assert Subscriber.objects.get(pk=sub.pk).status == "suspended" and EnforcementAction.objects.count() == actions


def test_still_processing_is_asked_again_doubling_up_to_six_hours(client, world, later, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    pending = refund(payment, "100.00", fixed_clock.now())
    waits = []
    for _ in range(9):
        fixed_clock.set(pending.next_check_at)
        assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"
        pending.refresh_from_db()
        waits.append(int((pending.next_check_at - fixed_clock.now()).total_seconds() // 60))

    assert waits == [5, 10, 20, 40, 80, 160, 320, 360, 360]
    assert pending.checks == 9 and pending.status == "pending"
    assert AuditEvent.objects.filter(action__startswith="refund.").count() == 0  # the worker's checks are not events


def test_gateway_down_is_asked_again_later_with_the_error(client, world, later, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    pending = refund(payment, "100.00", fixed_clock.now())
    later.faults.set_down()
    fixed_clock.advance(FIVE_MINUTES)

    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"

    pending.refresh_from_db()
    assert (pending.status, pending.checks) == ("pending", 1)
    assert pending.last_error.startswith("gateway_http_error: SSLCommerz refund status: HTTP 503")
    assert pending.next_check_at == fixed_clock.now() + FIVE_MINUTES
    assert "store_passwd" not in pending.last_error

    later.faults.set_down(False)
    later.finish_refund(pending.gateway_refund_id, "refunded")
    fixed_clock.set(pending.next_check_at)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 completed"
    assert Refund.objects.get().last_error == ""


def test_a_gateway_no_longer_configured_is_an_error_asked_again(client, world, later, receiver, browser, fixed_clock,
                                                                monkeypatch):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    pending = refund(payment, "100.00", fixed_clock.now())
    monkeypatch.delenv("SSLCOMMERZ_STORE_PASSWORD")
    fixed_clock.advance(FIVE_MINUTES)

    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"

    pending.refresh_from_db()
    assert pending.status == "pending" and pending.last_error == "gateway_not_configured: sslcommerz is not configured"


def test_after_fourteen_days_it_stops_asking_and_says_so(client, world, later, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)
    created = fixed_clock.now()
    pending = refund(payment, "100.00", created)
    fixed_clock.set(created + timedelta(days=13, hours=23))
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"
    pending.refresh_from_db()
    assert pending.next_check_at is not None

    fixed_clock.set(created + timedelta(days=14))
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 given up"

    pending.refresh_from_db()
    assert (pending.status, pending.next_check_at) == ("pending", None)
    assert pending.last_error.startswith("stopped asking after 14 days; settle it with the gateway's merchant portal.")
    assert "status=processing" in pending.last_error
    assert run_follow_up(fixed_clock.now() + timedelta(days=30)) == "no refunds to follow up"
    payment.refresh_from_db()
    assert payment.refunded_paisa == 10_000  # nothing was undone by giving up

    # Staff can still ask, and the answer is applied.
    later.finish_refund(pending.gateway_refund_id, "refunded")
    checked, outcome = refund_services.check_refund(refund_id=pending.pk, now=fixed_clock.now())
    assert (checked.status, outcome) == ("completed", "completed")


def test_check_refund_refuses_settled_and_unknown_refunds(client, world, sslcommerz, receiver, browser, fixed_clock):
    from ispbill.core.errors import Conflict, NotFound

    payment = paid_with("sslcommerz", client, world, receiver, browser)
    pending = refund(payment, "100.00", fixed_clock.now())  # the simulator completes it at once
    refund_services.check_refund(refund_id=pending.pk, now=fixed_clock.now())
    assert Refund.objects.get().status == "completed"

    with pytest.raises(Conflict) as refused:
        refund_services.check_refund(refund_id=pending.pk, now=fixed_clock.now())
    assert refused.value.code == "refund_not_pending"
    with pytest.raises(NotFound):
        refund_services.check_refund(refund_id=pending.pk + 100, now=fixed_clock.now())


# -- bKash: asked by the payment, about its latest refund ------------------------------------

@pytest.fixture
def bkash_later(bkash):
    """bKash accepts refunds as "Initiated" and keeps them so until the test settles them."""
    bkash.refunds_complete = False
    return bkash


def test_a_bkash_refund_accepted_as_pending_is_completed_later(
    client, world, bkash_later, receiver, browser, fixed_clock,
):
    payment = paid_with("bkash", client, world, receiver, browser)
    created = fixed_clock.now()
    pending = refund(payment, "250.00", created)

    (theirs,) = bkash_later.payment(payment.gateway_reference)["refunds"]
    assert (pending.status, pending.gateway_refund_id, pending.amount_paisa) == ("pending", theirs["refundTrxID"], 25_000)
    assert (pending.next_check_at, pending.completed_at) == (created + FIVE_MINUTES, None)
    assert pending.gateway_response["transactionStatus"] == "Initiated"
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("partially_refunded", 25_000)
    assert dues(world.sub) == [(25_000, "partially_paid")] and ledger.balance(world.sub.pk) == 25_000

    fixed_clock.advance(FIVE_MINUTES)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 still pending"
    pending.refresh_from_db()
    assert (pending.status, pending.checks) == ("pending", 1)
    assert "transactionStatus=Initiated" in pending.last_error

    bkash_later.finish_refund(pending.gateway_refund_id, "Completed")
    fixed_clock.set(pending.next_check_at)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 completed"

    done = Refund.objects.get()
    assert (done.status, done.completed_at, done.checks, done.next_check_at, done.last_error) == (
        "completed", fixed_clock.now(), 2, None, "",
    )
    assert done.gateway_response["follow_up"]["refundTrxID"] == pending.gateway_refund_id
    assert done.gateway_response["follow_up"]["transactionStatus"] == "Completed"
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("partially_refunded", 25_000)
    assert dues(world.sub) == [(25_000, "partially_paid")]
    assert ledger.balance(world.sub.pk) == 25_000 and refund_entries(payment) == 25_000
    assert ledger.ledger_discrepancies() == []
    (event,) = AuditEvent.objects.filter(action="refund.complete")
    assert event.actor_kind == "gateway" and event.after["gateway_refund_id"] == pending.gateway_refund_id


@pytest.mark.parametrize("ending", ["Cancelled", "Failed"])
def test_a_bkash_refund_cancelled_later_gives_the_credit_back(
    client, world, bkash_later, receiver, browser, fixed_clock, ending,
):
    sub = world.sub
    payment = paid_with("bkash", client, world, receiver, browser)
    now = fixed_clock.now()
    pending = refund(payment, "600.30", now)
    assert pending.status == "pending" and dues(sub) == [(60_030, "partially_paid")]
    bill(date(2026, 11, 25))  # December's 1000.00
    record_payment(subscriber_id=sub.pk, amount=Decimal("100.00"), method="cash", received_at=now)
    assert dues(sub) == [(50_030, "partially_paid"), (100_000, "open")]
    assert ledger.balance(sub.pk) == 150_030
    receipts = Message.objects.filter(kind="receipt").count()

    bkash_later.finish_refund(pending.gateway_refund_id, ending)
    fixed_clock.advance(FIVE_MINUTES)
    assert run_follow_up(fixed_clock.now()) == "1 followed up: 1 failed"

    failed = Refund.objects.get()
    assert (failed.status, failed.completed_at, failed.next_check_at, failed.checks) == ("failed", None, None, 1)
    assert failed.gateway_response["follow_up"]["transactionStatus"] == ending
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("completed", 0)
    assert "bKash cancelled the refund of 600.30; credit given back" in payment.notes
    # 600.30 back: November's remaining 500.30 first, then 100.00 of December.
    assert dues(sub) == [(0, "paid"), (90_000, "partially_paid")]
    assert ledger.balance(sub.pk) == 90_000 and ledger.unapplied_credit(sub.pk) == 0
    assert refund_entries(payment) == 0
    assert ledger.ledger_discrepancies() == []
    assert Message.objects.filter(kind="receipt").count() == receipts
    (event,) = AuditEvent.objects.filter(action="refund.fail")
    assert event.before == {"status": "partially_refunded", "refunded_paisa": 60_030, "refund_status": "pending"}
    assert event.after["status"] == "completed" and event.after["credited_back_paisa"] == 60_030

    # bKash kept the money, so all of it can be refunded again, and the books follow.
    bkash_later.refunds_complete = True
    again = refund(payment, "1000.00", fixed_clock.now())
    assert again.status == "completed"
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_paisa) == ("refunded", 100_000)
    assert ledger.balance(sub.pk) == 190_000 and ledger.ledger_discrepancies() == []


def test_bkash_reporting_another_refund_leaves_this_one_pending(
    client, world, bkash_later, receiver, browser, fixed_clock,
):
    payment = paid_with("bkash", client, world, receiver, browser)
    older = refund(payment, "250.00", fixed_clock.now())
    newer = refund(payment, "100.00", fixed_clock.now())
    assert (older.status, newer.status) == ("pending", "pending")
    bkash_later.finish_refund(older.gateway_refund_id, "Completed")
    bkash_later.finish_refund(newer.gateway_refund_id, "Completed")
    fixed_clock.advance(FIVE_MINUTES)

    assert run_follow_up(fixed_clock.now()) == "2 followed up: 1 completed, 1 still pending"

    older.refresh_from_db()
    assert Refund.objects.get(pk=newer.pk).status == "completed"
    assert older.status == "pending" and older.checks == 1
    assert older.last_error == f"bKash reports refund {newer.gateway_refund_id}, not this one"


# -- refunds recorded before follow-ups existed -----------------------------------------------

def test_pending_refunds_recorded_before_follow_ups_are_due_and_know_their_payment(world, fixed_clock):
    from django.apps import apps

    from ispbill.audit.services import record

    follow_up_existing = importlib.import_module("ispbill.payments.migrations.0006_refund_follow_up").follow_up_existing
    now = fixed_clock.now()
    credited, _ = record_payment(subscriber_id=world.sub.pk, amount=Decimal("500.00"), method="cash", received_at=now)
    held = Payment.objects.create(amount_paisa=20_000, method="gateway", status="refunded", refunded_paisa=20_000,
                                  gateway="sslcommerz", transaction_id="B1", received_at=now)
    record(action="payment.refund", at=now, target=audit_target(held),
           before={"status": "rejected", "refunded_paisa": 0}, after={"status": "refunded"})
    old = dict(amount_paisa=10_000, reason="x", status="pending", gateway_refund_id="R", created_at=now)
    first = Refund.objects.create(payment=credited, **old)
    second = Refund.objects.create(payment=credited, **{**old, "created_at": now + timedelta(seconds=1)})
    never = Refund.objects.create(payment=held, **{**old, "amount_paisa": 20_000})
    done = Refund.objects.create(payment=credited, **{**old, "status": "completed"})

    follow_up_existing(apps, None)

    got = {r.pk: (r.payment_status_before, r.next_check_at, r.completed_at) for r in Refund.objects.all()}
    assert got == {
        first.pk: ("completed", now + FIVE_MINUTES, None),
        second.pk: ("partially_refunded", now + timedelta(seconds=1) + FIVE_MINUTES, None),
        never.pk: ("rejected", now + FIVE_MINUTES, None),
        done.pk: ("", None, now),
    }


# -- the API -----------------------------------------------------------------------------------

def test_the_api_shows_the_follow_up_of_a_refund(api, client, world, later, receiver, browser, fixed_clock):
    payment = paid_with("sslcommerz", client, world, receiver, browser)

    response = api.post(f"/payments/{payment.pk}/refund", {"amount": "300.00", "reason": "charged twice"})

    assert response.status_code == 201, response.content
    body = response.json()["refund"]
    assert {k: body[k] for k in ("status", "completed_at", "checks", "last_checked_at", "last_error")} == {
        "status": "pending", "completed_at": None, "checks": 0, "last_checked_at": None, "last_error": "",
    }
    assert body["next_check_at"] == (fixed_clock.now() + FIVE_MINUTES).isoformat().replace("+00:00", "Z")
