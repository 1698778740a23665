"""The durable outbox and its dispatcher.

Write an intent with :func:`enqueue` inside the transaction that needs it; the
dispatcher performs it after commit. A handler is a function registered for a topic
with :func:`handler`; it must be idempotent. It signals a temporary failure by raising
any exception (retried with exponential backoff) and a permanent one by raising
:class:`PermanentFailure` (marked dead at once). Rows whose worker died are reclaimed
when their lease expires; the handler is told (``ctx.reclaimed``) so it can check
whether the first attempt already took effect before repeating it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, Q

from ispbill.worker.models import OutboxItem, OutboxState

log = logging.getLogger("ispbill.outbox")

_HANDLERS: dict[str, Callable[["OutboxItem", "Attempt"], object]] = {}


class PermanentFailure(Exception):
    """The side effect can never succeed (bad address, rejected request): no retry."""


class RetryLater(Exception):
    """A temporary failure with a known earliest retry time."""

    def __init__(self, message: str, *, after_seconds: int | None = None, count_attempt: bool = True):
        super().__init__(message)
        self.after_seconds = after_seconds
        # False for a deliberate hold (quiet hours): the attempt is not held against
        # the item's max_attempts.
        self.count_attempt = count_attempt


@dataclass(frozen=True)
class Attempt:
    now: datetime
    number: int  # 1 for the first attempt
    reclaimed: bool  # a previous attempt's lease expired without a recorded outcome
    worker_id: str


def handler(topic: str):
    """Register the function that performs ``topic`` items."""

    def register(fn):
        if topic in _HANDLERS and _HANDLERS[topic] is not fn:
            raise RuntimeError(f"outbox topic '{topic}' already has a handler")
        _HANDLERS[topic] = fn
        return fn

    return register


def registered_topics() -> list[str]:
    return sorted(_HANDLERS)


def unregister(topic: str) -> None:
    _HANDLERS.pop(topic, None)


def default_worker_id() -> str:
    """Unique per thread: web threads dispatching after a commit and the worker loop in
    one process must not pass for each other when outcomes are recorded."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def enqueue(
    *, topic: str, dedupe_key: str, payload: dict, now: datetime, available_at: datetime | None = None,
    max_attempts: int | None = None,
) -> bool:
    """Record an intent once; returns False when ``dedupe_key`` was already recorded.

    Must be called inside the transaction whose change needs the side effect.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue() must run inside the transaction that needs the side effect")
    try:
        with transaction.atomic():
            OutboxItem.objects.create(
                topic=topic, dedupe_key=dedupe_key, payload=payload, state=OutboxState.PENDING,
                next_attempt_at=available_at or now, created_at=now,
                max_attempts=max_attempts or settings.ISPBILL_OUTBOX_MAX_ATTEMPTS,
            )
        return True
    except IntegrityError:
        return False


def backoff_seconds(attempts: int) -> int:
    """Exponential backoff with ±10 % jitter, capped."""
    base = settings.ISPBILL_OUTBOX_BACKOFF_BASE * (2 ** max(0, attempts - 1))
    capped = min(base, settings.ISPBILL_OUTBOX_BACKOFF_MAX)
    return max(1, int(capped * random.uniform(0.9, 1.1)))


def claim(*, now: datetime, worker_id: str, limit: int = 100, ids: list[int] | None = None, topics: list[str] | None = None) -> list[tuple[OutboxItem, bool]]:
    """Lease up to ``limit`` ready rows (and expired leases) to ``worker_id``.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent dispatchers take different rows.
    SQLite: the IMMEDIATE transaction makes the claim exclusive.
    """
    lease = timedelta(seconds=settings.ISPBILL_OUTBOX_LEASE_SECONDS)
    ready = Q(state=OutboxState.PENDING, next_attempt_at__lte=now) | Q(state=OutboxState.IN_FLIGHT, locked_until__lt=now)
    with transaction.atomic():
        qs = OutboxItem.objects.filter(ready)
        if ids is not None:
            qs = qs.filter(pk__in=ids)
        if topics is not None:
            qs = qs.filter(topic__in=topics)
        rows = list(qs.select_for_update(skip_locked=True).order_by("next_attempt_at", "id")[:limit])
        if not rows:
            return []
        locked_until = now + lease
        # One UPDATE for the whole batch; the rows are locked, so the in-memory copies
        # can be advanced the same way.
        OutboxItem.objects.filter(pk__in=[r.pk for r in rows]).update(
            state=OutboxState.IN_FLIGHT, attempts=F("attempts") + 1, locked_until=locked_until, locked_by=worker_id
        )
        claimed = []
        for row in rows:
            reclaimed = row.state == OutboxState.IN_FLIGHT
            row.state = OutboxState.IN_FLIGHT
            row.attempts += 1
            row.locked_until = locked_until
            row.locked_by = worker_id
            claimed.append((row, reclaimed))
    return claimed


def _finish(item: OutboxItem, worker_id: str, **fields) -> bool:
    """Record an outcome unless another worker has since reclaimed the row."""
    return bool(
        OutboxItem.objects.filter(pk=item.pk, state=OutboxState.IN_FLIGHT, locked_by=worker_id, attempts=item.attempts)
        .update(locked_until=None, **fields)
    )


# ``perform`` returns this instead of a state when the outcome could not be recorded
# because the lease ran out and another worker reclaimed the row meanwhile.
STALE = "stale"


def perform(item: OutboxItem, *, reclaimed: bool, now: datetime, worker_id: str) -> str:
    """Run one claimed item's handler and record the outcome; returns the new state, or
    :data:`STALE` when the row was reclaimed by another worker before the outcome could
    be recorded (that worker's outcome stands)."""
    if reclaimed and item.attempts > item.max_attempts:
        # Every allowed attempt was started and none recorded an outcome: the item
        # itself may be what stops its workers (a crash, a hang past the lease), so it
        # is not run again.
        message = f"gave up after {item.attempts - 1} attempts: the last one stopped without recording an outcome"
        log.warning("outbox %s %s dead: %s", item.topic, item.dedupe_key, message)
        return _record(item, worker_id, dict(state=OutboxState.DEAD, last_error=message, finished_at=now))
    fn = _HANDLERS.get(item.topic)
    try:
        if fn is None:
            raise PermanentFailure(f"no handler registered for topic '{item.topic}'")
        fn(item, Attempt(now=now, number=item.attempts, reclaimed=reclaimed, worker_id=worker_id))
    except PermanentFailure as exc:
        log.warning("outbox %s %s dead: %s", item.topic, item.dedupe_key, exc)
        fields = dict(state=OutboxState.DEAD, last_error=str(exc)[:2000], finished_at=now)
    except Exception as exc:  # every other failure is temporary until attempts run out
        message = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, RetryLater):
            log.info("outbox %s %s attempt %d failed: %s", item.topic, item.dedupe_key, item.attempts, message)
            log.debug("%s", traceback.format_exc())
        hold = isinstance(exc, RetryLater) and not exc.count_attempt
        if item.attempts >= item.max_attempts and not hold:
            fields = dict(
                state=OutboxState.DEAD, last_error=f"gave up after {item.attempts} attempts: {message}"[:2000],
                finished_at=now,
            )
        else:
            delay = exc.after_seconds if isinstance(exc, RetryLater) and exc.after_seconds is not None else backoff_seconds(item.attempts)
            delay = max(1, delay)
            fields = dict(state=OutboxState.PENDING, last_error=message[:2000], next_attempt_at=now + timedelta(seconds=delay))
            if hold:
                fields["attempts"] = item.attempts - 1
    else:
        fields = dict(state=OutboxState.DONE, last_error="", finished_at=now)
    return _record(item, worker_id, fields)


def _record(item: OutboxItem, worker_id: str, fields: dict) -> str:
    if not _finish(item, worker_id, **fields):
        log.warning(
            "outbox %s %s: attempt %d outcome (%s) discarded; the lease expired and the row was reclaimed",
            item.topic, item.dedupe_key, item.attempts, fields["state"],
        )
        return STALE
    return fields["state"]


@dataclass
class DispatchResult:
    done: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0  # outcomes discarded because another worker reclaimed the row
    expired: int = 0  # claimed rows left unperformed because the batch outlived its lease
    claimed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, state: str) -> None:
        self.claimed += 1
        if state == OutboxState.DONE:
            self.done += 1
        elif state == OutboxState.DEAD:
            self.dead += 1
        elif state == STALE:
            self.stale += 1
        else:
            self.retried += 1


def dispatch(
    *, now: datetime, worker_id: str | None = None, limit: int = 100, ids: list[int] | None = None,
    topics: list[str] | None = None, pool: "ThreadPoolExecutor | None" = None,
) -> DispatchResult:
    """Claim and perform one batch of ready items.

    With ``pool`` the batch's items run concurrently on its threads (each thread has its
    own database connection), so slow providers overlap; without it they run here, in
    order. Items are independent side effects, so their order never matters.
    """
    worker_id = worker_id or default_worker_id()
    result = DispatchResult()
    started = time.monotonic()
    lease = settings.ISPBILL_OUTBOX_LEASE_SECONDS

    def run(pair) -> str | None:
        item, reclaimed = pair
        # A slow batch must not outlive its lease: once most of it has been spent, the
        # rest may soon belong to another worker, so they are left for whoever holds them.
        if time.monotonic() - started > lease * 0.8:
            return None
        try:
            return perform(item, reclaimed=reclaimed, now=now, worker_id=worker_id)
        finally:
            if pool is not None:
                close_old_connections()  # a pool thread drops a broken or expired connection

    claimed = claim(now=now, worker_id=worker_id, limit=limit, ids=ids, topics=topics)
    for state in (pool.map(run, claimed) if pool is not None else map(run, claimed)):
        if state is None:
            result.expired += 1
        else:
            result.add(state)
    return result


def drain(
    *, now: datetime, worker_id: str | None = None, max_rounds: int = 10_000, pool: "ThreadPoolExecutor | None" = None
) -> DispatchResult:
    """Dispatch until nothing is ready as of ``now`` (retries scheduled later wait).

    A retried row is scheduled at least a second after ``now``, so each ready row is
    tried once per drain however many batches it takes.
    """
    total = DispatchResult()
    for _ in range(max_rounds):
        r = dispatch(now=now, worker_id=worker_id, limit=200, pool=pool)
        if r.claimed == 0:
            break
        total.done += r.done
        total.retried += r.retried
        total.dead += r.dead
        total.stale += r.stale
        total.claimed += r.claimed
    return total


def dispatch_after_commit(ids: list[int], *, now_fn: Callable[[], datetime]) -> None:
    """Try the given items as soon as the current transaction commits (the worker's
    regular poll stays the fallback if this attempt fails)."""

    def run():
        try:
            dispatch(now=now_fn(), ids=ids, limit=len(ids))
        except Exception:  # the worker will pick the rows up
            log.exception("immediate dispatch failed; left for the worker")

    transaction.on_commit(run)
