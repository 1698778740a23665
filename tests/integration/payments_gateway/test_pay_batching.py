"""Settling confirmed webhooks in batches (``payments.batching``): one transaction for
many payments, with the same result as settling them one at a time."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from decimal import Decimal

import pytest
from django.db import OperationalError, connection

from ispbill.audit.models import AuditEvent
from ispbill.billing import ledger
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.network.models import EnforcementAction
from ispbill.network.services import suspend_subscriber
from ispbill.notifications.models import Message
from ispbill.payments import batching, gateway_services
from ispbill.payments.choices import AttemptStatus, PaymentStatus, WebhookKind, WebhookOutcome
from ispbill.payments.gateways import Confirmation, GatewayRejected, Status
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem

from ..billing.billing_support import bill, make_package, make_subscriber
from .conftest import NOV_1

_refs = itertools.count(1)


@pytest.fixture
def package(db, fixed_clock):
    return make_package("Home 10M", "1000.00")


def owing(package, count: int, **extra) -> list[Subscriber]:
    """``count`` subscribers each owing November's 1000.00."""
    subs = [make_subscriber(package, NOV_1, **extra) for _ in range(count)]
    bill(NOV_1)
    return subs


def attempt_for(sub: Subscriber, *, paisa: int = 100_000, gateway: str = "sslcommerz") -> PaymentAttempt:
    from ispbill.core import clock

    now = clock.now()
    return PaymentAttempt.objects.create(
        reference=f"PBATCH{next(_refs):010d}", subscriber=sub, amount_paisa=paisa, currency="BDT", gateway=gateway,
        status=AttemptStatus.STARTED, created_at=now, updated_at=now,
    )


def request_for(attempt: PaymentAttempt | None, *, txn: str | None, amount: str = "1000.00", status=Status.COMPLETED,
                reason: str = "", reference: str | None = None, gateway: str = "sslcommerz") -> batching.SettleRequest:
    from ispbill.core import clock

    now = clock.now()
    webhook = InboundWebhook.objects.create(
        gateway=gateway, kind=WebhookKind.IPN, method="POST", path="/webhooks/sslcommerz/ipn", headers={}, body="",
        received_at=now,
    )
    confirmation = Confirmation(
        status=status, transaction_id=txn, amount=Decimal(amount) if amount else None, currency="BDT",
        reference=reference if reference is not None else (attempt.reference if attempt else None),
        method_label="Rocket", risk=None, raw={}, gateway=gateway, gateway_reference=f"VAL-{txn}" if txn else None,
    )
    return batching.SettleRequest(webhook=webhook, confirmation=confirmation, review_reason=reason, attempt_hint=None,
                                  now=now)


def settle_one_by_one(requests: list[batching.SettleRequest]) -> None:
    """The reference: ``gateway_services.settle`` for each, in its own transaction."""
    from django.db import transaction

    for r in requests:
        with transaction.atomic():
            settled = gateway_services.settle(confirmation=r.confirmation, gateway=r.gateway, now=r.now,
                                              review_reason=r.review_reason, attempt_hint=r.attempt_hint)
            processed = gateway_services.Processed(settled.outcome, settled.detail, "received", settled.payment,
                                                   settled.attempt)
            gateway_services._record_outcome(r.webhook, processed, now=r.now, replay=False)


def footprint(sub: Subscriber) -> dict:
    """Everything a payment leaves behind for ``sub``, without ids and random references."""
    payment = Payment.objects.get(subscriber=sub)
    attempt = PaymentAttempt.objects.get(pk=payment.attempt_id)
    webhook = InboundWebhook.objects.get(payment=payment)
    messages = Message.objects.filter(payment=payment).order_by("channel")
    return {
        "payment": (payment.amount_paisa, payment.currency, payment.method, payment.method_label, payment.status,
                    payment.gateway, payment.reference == attempt.reference, payment.notes, payment.received_at,
                    payment.refunded_paisa, payment.review_reason),
        "ledger": sorted((e.kind, e.amount_paisa, e.invoice_id is not None, e.created_at)
                         for e in LedgerEntry.objects.filter(payment=payment)),
        "invoices": [(i.amount_due_paisa, i.status) for i in Invoice.objects.filter(subscriber=sub).order_by("id")],
        "attempt": (attempt.status, attempt.payment_id == payment.pk, attempt.next_check_at, attempt.updated_at,
                    attempt.gateway_reference == payment.gateway_reference == f"VAL-{payment.transaction_id}"),
        "messages": [(m.kind, m.channel,
                      m.recipient.endswith(sub.phone[-10:]) if m.channel == "sms" else m.recipient == sub.email,
                      m.language, m.trigger, m.status, m.dedupe_key.replace(str(payment.pk), "P"))
                     for m in messages],
        "outbox": sorted((o.topic, o.state, o.next_attempt_at) for o in OutboxItem.objects.filter(
            dedupe_key__in=[f"message:{m.pk}" for m in messages])),
        "audit": [(a.action, a.actor_kind, a.summary, {k: v for k, v in a.after.items() if k != "transaction_id"})
                  for a in AuditEvent.objects.filter(target_type="payment", target_id=payment.pk)],
        "webhook": (webhook.outcome, webhook.outcome_detail.replace(str(payment.pk), "P"), webhook.processed_at,
                    webhook.attempt_id == attempt.pk),
        "balance": ledger.balance(sub.pk),
    }


def test_a_batch_leaves_exactly_what_settling_one_by_one_leaves(package):
    batched = owing(package, 3, email="a@example.com")
    single = owing(package, 3, email="a@example.com")
    batch = [request_for(attempt_for(s), txn=f"BT{s.pk}") for s in batched]
    reference = [request_for(attempt_for(s), txn=f"BT{s.pk}") for s in single]

    results = batching.settle_many(batch)
    settle_one_by_one(reference)

    assert [r.outcome for r in results] == [WebhookOutcome.ACCEPTED] * 3
    assert [r.page for r in results] == ["received"] * 3
    for b, s in zip(batched, single):
        got, want = footprint(b), footprint(s)
        assert got == want
        assert got["balance"] == 0 and got["invoices"] == [(0, "paid")]
        assert len(got["messages"]) == 2 and len(got["outbox"]) == 2 and len(got["audit"]) == 1
    assert ledger.ledger_discrepancies() == []


def test_a_subscriber_without_email_gets_the_sms_receipt_only(package):
    (sub,) = owing(package, 1, email="")
    (result,) = batching.settle_many([request_for(attempt_for(sub), txn="NOEMAIL")])
    assert result.outcome == WebhookOutcome.ACCEPTED
    assert list(Message.objects.filter(payment=result.payment).values_list("channel", flat=True)) == ["sms"]


def test_the_same_transaction_twice_in_one_batch_credits_once(package):
    (sub,) = owing(package, 1, email="b@example.com")
    attempt = attempt_for(sub)
    batch = [request_for(attempt, txn="SAME") for _ in range(3)]

    results = batching.settle_many(batch)

    assert [r.outcome for r in results] == ["accepted", "duplicate", "duplicate"]
    (payment,) = Payment.objects.all()
    assert all(r.payment.pk == payment.pk for r in results)
    assert LedgerEntry.objects.filter(payment=payment).count() == 1
    assert Message.objects.filter(payment=payment).count() == 2
    assert sorted(InboundWebhook.objects.values_list("outcome", flat=True)) == ["accepted", "duplicate", "duplicate"]
    assert ledger.balance(sub.pk) == 0 and ledger.ledger_discrepancies() == []


def test_two_payments_of_one_subscriber_in_one_batch_are_allocated_in_turn(package):
    (sub,) = owing(package, 1)
    first, second = attempt_for(sub, paisa=60_000), attempt_for(sub, paisa=60_000)

    results = batching.settle_many([request_for(first, txn="PART1", amount="600.00"),
                                    request_for(second, txn="PART2", amount="600.00")])

    assert [r.outcome for r in results] == ["accepted", "accepted"]
    assert Payment.objects.filter(subscriber=sub, status=PaymentStatus.COMPLETED).count() == 2
    (invoice,) = Invoice.objects.filter(subscriber=sub)
    assert (invoice.amount_due_paisa, invoice.status) == (0, "paid")
    assert ledger.balance(sub.pk) == -20_000  # 200.00 left as credit
    assert ledger.unapplied_credit(sub.pk) == 20_000
    assert ledger.ledger_discrepancies() == []


def test_holds_failures_and_errors_in_a_batch_leave_the_rest_credited(package):
    good, mismatched, failed, malformed = owing(package, 4)
    batch = [
        request_for(attempt_for(good), txn="GOOD"),
        request_for(attempt_for(mismatched), txn="MISMATCH", amount="999.99",
                    reason="amount_mismatch: expected 1000.00 BDT, the gateway says 999.99 BDT"),
        request_for(attempt_for(failed), txn=None, amount="", status=Status.FAILED),
        request_for(attempt_for(malformed), txn=None),  # money moved, but no transaction id at all
        request_for(None, txn="STRANGER", reference="PNOSUCHATTEMPT"),
    ]

    results = batching.settle_many(batch)

    assert results[0].outcome == "accepted" and results[0].payment.status == PaymentStatus.COMPLETED
    assert results[1].outcome == "accepted" and results[1].payment.status == PaymentStatus.NEEDS_REVIEW
    assert results[1].payment.review_reason.startswith("amount_mismatch")
    assert results[2].outcome == "accepted" and results[2].payment is None
    assert PaymentAttempt.objects.get(subscriber=failed).status == AttemptStatus.FAILED
    assert isinstance(results[3], GatewayRejected) and results[3].code == "malformed"
    assert results[4].payment.status == PaymentStatus.NEEDS_REVIEW and results[4].payment.subscriber_id is None
    # Only the good one is on the ledger; the malformed one's webhook is left for the caller.
    assert ledger.balance(good.pk) == 0
    assert [ledger.balance(s.pk) for s in (mismatched, failed, malformed)] == [100_000] * 3
    assert LedgerEntry.objects.filter(payment__isnull=False).count() == 1
    assert InboundWebhook.objects.get(pk=batch[3].webhook.pk).outcome == WebhookOutcome.RECEIVED
    assert [InboundWebhook.objects.get(pk=r.webhook.pk).outcome for r in batch if r is not batch[3]] == ["accepted"] * 4
    assert ledger.ledger_discrepancies() == []


def test_a_payment_in_a_batch_restores_a_subscriber_suspended_for_not_paying(package, fixed_clock):
    sub, other = owing(package, 2)
    suspend_subscriber(subscriber_id=sub.pk, reason="overdue", now=fixed_clock.now())

    batching.settle_many([request_for(attempt_for(sub), txn="BACK"), request_for(attempt_for(other), txn="STAY")])

    assert Subscriber.objects.get(pk=sub.pk).status == "active"
    assert EnforcementAction.objects.filter(subscriber=sub, action="restore", reason="payment").count() == 1
    assert not EnforcementAction.objects.filter(subscriber=other).exists()


def test_the_router_is_told_of_a_restore_from_another_thread_than_the_settling_one(
    package, fixed_clock, monkeypatch, django_capture_on_commit_callbacks,
):
    (sub,) = owing(package, 1)
    suspend_subscriber(subscriber_id=sub.pk, reason="overdue", now=fixed_clock.now())
    sent_from: list[str] = []
    monkeypatch.setattr(outbox, "dispatch", lambda **kwargs: sent_from.append(threading.current_thread().name))
    batcher, future = batching.Batcher(max_batch=8), Future()

    with django_capture_on_commit_callbacks(execute=True):
        batcher._settle([(request_for(attempt_for(sub), txn="NIGHT"), future)])
    batcher._dispatcher.shutdown(wait=True)

    assert future.result().outcome == "accepted"
    assert len(sent_from) == 1 and sent_from[0].startswith("ispbill-restore")
    assert EnforcementAction.objects.filter(subscriber=sub, action="restore").count() == 1


def test_a_batch_that_fails_as_a_whole_is_settled_again_one_by_one(package, monkeypatch):
    subs = owing(package, 3)
    batch = [(request_for(attempt_for(s), txn=f"RETRY{s.pk}"), Future()) for s in subs]
    real = batching.ledger.post_payment_credits
    calls = []

    def fail_first(credits):
        calls.append(len(credits))
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        return real(credits)

    monkeypatch.setattr(batching.ledger, "post_payment_credits", fail_first)
    batching.Batcher(max_batch=8)._settle(batch)

    assert calls == [3, 1, 1, 1]
    assert [future.result().outcome for _, future in batch] == ["accepted"] * 3
    assert Payment.objects.count() == 3 and LedgerEntry.objects.filter(payment__isnull=False).count() == 3
    assert ledger.ledger_discrepancies() == []


def test_an_error_recorded_after_the_batch_committed_does_not_overwrite_its_outcome(package):
    (sub,) = owing(package, 1)
    request = request_for(attempt_for(sub), txn="LATE")
    (accepted,) = batching.settle_many([request])
    late = InboundWebhook.objects.get(pk=request.webhook.pk)  # as the request thread still holds it
    late.outcome = WebhookOutcome.RECEIVED

    gateway_services._record_outcome(late, gateway_services.Processed(
        WebhookOutcome.ERROR, "internal error: TimeoutError", "confirming", code="internal_error"),
        now=request.now, replay=False)

    stored = InboundWebhook.objects.get(pk=request.webhook.pk)
    assert (stored.outcome, stored.payment_id) == (WebhookOutcome.ACCEPTED, accepted.payment.pk)
    assert late.outcome == WebhookOutcome.ACCEPTED  # read back


def test_one_webhook_that_fails_by_itself_gets_its_error(package, monkeypatch):
    (sub,) = owing(package, 1)
    request, future = request_for(attempt_for(sub), txn="ALONE"), Future()
    monkeypatch.setattr(batching.ledger, "post_payment_credits", lambda credits: (_ for _ in ()).throw(
        OperationalError("server closed the connection")))

    batching.Batcher(max_batch=8)._settle([(request, future)])

    with pytest.raises(OperationalError):
        future.result()
    assert not Payment.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_webhooks_through_the_settling_thread_credit_each_once(fixed_clock):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent transactions (PostgreSQL)")
    package = make_package("Home 10M", "1000.00")
    subs = owing(package, 12)
    requests = [request_for(attempt_for(s), txn=f"T{s.pk}") for s in subs]
    requests += [request_for(PaymentAttempt.objects.get(subscriber=subs[0]), txn=f"T{subs[0].pk}") for _ in range(4)]
    batching.enable(8)
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def deliver(i):
        try:
            barrier.wait(timeout=10)
            results[i] = batching.settle_webhook(requests[i])
        except BaseException as exc:  # checked below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(requests))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        batching.disable()

    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["accepted"] * 12 + ["duplicate"] * 4
    assert Payment.objects.count() == 12
    assert LedgerEntry.objects.filter(payment__isnull=False).count() == 12
    assert Message.objects.filter(kind="receipt").count() == 12  # no email addresses: SMS only
    assert all(ledger.balance(s.pk) == 0 for s in subs)
    assert ledger.ledger_discrepancies() == []
