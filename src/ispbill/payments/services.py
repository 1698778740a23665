"""Recording money received. Allocation goes to the oldest open invoices first."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from ispbill.billing import ledger
from ispbill.billing.choices import EntryKind
from ispbill.core import clock
from ispbill.core.errors import Conflict, DomainError, NotFound
from ispbill.core.money import to_paisa
from ispbill.payments.choices import PaymentMethod
from ispbill.payments.models import Payment
from ispbill.subscribers.models import Subscriber


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
) -> tuple[Payment, bool]:
    """Record a payment and allocate it; returns ``(payment, created)``.

    The same ``idempotency_key`` (or the same gateway transaction id) returns the
    payment already recorded instead of crediting twice. In the same transaction: a
    receipt is queued (SMS and email; ``notify=False`` for imports of old payments), and
    a subscriber suspended for non-payment is restored once nothing overdue remains —
    the router is told as soon as the transaction commits.
    """
    if amount <= 0:
        raise DomainError("amount must be greater than zero", code="invalid_amount", field="amount", status=422)
    if method not in PaymentMethod.values and not gateway:
        raise DomainError(f"unknown payment method '{method}'", code="invalid_method", field="method", status=422)
    # The columns hold 100 characters; a longer key must be refused, not fail the insert.
    if idempotency_key and len(idempotency_key) > 100:
        raise DomainError("Idempotency-Key must be at most 100 characters", code="invalid_idempotency_key", field="idempotency_key", status=422)
    paisa = to_paisa(amount)
    if not Subscriber.objects.filter(pk=subscriber_id).exists():
        raise NotFound("subscriber not found", code="subscriber_not_found")
    try:
        with transaction.atomic():
            ledger.lock_subscriber(subscriber_id)
            existing = _existing(idempotency_key=idempotency_key, gateway=gateway, transaction_id=transaction_id)
            if existing is not None:
                _check_same(existing, subscriber_id=subscriber_id, amount_paisa=paisa)
                return existing, False
            payment = Payment.objects.create(
                subscriber_id=subscriber_id, amount_paisa=paisa, method=method, reference=reference[:100],
                notes=notes, received_at=received_at, recorded_by=user, idempotency_key=idempotency_key or None,
                gateway=gateway, transaction_id=transaction_id,
            )
            ledger.post_credit(
                subscriber_id=subscriber_id, amount_paisa=paisa, kind=EntryKind.PAYMENT, now=received_at,
                payment_id=payment.pk,
            )
            _after_payment(payment, notify=notify)
            return payment, True
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its payment.
        existing = _existing(idempotency_key=idempotency_key, gateway=gateway, transaction_id=transaction_id)
        if existing is None:
            raise
        _check_same(existing, subscriber_id=subscriber_id, amount_paisa=paisa)
        return existing, False


def _after_payment(payment: Payment, *, notify: bool) -> None:
    from ispbill.network.services import restore_if_settled
    from ispbill.notifications.services import queue_message

    now = clock.now()
    if notify:
        sub = payment.subscriber
        for channel in ("sms", "email"):
            queue_message(
                subscriber=sub, kind="receipt", channel=channel, now=now, payment=payment,
                dedupe_key=f"receipt:{payment.pk}:{channel}",
            )
    restore_if_settled(subscriber_id=payment.subscriber_id, now=now)


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
