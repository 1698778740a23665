"""Network enforcement as desired state.

Each subscriber has a desired network state (active or suspended) and the state last
applied on the router. Changing the desired state bumps a generation and writes an
:class:`EnforcementAction` plus its outbox item (``network.enforce``) in the same
transaction; the handler applies it through the router's driver. An older action whose
generation has been overtaken is skipped, so a suspend that is retried after a later
payment can never undo the restore.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from django.db import transaction

from ispbill.audit import services as audit_log
from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.core import clock
from ispbill.core.timeutil import local_date
from ispbill.dunning.policy import InvoiceState, MessageKind, SubscriberState, should_suspend
from ispbill.network.choices import ActionKind, ActionStatus, NetState, Reason
from ispbill.network.models import EnforcementAction, NetworkState
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem

log = logging.getLogger("ispbill.network")

ENFORCE_TOPIC = "network.enforce"


def _state_for_update(subscriber_id: int) -> NetworkState:
    NetworkState.objects.get_or_create(subscriber_id=subscriber_id)
    return NetworkState.objects.select_for_update().get(subscriber_id=subscriber_id)


def request_enforcement(
    *, subscriber: Subscriber, target: str, reason: str, now: datetime, user=None
) -> tuple[EnforcementAction, int]:
    """Set the desired state and queue its action; returns (action, outbox item id).
    Runs inside the caller's transaction, which holds the subscriber's lock."""
    state = _state_for_update(subscriber.pk)
    state.desired = target
    state.generation += 1
    state.reason = reason
    state.changed_at = now
    state.save(update_fields=["desired", "generation", "reason", "changed_at"])
    kind = ActionKind.SUSPEND if target == NetState.SUSPENDED else ActionKind.RESTORE
    action = EnforcementAction.objects.create(
        subscriber=subscriber, router_id=subscriber.router_id, action=kind, generation=state.generation,
        reason=reason, requested_by=user, created_at=now,
    )
    key = f"enforce:{subscriber.pk}:{kind}:{state.generation}"
    outbox.enqueue(topic=ENFORCE_TOPIC, dedupe_key=key, payload={"action_id": action.pk}, now=now)
    item_id = OutboxItem.objects.filter(dedupe_key=key).values_list("id", flat=True).get()
    return action, item_id


def _notify(subscriber: Subscriber, kind: str, generation: int, now: datetime) -> None:
    from ispbill.notifications.services import queue_messages

    channels = ("sms", "email")
    queue_messages(
        subscriber=subscriber, kind=kind, channels=channels, now=now,
        dedupe_keys=tuple(f"{kind}:{subscriber.pk}:{generation}:{c}" for c in channels),
    )


_AUDIT_SUMMARY = {
    Reason.OVERDUE: "Unpaid past the grace period",
    Reason.PAYMENT: "Nothing overdue after a payment",
    Reason.STAFF: "By staff",
}


def _status_event(sub: Subscriber, *, action: str, old: str, reason: str, now: datetime, user=None, note: str = ""):
    """The audit event of one suspension or restore (unsaved, for ``record``/``record_many``)."""
    summary = _AUDIT_SUMMARY.get(reason, reason)
    return audit_log.build(
        action=action, at=now, user=user, target=audit_log.target_of(sub),
        before={"status": old}, after={"status": sub.status, "reason": reason},
        summary=f"{summary}: {note}" if note else summary,
    )


def _suspend(*, subscriber_id: int, reason: str, now: datetime, user=None) -> tuple[EnforcementAction, Subscriber] | None:
    """The suspension itself, inside the caller's transaction; None if not active."""
    sub = Subscriber.objects.select_for_update(of=("self",)).select_related("package").get(pk=subscriber_id)
    if sub.status != SubscriberStatus.ACTIVE:
        return None
    sub.status = SubscriberStatus.SUSPENDED
    sub.save(update_fields=["status", "updated_at"])
    action, _ = request_enforcement(subscriber=sub, target=NetState.SUSPENDED, reason=reason, now=now, user=user)
    _notify(sub, MessageKind.SUSPENDED, action.generation, now)
    log.info("subscriber %s suspended (%s)", sub.pppoe_username, reason)
    return action, sub


def suspend_subscriber(
    *, subscriber_id: int, reason: str, now: datetime, user=None, audit: bool = True, note: str = ""
) -> EnforcementAction | None:
    """Suspend an active subscriber (idempotent: None if not active). Records the audit
    event ``subscriber.suspend`` (actor ``user``, or the system) unless ``audit`` is
    False because the caller records the change itself."""
    with transaction.atomic():
        done = _suspend(subscriber_id=subscriber_id, reason=reason, now=now, user=user)
        if done is None:
            return None
        action, sub = done
        if audit:
            _status_event(
                sub, action="subscriber.suspend", old=SubscriberStatus.ACTIVE, reason=reason, now=now, user=user, note=note,
            ).save(force_insert=True)
        return action


def restore_subscriber(
    *, subscriber_id: int, reason: str, now: datetime, user=None, audit: bool = True, note: str = ""
) -> EnforcementAction | None:
    """Restore a suspended subscriber (idempotent: None if not suspended). The router
    action is dispatched by this process as soon as the transaction commits. Records
    ``subscriber.restore`` unless ``audit`` is False (as :func:`suspend_subscriber`)."""
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update(of=("self",)).select_related("package").get(pk=subscriber_id)
        if sub.status != SubscriberStatus.SUSPENDED:
            return None
        sub.status = SubscriberStatus.ACTIVE
        sub.save(update_fields=["status", "updated_at"])
        action, item_id = request_enforcement(subscriber=sub, target=NetState.ACTIVE, reason=reason, now=now, user=user)
        _notify(sub, MessageKind.RECONNECTED, action.generation, now)
        if audit:
            _status_event(
                sub, action="subscriber.restore", old=SubscriberStatus.SUSPENDED, reason=reason, now=now, user=user,
                note=note,
            ).save(force_insert=True)
        outbox.dispatch_after_commit([item_id], now_fn=clock.now)
        log.info("subscriber %s restored (%s)", sub.pppoe_username, reason)
        return action


def _overdue(subscriber: Subscriber, today: date, grace_days: int) -> bool:
    state = SubscriberState(
        status=SubscriberStatus.ACTIVE, never_suspend=False, grace_days_override=subscriber.grace_days_override
    )
    for due, amount, status in Invoice.objects.filter(
        subscriber_id=subscriber.pk, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID), amount_due_paisa__gt=0
    ).values_list("due_on", "amount_due_paisa", "status"):
        if should_suspend(InvoiceState(due, amount, status), state, today, grace_days=grace_days):
            return True
    return False


def restore_if_settled(
    *, subscriber_id: int, now: datetime, subscriber: Subscriber | None = None
) -> EnforcementAction | None:
    """After money arrives: restore a subscriber suspended for non-payment once nothing
    that would suspend them is left unpaid. Staff suspensions stay until staff lift them.

    ``subscriber``: the row as locked by the caller in this transaction (its status is
    then current and not read again); loaded here otherwise."""
    sub = subscriber if subscriber is not None and subscriber.pk == subscriber_id else Subscriber.objects.get(pk=subscriber_id)
    if sub.status != SubscriberStatus.SUSPENDED:
        return None
    state = NetworkState.objects.filter(subscriber_id=subscriber_id).first()
    if state is not None and state.reason == Reason.STAFF:
        return None
    if _overdue(sub, local_date(now), BillingSettings.load().grace_days):
        return None
    return restore_subscriber(subscriber_id=subscriber_id, reason=Reason.PAYMENT, now=now)


def subscribers_to_suspend(*, today: date) -> list[int]:
    """Active, not exempt subscribers with an invoice unpaid past its grace period."""
    grace = BillingSettings.load().grace_days
    rows = (
        Invoice.objects.filter(
            status__in=(InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID), amount_due_paisa__gt=0, due_on__lt=today,
            subscriber__status=SubscriberStatus.ACTIVE, subscriber__never_suspend=False,
        )
        .values_list("subscriber_id", "due_on", "amount_due_paisa", "status", "subscriber__grace_days_override")
        .order_by("subscriber_id")
    )
    out: list[int] = []
    for sub_id, due, amount, status, override in rows.iterator(chunk_size=5000):
        if out and out[-1] == sub_id:
            continue
        if should_suspend(
            InvoiceState(due, amount, status), SubscriberState(SubscriberStatus.ACTIVE, False, override), today, grace_days=grace
        ):
            out.append(sub_id)
    return out


#: Subscribers suspended per transaction by the suspension run.
SUSPEND_BATCH = 200


def suspend_overdue(*, now: datetime, batch_size: int = SUSPEND_BATCH) -> int:
    """Suspend everyone unpaid past ``due + grace`` as of ``now``; each exactly once.

    Batches of ``batch_size`` subscribers, one transaction each; a batch's audit events
    (``subscriber.suspend`` by the system) are written together in one bulk INSERT."""
    count = 0
    ids = subscribers_to_suspend(today=local_date(now))
    for start in range(0, len(ids), batch_size):
        with transaction.atomic():
            events = []
            for sub_id in ids[start:start + batch_size]:
                done = _suspend(subscriber_id=sub_id, reason=Reason.OVERDUE, now=now)
                if done is not None:
                    events.append(_status_event(done[1], action="subscriber.suspend", old=SubscriberStatus.ACTIVE,
                                                reason=Reason.OVERDUE, now=now))
            count += audit_log.record_many(events)
    return count


def record_applied(action: EnforcementAction, *, now: datetime, status: str = ActionStatus.DONE, note: str = "") -> None:
    """Mark an action finished; the state counts as applied only if nothing newer is pending."""
    with transaction.atomic():
        EnforcementAction.objects.filter(pk=action.pk).update(status=status, done_at=now, note=note[:300], error="")
        applied = NetState.SUSPENDED if action.action == ActionKind.SUSPEND else NetState.ACTIVE
        NetworkState.objects.filter(subscriber_id=action.subscriber_id, generation=action.generation).update(
            applied=applied, applied_at=now
        )



def set_subscriber_status(
    *, subscriber_id: int, status: str, now: datetime, user=None, audit: bool = True, note: str = ""
) -> None:
    """Staff change a subscriber's status; the router follows.

    active → suspended and suspended → active go through :func:`suspend_subscriber` /
    :func:`restore_subscriber` (reason ``staff``: a payment does not lift a suspension
    staff imposed). Disabling blocks the account on the router too; re-enabling restores it.
    ``audit``: record the change (False when the caller records it).
    """
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update(of=("self",)).get(pk=subscriber_id)
        current = sub.status
        if status == current:
            return
        if status == SubscriberStatus.SUSPENDED and current == SubscriberStatus.ACTIVE:
            suspend_subscriber(subscriber_id=subscriber_id, reason=Reason.STAFF, now=now, user=user, audit=audit, note=note)
            return
        if status == SubscriberStatus.ACTIVE and current == SubscriberStatus.SUSPENDED:
            restore_subscriber(subscriber_id=subscriber_id, reason=Reason.STAFF, now=now, user=user, audit=audit, note=note)
            return
        sub.status = status
        sub.save(update_fields=["status", "updated_at"])
        if audit:
            verb = "subscriber.disable" if status == SubscriberStatus.DISABLED else (
                "subscriber.enable" if current == SubscriberStatus.DISABLED else "subscriber.suspend")
            _status_event(sub, action=verb, old=current, reason=Reason.STAFF, now=now, user=user, note=note).save(
                force_insert=True)
        state = _state_for_update(subscriber_id)
        want = NetState.ACTIVE if status == SubscriberStatus.ACTIVE else NetState.SUSPENDED
        if state.desired != want or (want == NetState.SUSPENDED and state.reason != Reason.STAFF):
            action, item_id = request_enforcement(subscriber=sub, target=want, reason=Reason.STAFF, now=now, user=user)
            if want == NetState.ACTIVE:
                outbox.dispatch_after_commit([item_id], now_fn=clock.now)
