"""Settling webhooks together: one transaction and one commit for many payments.

At the start of a month thousands of subscribers pay within minutes, and each webhook's
settlement is a dozen small statements and a commit. :func:`settle_many` settles a batch
of confirmed webhooks in one transaction with the same effects as
:func:`~ispbill.payments.gateway_services.settle` one by one, in about a dozen
statements for the whole batch:

* The common case (the gateway confirms a completed payment for one of our attempts,
  not yet paid, for a transaction we have not seen) is done in bulk: the attempts,
  then the subscribers, are locked in id order (the order every settlement locks them
  in), the payments inserted, credited oldest invoice first
  (:func:`~ispbill.billing.ledger.post_payment_credits`), receipts queued, service
  restored where nothing overdue remains, attempts linked, the audit log written.
* Everything else (a hold for review, a duplicate, a failure report, a second webhook
  for a transaction, attempt or subscriber already in the batch) goes through ``settle``
  itself, in a savepoint, after the bulk part: a duplicate in the same batch then sees
  the payment just recorded, and one item's error rolls back only that item.
* The webhooks' outcomes are written in the same transaction.

Should the transaction fail as a whole (a unique key taken by a concurrent writer, a
deadlock), each webhook is settled again by itself, so a batch never loses or doubles
anything that one-by-one settlement would not.

In a web server process (:func:`enable`, called by ``ispbill.wsgi``) the request threads
hand their confirmed webhooks to one settling thread (:class:`Batcher`), which takes
whatever has arrived while the previous batch was being written: under load batches
grow by themselves, and a lone webhook is settled at once. Each request still answers
only after its payment is committed. Elsewhere (the worker's re-queries, replays, tests)
:func:`settle_webhook` settles in the calling thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.db import close_old_connections, connection, transaction

from ispbill.audit import services as audit
from ispbill.billing import ledger
from ispbill.core import clock
from ispbill.core.db import insert_objects, update_rows
from ispbill.core.money import to_paisa
from ispbill.payments.choices import PaymentMethod, WebhookOutcome
from ispbill.payments.gateways import Confirmation, Status
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt
from ispbill.worker import outbox

log = logging.getLogger("ispbill.payments")

#: How long a request waits for its batch before answering 5xx (the gateway retries).
WAIT_SECONDS = 60.0
#: Put in a :class:`Batcher`'s queue to end its thread.
_STOP = object()


@dataclass(frozen=True)
class SettleRequest:
    """A stored webhook and what the gateway confirmed about it."""

    webhook: InboundWebhook
    confirmation: Confirmation
    review_reason: str
    attempt_hint: PaymentAttempt | None
    now: datetime
    replay: bool = False

    @property
    def gateway(self) -> str:
        return self.webhook.gateway


def settle_webhook(request: SettleRequest):
    """Settle one confirmed webhook and record its outcome; returns the ``Processed``.
    Through this process's :class:`Batcher` when one is enabled, else right here."""
    batcher = _batcher
    if batcher is not None:
        return batcher.submit(request)
    result = settle_many([request])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def settle_many(requests: list[SettleRequest]) -> list:
    """Settle ``requests`` in one transaction; for each, its ``Processed`` or the
    exception that settling it raised (that item's changes are rolled back, the
    others' are not). An exception raised out of here rolled back the whole batch."""
    from ispbill.payments import gateway_services as gs

    results: list = [None] * len(requests)
    with transaction.atomic():
        _settle_quick(requests, results)
        for i, request in enumerate(requests):
            if results[i] is not None:
                continue
            try:
                with transaction.atomic():
                    settled = gs.settle(
                        confirmation=request.confirmation, gateway=request.gateway, now=request.now,
                        review_reason=request.review_reason, attempt_hint=request.attempt_hint,
                    )
            except Exception as exc:  # this item's savepoint is rolled back
                results[i] = exc
                continue
            results[i] = gs.Processed(settled.outcome, settled.detail, gs._page(request.confirmation, settled),
                                      settled.payment, settled.attempt)
        _record_outcomes(requests, results)
    return results


def _quick_candidate(request: SettleRequest) -> bool:
    c = request.confirmation
    return bool(
        c.money_moved and c.status == Status.COMPLETED and not request.review_reason and c.reference
        and (c.transaction_id or c.gateway_reference) and c.amount is not None and c.amount > 0
    )


def _settle_quick(requests: list[SettleRequest], results: list) -> None:
    """The common case in bulk (see the module): fills ``results`` for the items done."""
    from ispbill.network.services import restore_if_settled
    from ispbill.notifications.services import queue_receipts
    from ispbill.payments import gateway_services as gs

    if not connection.features.can_return_rows_from_bulk_insert:
        return
    candidates = [i for i, r in enumerate(requests) if _quick_candidate(r)]
    if not candidates:
        return
    # References are unique across gateways; transaction ids only within one.
    attempts = {
        (a.gateway, a.reference): a
        for a in PaymentAttempt.objects.select_for_update(no_key=True)
        .filter(reference__in=sorted({requests[i].confirmation.reference[:20] for i in candidates})).order_by("pk")
    }
    txns = {i: requests[i].confirmation.transaction_id or requests[i].confirmation.gateway_reference for i in candidates}
    recorded = set(
        Payment.objects.filter(transaction_id__in=sorted(set(txns.values()))).values_list("gateway", "transaction_id")
    )

    chosen: list[tuple[int, PaymentAttempt]] = []
    taken_txns: set = set()
    taken_attempts: set = set()
    taken_subscribers: set = set()
    for i in candidates:
        request = requests[i]
        attempt = attempts.get((request.gateway, request.confirmation.reference[:20]))
        key = (request.gateway, txns[i])
        if (
            attempt is None or attempt.payment_id is not None or key in recorded or key in taken_txns
            or attempt.pk in taken_attempts or attempt.subscriber_id in taken_subscribers
        ):
            continue  # settle() decides, after the bulk part
        taken_txns.add(key)
        taken_attempts.add(attempt.pk)
        taken_subscribers.add(attempt.subscriber_id)
        chosen.append((i, attempt))
    if not chosen:
        return
    subscribers = ledger.lock_subscribers([attempt.subscriber_id for _, attempt in chosen])
    chosen = [(i, attempt) for i, attempt in chosen if attempt.subscriber_id in subscribers]

    payments = []
    for i, attempt in chosen:
        request, c = requests[i], requests[i].confirmation
        payments.append(Payment(
            subscriber_id=attempt.subscriber_id, amount_paisa=to_paisa(c.amount), method=PaymentMethod.GATEWAY,
            reference=attempt.reference[:100], notes=c.detail, received_at=request.now, gateway=request.gateway,
            transaction_id=txns[i], method_label=(c.method_label or "")[:40],
            gateway_reference=(c.gateway_reference or "")[:200], attempt=attempt,
        ))
    insert_objects(payments, return_ids=True)
    ledger.post_payment_credits([
        ledger.Credit(p.subscriber_id, p.amount_paisa, p.pk, p.received_at) for p in payments
    ])
    now = clock.now()
    queue_receipts([(subscribers[p.subscriber_id], p) for p in payments], now=now)
    for p in payments:
        restore_if_settled(subscriber_id=p.subscriber_id, now=now, subscriber=subscribers[p.subscriber_id])
    fields: set[str] = set()
    for (i, attempt), payment in zip(chosen, payments):
        fields.update(gs._linked(attempt, payment, requests[i].confirmation, now=requests[i].now, first=True))
    update_rows([attempt for _, attempt in chosen], sorted(fields))
    insert_objects([
        audit.build(**gs._received_audit(payment, gateway=payment.gateway, now=requests[i].now))
        for (i, _), payment in zip(chosen, payments)
    ])
    for (i, attempt), payment in zip(chosen, payments):
        results[i] = gs.Processed(WebhookOutcome.ACCEPTED, f"payment {payment.pk} {payment.status}", "received",
                                  payment, attempt)


def _record_outcomes(requests: list[SettleRequest], results: list) -> None:
    """Every settled webhook's outcome, in the batch's transaction (one UPDATE for
    first-time webhooks; replays count themselves one by one)."""
    from ispbill.payments import gateway_services as gs

    first_time: list[InboundWebhook] = []
    for request, result in zip(requests, results):
        if isinstance(result, BaseException):
            continue  # recorded by the caller, as a rejection or an error
        if request.replay:
            gs._record_outcome(request.webhook, result, now=request.now, replay=True)
            continue
        gs.set_outcome(request.webhook, gs._outcome_fields(request.webhook, result, now=request.now, replay=False))
        first_time.append(request.webhook)
    if first_time:
        update_rows(first_time, gs.OUTCOME_FIELDS)


# -- the settling thread of a web server process ----------------------------------------------

class Batcher:
    """One thread settling what the request threads hand it, in batches of at most
    ``max_batch``: each batch is whatever arrived while the previous one was written."""

    def __init__(self, *, max_batch: int):
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Routers told about restores right after a batch commits, without holding up
        # the next batch (a router that is down takes seconds to time out).
        self._dispatcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ispbill-restore")

    def submit(self, request: SettleRequest):
        future: Future = Future()
        self._queue.put((request, future))
        self._ensure_running()
        return future.result(timeout=WAIT_SECONDS)

    def _ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ispbill-settle", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Settle what was handed in, then end the thread (and close its connection)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        try:
            while self._settle_next():
                pass
        finally:
            connection.close()

    def _settle_next(self) -> bool:
        batch, more = [], True
        item = self._queue.get()
        while True:
            if item is _STOP:
                more = False
                break
            batch.append(item)
            if len(batch) >= self.max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if batch:
            try:
                self._settle(batch)
            except BaseException as exc:  # never leave a request waiting
                log.exception("settling a batch of %s webhooks failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
        return more

    def _settle(self, batch: list[tuple[SettleRequest, Future]]) -> None:
        with outbox.immediate_dispatch_in(self._dispatcher):
            self._settle_batch(batch)

    @staticmethod
    def _settle_batch(batch: list[tuple[SettleRequest, Future]]) -> None:
        _fresh_connection()
        requests = [request for request, _ in batch]
        try:
            results = settle_many(requests)
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.warning("a batch of %s webhooks failed as a whole; settling each by itself", len(batch), exc_info=True)
            results = []
            for request in requests:
                _fresh_connection()
                try:
                    results.append(settle_many([request])[0])
                except Exception as exc:
                    results.append(exc)
        for (_, future), result in zip(batch, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _fresh_connection() -> None:
    """As at the start of a request: a broken or expired connection is replaced (never
    inside a transaction, which only a caller of :meth:`Batcher._settle` can have open)."""
    if not connection.in_atomic_block:
        close_old_connections()


_batcher: Batcher | None = None


def enable(max_batch: int) -> None:
    """Settle this process's webhooks through one :class:`Batcher` (``max_batch`` < 2:
    each in its own transaction, in its request's thread)."""
    global _batcher
    disable()
    _batcher = Batcher(max_batch=max_batch) if max_batch >= 2 else None


def disable() -> None:
    """Back to settling in the calling thread; the settling thread finishes and ends."""
    global _batcher
    batcher, _batcher = _batcher, None
    if batcher is not None:
        batcher.stop()
