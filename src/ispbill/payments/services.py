"""Recording money received and the exceptions queue (match, reject, refund).

Allocation goes to the oldest open invoices first; a payment's credit is taken back
(refunds) from unapplied credit first, then from the newest invoices it paid.
Gateway flows (attempts, callbacks, webhooks, re-queries) are in :mod:`.gateway_services`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction

from ispbill.audit import services as audit
from ispbill.billing import ledger
from ispbill.billing.choices import EntryKind
from ispbill.core import clock
from ispbill.core.errors import Conflict, DomainError, NotFound
from ispbill.core.money import from_paisa, to_paisa
from ispbill.payments.choices import PaymentMethod, PaymentStatus, RefundStatus
from ispbill.payments.models import Payment, PaymentAttempt, Refund
from ispbill.subscribers.models import Subscriber

log = logging.getLogger("ispbill.payments")

#: When a refund the gateway completes later is first asked about.
REFUND_FIRST_CHECK = timedelta(minutes=5)


def record_payment(
    *,
    subscriber_id: int,
    amount: Decimal,
    method: str,
    received_at: datetime,
    reference: str = "",
    notes: str = "",
    user=None,
    idempotency_key: str | None = None,
    gateway: str = "",
    transaction_id: str | None = None,
    notify: bool = True,
    method_label: str = "",
    gateway_reference: str = "",
    attempt_id: int | None = None,
    transaction_id_checked: bool = False,
    ip: str | None = None,
) -> tuple[Payment, bool]:
    """Record a payment and allocate it; returns ``(payment, created)``.

    The same ``idempotency_key`` (or the same gateway transaction id) returns the
    payment already recorded instead of crediting twice. In the same transaction: a
    receipt is queued (SMS and email; ``notify=False`` for imports of old payments), and
    a subscriber suspended for non-payment is restored once nothing overdue remains —
    the router is told as soon as the transaction commits. A payment recorded by staff or
    the API (not a gateway's) is written to the audit log as ``payment.record``; a
    replay returns the first payment and records nothing.
    """
    if amount <= 0:
        raise DomainError("amount must be greater than zero", code="invalid_amount", field="amount", status=422)
    if method not in PaymentMethod.values and not gateway:
        raise DomainError(f"unknown payment method '{method}'", code="invalid_method", field="method", status=422)
    # The columns hold 100 characters; a longer key must be refused, not fail the insert.
    if idempotency_key and len(idempotency_key) > 100:
        raise DomainError("Idempotency-Key must be at most 100 characters", code="invalid_idempotency_key", field="idempotency_key", status=422)
    paisa = to_paisa(amount)
    try:
        with transaction.atomic():
            # Raises NotFound for an unknown subscriber; the row (and its status) is
            # passed down instead of being read again.
            sub = ledger.lock_subscriber(subscriber_id, with_package=False)
            # ``transaction_id_checked``: the caller (settle) has just looked for this
            # gateway transaction itself; a concurrent insert of it still fails the
            # INSERT below on the unique constraint and is answered in the except.
            existing = _existing(idempotency_key=idempotency_key, gateway=gateway,
                                 transaction_id=None if transaction_id_checked else transaction_id)
            if existing is not None:
                _check_same(existing, subscriber_id=subscriber_id, amount_paisa=paisa)
                return existing, False
            payment = Payment.objects.create(
                subscriber_id=subscriber_id, amount_paisa=paisa, method=method, reference=reference[:100],
                notes=notes, received_at=received_at, recorded_by=user, idempotency_key=idempotency_key or None,
                gateway=gateway, transaction_id=transaction_id, method_label=method_label[:40],
                gateway_reference=gateway_reference[:200], attempt_id=attempt_id,
            )
            ledger.post_credit(
                subscriber_id=subscriber_id, amount_paisa=paisa, kind=EntryKind.PAYMENT, now=received_at,
                payment_id=payment.pk,
            )
            if not gateway:  # gateway settlement records its own event
                audit.record(
                    action="payment.record", at=clock.now(), user=user, target=audit_target(payment),
                    subscriber_id=subscriber_id, ip=ip,
                    after={"amount_paisa": paisa, "method": method, "reference": payment.reference,
                           "received_at": received_at},
                    summary=f"{payment.method} payment recorded",
                )
            _after_payment(payment, notify=notify, subscriber=sub)
            return payment, True
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its payment.
        existing = _existing(idempotency_key=idempotency_key, gateway=gateway, transaction_id=transaction_id)
        if existing is None:
            raise
        _check_same(existing, subscriber_id=subscriber_id, amount_paisa=paisa)
        return existing, False


def audit_target(payment: Payment) -> audit.Target:
    """How a payment is named in the audit log."""
    return audit.Target("payment", payment.pk, f"Payment {payment.pk}: {payment}")


def _after_payment(payment: Payment, *, notify: bool, subscriber: Subscriber | None = None) -> None:
    """Receipts and restore. ``subscriber``: the payment's subscriber as locked by the
    caller in this transaction (loaded here otherwise)."""
    from ispbill.network.services import restore_if_settled
    from ispbill.notifications.services import RECEIPT_CHANNELS, queue_messages, receipt_key

    now = clock.now()
    sub = subscriber if subscriber is not None else payment.subscriber
    if notify:
        queue_messages(
            subscriber=sub, kind="receipt", channels=RECEIPT_CHANNELS, now=now, payment=payment,
            dedupe_keys=tuple(receipt_key(payment.pk, channel) for channel in RECEIPT_CHANNELS),
        )
    restore_if_settled(subscriber_id=payment.subscriber_id, now=now, subscriber=sub)


def _existing(*, idempotency_key, gateway, transaction_id) -> Payment | None:
    if idempotency_key:
        found = Payment.objects.filter(idempotency_key=idempotency_key).first()
        if found:
            return found
    if transaction_id:
        return Payment.objects.filter(gateway=gateway, transaction_id=transaction_id).first()
    return None


def _check_same(existing: Payment, *, subscriber_id: int, amount_paisa: int) -> None:
    if existing.subscriber_id != subscriber_id or existing.amount_paisa != amount_paisa:
        raise Conflict(
            "this idempotency key or transaction id was already used for a different payment",
            code="duplicate_reference",
        )


# -- the exceptions queue ----------------------------------------------------------------------

def _locked_payment(payment_id: int) -> Payment:
    payment = Payment.objects.select_for_update(no_key=True).filter(pk=payment_id).first()
    if payment is None:
        raise NotFound("payment not found", code="payment_not_found")
    return payment


def _note(payment: Payment, text: str) -> None:
    payment.notes = f"{payment.notes}\n{text}".strip()


def match_payment(*, payment_id: int, subscriber_id: int, now: datetime, user=None, note: str = "") -> Payment:
    """Apply a payment held for review to ``subscriber_id``: it becomes ``completed``,
    is allocated like any other payment (oldest open invoices first, remainder as
    credit), a receipt is queued and service restored if nothing overdue remains."""
    with transaction.atomic():
        payment = _locked_payment(payment_id)
        if payment.status != PaymentStatus.NEEDS_REVIEW:
            raise Conflict(f"payment {payment.pk} is {payment.status}; only payments needing review can be matched",
                           code="payment_not_in_review")
        if payment.currency != "BDT":
            raise Conflict(f"payment {payment.pk} is in {payment.currency}; refund it instead", code="currency_not_supported")
        if not Subscriber.objects.filter(pk=subscriber_id).exists():
            raise NotFound("subscriber not found", code="subscriber_not_found", )
        before = {"status": payment.status, "subscriber_id": payment.subscriber_id}
        _credit_held(payment, subscriber_id=subscriber_id, now=now, user=user,
                     note=f"matched to subscriber {subscriber_id}" + (f": {note}" if note else ""))
        old, new = audit.changes(before, {"status": payment.status, "subscriber_id": subscriber_id})
        audit.record(
            action="payment.match", at=now, user=user, target=audit_target(payment), subscriber_id=subscriber_id,
            before=old, after={**new, "amount_paisa": payment.amount_paisa}, summary=(note or "").strip(),
        )
        return payment


def _credit_held(payment: Payment, *, subscriber_id: int, now: datetime, user=None, note: str) -> None:
    """Credit a held payment (row locked by the caller) to ``subscriber_id``."""
    sub = ledger.lock_subscriber(subscriber_id, with_package=False)
    payment.subscriber_id = subscriber_id
    payment.status = PaymentStatus.COMPLETED
    _note(payment, f"{now:%Y-%m-%d %H:%M} {note}" + (f" by {user}" if user else ""))
    payment.save(update_fields=["subscriber", "status", "notes"])
    ledger.post_credit(
        subscriber_id=subscriber_id, amount_paisa=payment.amount_paisa, kind=EntryKind.PAYMENT, now=now,
        payment_id=payment.pk,
    )
    if payment.attempt_id:
        PaymentAttempt.objects.filter(pk=payment.attempt_id).update(status="completed", updated_at=now)
    _after_payment(payment, notify=True, subscriber=sub)


def reject_payment(*, payment_id: int, reason: str, now: datetime, user=None) -> Payment:
    """Refuse a payment held for review (it stays on record, with no ledger entry).
    Money that really moved should then be refunded."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("say why the payment is rejected", code="reason_required", field="reason", status=422)
    with transaction.atomic():
        payment = _locked_payment(payment_id)
        if payment.status != PaymentStatus.NEEDS_REVIEW:
            raise Conflict(f"payment {payment.pk} is {payment.status}; only payments needing review can be rejected",
                           code="payment_not_in_review")
        payment.status = PaymentStatus.REJECTED
        _note(payment, f"{now:%Y-%m-%d %H:%M} rejected: {reason}" + (f" by {user}" if user else ""))
        payment.save(update_fields=["status", "notes"])
        audit.record(
            action="payment.reject", at=now, user=user, target=audit_target(payment), subscriber_id=payment.subscriber_id,
            before={"status": PaymentStatus.NEEDS_REVIEW}, after={"status": payment.status}, summary=reason,
        )
        return payment


def refund_payment(*, payment_id: int, amount: Decimal, reason: str, now: datetime, user=None, gateway=None) -> Refund:
    """Send ``amount`` of a gateway payment back through the gateway's refund API and
    record it: the payment's credit is taken back on the ledger (unapplied credit first,
    then the newest invoices it paid).

    A payment on the ledger (completed, partially refunded) may be refunded in parts; a
    payment never credited (needs review, rejected) only in full. Gateways without a
    refund API (Nagad) raise NotSupported; ``gateway`` is the adapter (default: the
    configured one for the payment's gateway). A refund the gateway completes later is
    ``pending`` and followed up by :mod:`.refund_services` (the ``refund_follow_up`` job).
    """
    from ispbill.payments.gateway_services import gateway_for

    reason = (reason or "").strip()
    if not reason:
        raise DomainError("say why the payment is refunded", code="reason_required", field="reason", status=422)
    paisa = to_paisa(amount)
    if paisa <= 0:
        raise DomainError("amount must be greater than zero", code="invalid_amount", field="amount", status=422)
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None:
        raise NotFound("payment not found", code="payment_not_found")
    _check_refundable(payment, paisa)
    if not payment.gateway:
        raise DomainError("only gateway payments are refunded here; pay cash refunds back by hand",
                          code="not_supported", status=501)
    adapter = gateway if gateway is not None else gateway_for(payment.gateway, required=True)
    # The gateway call happens outside any transaction (no lock held while waiting); the
    # gateway itself refuses to refund more than was paid, and the row is checked again below.
    try:
        answer = adapter.refund(payment.transaction_id, amount, reason, gateway_reference=payment.gateway_reference or None)
    except ValueError as exc:  # e.g. a bKash wallet payment we never had a paymentID for
        raise DomainError(f"{exc}; refund it through the gateway's merchant portal", code="not_supported", status=501) from exc
    refunded = to_paisa(answer.get("amount") or amount)
    with transaction.atomic():
        payment = _locked_payment(payment_id)
        credited = payment.status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED)
        if refunded > payment.amount_paisa - payment.refunded_paisa:
            # The gateway sent the money: record it, but say loudly that our books disagreed.
            log.error("refund of payment %s exceeds what was left to refund; recorded as the gateway reported", payment.pk)
            refunded = payment.amount_paisa - payment.refunded_paisa
        if credited:
            ledger.lock_subscriber(payment.subscriber_id)
            ledger.reverse_payment_credit(
                subscriber_id=payment.subscriber_id, payment_id=payment.pk, amount_paisa=refunded, now=now,
            )
        before = {"status": payment.status, "refunded_paisa": payment.refunded_paisa}
        payment.refunded_paisa += refunded
        payment.status = credited_status(payment)
        _note(payment, f"{now:%Y-%m-%d %H:%M} refunded {from_paisa(refunded):.2f}: {reason}" + (f" by {user}" if user else ""))
        payment.save(update_fields=["refunded_paisa", "status", "notes"])
        status = RefundStatus.COMPLETED if answer.get("status") == "completed" else RefundStatus.PENDING
        refund = Refund.objects.create(
            payment=payment, amount_paisa=refunded, reason=reason[:255], status=status,
            gateway_refund_id=str(answer.get("refund_id") or "")[:100], gateway_response=_jsonable(answer.get("raw") or {}),
            payment_status_before=before["status"], created_at=now, created_by=user,
            completed_at=now if status == RefundStatus.COMPLETED else None,
            next_check_at=now + REFUND_FIRST_CHECK if status == RefundStatus.PENDING else None,
        )
        old, new = audit.changes(before, {"status": payment.status, "refunded_paisa": payment.refunded_paisa})
        audit.record(
            action="payment.refund", at=now, user=user, target=audit_target(payment), subscriber_id=payment.subscriber_id,
            before=old, after={**new, "refund_paisa": refunded, "refund_status": status}, summary=reason,
        )
        return refund


def credited_status(payment: Payment) -> str:
    """The status of a payment on the ledger, from how much of it was refunded."""
    if payment.refunded_paisa <= 0:
        return PaymentStatus.COMPLETED
    if payment.refunded_paisa >= payment.amount_paisa:
        return PaymentStatus.REFUNDED
    return PaymentStatus.PARTIALLY_REFUNDED


def _check_refundable(payment: Payment, paisa: int) -> None:
    left = payment.amount_paisa - payment.refunded_paisa
    if payment.status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED):
        if paisa > left:
            raise DomainError(f"at most {left / 100:.2f} of this payment is left to refund", code="refund_too_large",
                              field="amount", status=422)
    elif payment.status in (PaymentStatus.NEEDS_REVIEW, PaymentStatus.REJECTED):
        if paisa != payment.amount_paisa:
            raise DomainError("a payment that was never credited is refunded in full", code="refund_must_be_full",
                              field="amount", status=422)
    else:
        raise Conflict(f"payment {payment.pk} is {payment.status}", code="payment_not_refundable")


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))
