"""Following up refunds the gateway completes later.

A refund the gateway accepts but completes later (SSLCommerz always answers "success" or
"processing" with a ``refund_ref_id``) is recorded ``pending`` by
:func:`~ispbill.payments.services.refund_payment`, with the payment's credit already
taken back on the ledger. :func:`follow_up_refunds` (the ``refund_follow_up`` job) and
staff's "check now" (:func:`check_refund`) ask the gateway what became of it:

* completed: the refund is ``completed``;
* cancelled (the money did not go back): in one transaction the refund becomes
  ``failed`` and the payment gets back what the refund took — its credit on the ledger
  (oldest open invoices first, the rest as credit) for a payment that was credited, its
  previous status for one that never was — and a subscriber suspended for non-payment
  whom that settles is restored (no receipt: no money arrived);
* still processing, or no answer: asked again later, 5 minutes doubling up to 6 hours
  between checks, for 14 days; then the refund stays ``pending`` with the reason in
  ``last_error``, for staff to settle with the gateway.

Each outcome is applied once: the refund row is locked and its status read again inside
the transaction, so two workers (or the job and "check now") never both apply it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from ispbill.audit import services as audit
from ispbill.audit.models import ActorKind
from ispbill.billing import ledger
from ispbill.billing.choices import EntryKind
from ispbill.billing.models import LedgerEntry
from ispbill.core.backoff import doubling
from ispbill.core.errors import Conflict, NotFound
from ispbill.core.money import from_paisa, to_paisa
from ispbill.payments import services
from ispbill.payments.choices import PaymentStatus, RefundStatus
from ispbill.payments.gateway_services import gateway_for
from ispbill.payments.gateways import GATEWAYS, GatewayError, GatewayRejected, GatewayUnavailable, NotSupported
from ispbill.payments.models import Payment, Refund

log = logging.getLogger("ispbill.payments")

FOLLOW_UP_FIRST_INTERVAL = services.REFUND_FIRST_CHECK
FOLLOW_UP_MAX_INTERVAL = timedelta(hours=6)
FOLLOW_UP_GIVE_UP = timedelta(days=14)

# What came of following up one refund (counted in the job's result).
COMPLETED = "completed"
FAILED = "failed"
STILL_PENDING = "still pending"
GIVEN_UP = "given up"
SKIPPED = "already settled"

#: Payment statuses a refund took credit back from (see ``refund_payment``).
_CREDITED_BEFORE = (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED)


def follow_up_refunds(*, now: datetime, limit: int = 200) -> str:
    """Ask the gateways about pending refunds whose next check is due; apply what they say."""
    due = list(
        Refund.objects.filter(status=RefundStatus.PENDING, next_check_at__lte=now)
        .select_related("payment").order_by("next_check_at", "id")[:limit]
    )
    if not due:
        return "no refunds to follow up"
    counts: dict[str, int] = {}
    for refund in due:
        try:
            outcome = _follow_up(refund, now=now)
        except Exception:  # one broken refund must not keep the others waiting
            log.exception("follow-up of refund %s failed", refund.pk)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return f"{len(due)} followed up: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def check_refund(*, refund_id: int, now: datetime, user=None, ip: str | None = None) -> tuple[Refund, str]:
    """Ask the gateway about one pending refund now (staff's "check now"), whether or not
    a check is due; returns the refund as it stands after and what came of it. ``user``
    is named in the audit log as having asked."""
    refund = Refund.objects.select_related("payment").filter(pk=refund_id).first()
    if refund is None:
        raise NotFound("refund not found", code="refund_not_found")
    if refund.status != RefundStatus.PENDING:
        raise Conflict(f"refund {refund.pk} is {refund.status}; only pending refunds are checked", code="refund_not_pending")
    outcome = _follow_up(refund, now=now, user=user, ip=ip)
    refund.refresh_from_db()
    return refund, outcome


def _follow_up(refund: Refund, *, now: datetime, user=None, ip: str | None = None) -> str:
    """Ask the gateway (outside any transaction: no lock is held while waiting) and apply
    the answer."""
    seen_checks = refund.checks
    try:
        answer = _refund_status(refund, refund.payment)
    except GatewayError as exc:
        if not isinstance(exc, GatewayUnavailable):
            log.warning("refund %s: asking %s refused: %s", refund.pk, refund.payment.gateway, exc.message)
        return _reschedule(refund.pk, seen_checks=seen_checks, now=now, error=f"{exc.code}: {exc.message}", user=user, ip=ip)
    status = answer.get("status")
    if status == "completed":
        return _complete(refund.pk, answer, now=now, user=user, ip=ip)
    if status == "failed":
        return _fail(refund.pk, answer, now=now, user=user, ip=ip)
    return _reschedule(refund.pk, seen_checks=seen_checks, now=now, error=_pending_detail(answer), user=user, ip=ip)


def _refund_status(refund: Refund, payment: Payment) -> dict:
    """The adapter's ``refund_status`` answer about this refund: ``{"status":
    "completed"|"pending"|"failed", "refund_id", "amount", "raw"}``. SSLCommerz is asked
    by the refund's id; bKash by the payment (trxID and paymentID), about its latest
    refund, which counts only if it is this one."""
    adapter = gateway_for(payment.gateway)
    if adapter is None:
        raise GatewayUnavailable(f"{payment.gateway or 'the gateway'} is not configured", code="gateway_not_configured")
    ask = getattr(adapter, "refund_status", None)
    if ask is None:
        raise NotSupported(f"{adapter.label} cannot be asked about refunds; check its merchant portal")
    if adapter.name != "bkash":
        if not refund.gateway_refund_id:
            raise GatewayRejected("the gateway gave no refund id to ask about", code="malformed")
        return ask(refund.gateway_refund_id)
    if not payment.gateway_reference or not payment.transaction_id:
        raise NotSupported("bKash is asked about refunds by the payment's paymentID and trxID, and one is missing")
    answer = ask(payment.transaction_id, gateway_reference=payment.gateway_reference)
    theirs = str(answer.get("refund_id") or "")
    amount = answer.get("amount")
    if refund.gateway_refund_id:
        ours = theirs == refund.gateway_refund_id
    else:
        ours = amount is not None and to_paisa(amount) == refund.amount_paisa
    if not ours:
        return {"status": "pending", "refund_id": theirs, "amount": amount, "raw": answer.get("raw") or {},
                "detail": f"bKash reports refund {theirs or '(no id)'}, not this one"}
    return answer


def _pending_detail(answer: dict) -> str:
    if answer.get("detail"):
        return str(answer["detail"])
    raw = answer.get("raw") or {}
    said = ", ".join(f"{key}={raw[key]}" for key in ("status", "transactionStatus", "errorReason") if raw.get(key))
    return f"not finished at the gateway ({said or 'no status given'})"


def _locked_pending(refund_id: int) -> Refund | None:
    """The refund's row, locked for this transaction, if it is still pending."""
    refund = Refund.objects.select_for_update(no_key=True).filter(pk=refund_id).first()
    if refund is None or refund.status != RefundStatus.PENDING:
        return None
    return refund


def _label(payment: Payment) -> str:
    cls = GATEWAYS.get(payment.gateway)
    return cls.label if cls is not None else (payment.gateway or "the gateway")


def _answered(refund: Refund, answer: dict, *, now: datetime) -> None:
    """Record a final answer on the (locked) refund; the first gateway response is kept."""
    refund.gateway_response = {**(refund.gateway_response or {}), "follow_up": services._jsonable(answer.get("raw") or {})}
    refund.checks += 1
    refund.last_checked_at = now
    refund.next_check_at = None
    refund.last_error = ""


def _actor(user) -> dict:
    """Staff who pressed "check now", or the gateway when the worker asked."""
    return {"user": user} if user is not None else {"actor_kind": ActorKind.GATEWAY}


def _complete(refund_id: int, answer: dict, *, now: datetime, user=None, ip: str | None = None) -> str:
    with transaction.atomic():
        refund = _locked_pending(refund_id)
        if refund is None:
            return SKIPPED
        payment = refund.payment
        refund.status = RefundStatus.COMPLETED
        refund.completed_at = now
        _answered(refund, answer, now=now)
        refund.save(update_fields=["status", "completed_at", "gateway_response", "checks", "last_checked_at",
                                   "next_check_at", "last_error"])
        audit.record(
            action="refund.complete", at=now, **_actor(user), ip=ip, target=services.audit_target(payment),
            subscriber_id=payment.subscriber_id,
            before={"refund_status": RefundStatus.PENDING},
            after={"refund_status": refund.status, "refund_id": refund.pk, "refund_paisa": refund.amount_paisa,
                   "gateway_refund_id": refund.gateway_refund_id},
            summary=f"{_label(payment)} completed the refund of {from_paisa(refund.amount_paisa):.2f}",
        )
    log.info("refund %s of payment %s completed by %s", refund.pk, payment.pk, payment.gateway)
    return COMPLETED


def _fail(refund_id: int, answer: dict, *, now: datetime, user=None, ip: str | None = None) -> str:
    """The gateway cancelled the refund: the money did not go back, so the payment gets
    back what the refund took from it."""
    with transaction.atomic():
        refund = _locked_pending(refund_id)
        if refund is None:
            return SKIPPED
        payment = services._locked_payment(refund.payment_id)
        amount = refund.amount_paisa
        credited = _took_credit(refund, payment)
        before = {"status": payment.status, "refunded_paisa": payment.refunded_paisa}
        applied: list[ledger.Applied] = []
        subscriber = None
        if credited:
            subscriber = ledger.lock_subscriber(payment.subscriber_id, with_package=False)
            # Entries of kind refund (negative) with the payment: its refund entries then
            # sum to what was really refunded, and a later refund can take this back again.
            applied = ledger.post_credit(
                subscriber_id=payment.subscriber_id, amount_paisa=amount, kind=EntryKind.REFUND, now=now,
                payment_id=payment.pk,
            )
        payment.refunded_paisa = max(payment.refunded_paisa - amount, 0)
        if credited:
            payment.status = services.credited_status(payment)
        else:
            payment.status = refund.payment_status_before or PaymentStatus.NEEDS_REVIEW
        label = _label(payment)
        services._note(payment, f"{now:%Y-%m-%d %H:%M} {label} cancelled the refund of {from_paisa(amount):.2f}"
                       + ("; credit given back" if credited else ""))
        payment.save(update_fields=["refunded_paisa", "status", "notes"])
        refund.status = RefundStatus.FAILED
        _answered(refund, answer, now=now)
        refund.save(update_fields=["status", "gateway_response", "checks", "last_checked_at", "next_check_at",
                                   "last_error"])
        old, new = audit.changes(before, {"status": payment.status, "refunded_paisa": payment.refunded_paisa})
        audit.record(
            action="refund.fail", at=now, **_actor(user), ip=ip, target=services.audit_target(payment),
            subscriber_id=payment.subscriber_id,
            before={**old, "refund_status": RefundStatus.PENDING},
            after={**new, "refund_status": refund.status, "refund_id": refund.pk, "refund_paisa": amount,
                   "credited_back_paisa": amount if credited else 0,
                   "applied": [{"invoice_id": a.invoice_id, "amount_paisa": a.amount_paisa} for a in applied]},
            summary=f"{label} cancelled the refund of {from_paisa(amount):.2f}: the money did not go back"
                    + ("; the payment's credit is restored" if credited else ""),
        )
        if credited:
            from ispbill.network.services import restore_if_settled

            restore_if_settled(subscriber_id=payment.subscriber_id, now=now, subscriber=subscriber)
    log.warning("refund %s of payment %s was cancelled by %s; %s", refund.pk, payment.pk, payment.gateway,
                "credit given back" if credited else "payment status restored")
    return FAILED


def _took_credit(refund: Refund, payment: Payment) -> bool:
    """Whether recording the refund took credit back on the ledger (a payment that was
    credited) or not (needs review, rejected)."""
    if refund.payment_status_before:
        return refund.payment_status_before in _CREDITED_BEFORE
    return LedgerEntry.objects.filter(payment_id=payment.pk, kind=EntryKind.PAYMENT).exists()


def _reschedule(
    refund_id: int, *, seen_checks: int, now: datetime, error: str, user=None, ip: str | None = None,
) -> str:
    """Not settled yet: count the check and set the next one (or stop asking). A check
    another worker already counted since ``seen_checks`` is not counted twice."""
    with transaction.atomic():
        refund = _locked_pending(refund_id)
        if refund is None:
            return SKIPPED
        if refund.checks != seen_checks:
            return STILL_PENDING
        refund.checks += 1
        refund.last_checked_at = now
        outcome = STILL_PENDING
        if now - refund.created_at >= FOLLOW_UP_GIVE_UP:
            refund.next_check_at = None
            error = (f"stopped asking after {FOLLOW_UP_GIVE_UP.days} days; settle it with the gateway's merchant "
                     f"portal. Last: {error}")
            outcome = GIVEN_UP
            log.warning("refund %s of payment %s: still not settled after %s days; stopped asking", refund.pk,
                        refund.payment_id, FOLLOW_UP_GIVE_UP.days)
        else:
            refund.next_check_at = now + doubling(FOLLOW_UP_FIRST_INTERVAL, refund.checks, FOLLOW_UP_MAX_INTERVAL)
        refund.last_error = error[:500]
        refund.save(update_fields=["checks", "last_checked_at", "next_check_at", "last_error"])
        if user is not None:
            payment = refund.payment
            audit.record(
                action="refund.check", at=now, user=user, ip=ip, target=services.audit_target(payment),
                subscriber_id=payment.subscriber_id,
                after={"refund_status": refund.status, "refund_id": refund.pk, "last_error": refund.last_error},
                summary=f"asked {_label(payment)} about refund {refund.pk}: {outcome}",
            )
        return outcome
