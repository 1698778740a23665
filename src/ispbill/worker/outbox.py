"""The durable outbox and its dispatcher.

Write an intent with :func:`enqueue` inside the transaction that needs it; the
dispatcher performs it after commit. A handler is a function registered for a topic
with :func:`handler`; it must be idempotent. It signals a temporary failure by raising
any exception (retried with exponential backoff) and a permanent one by raising
:class:`PermanentFailure` (marked dead at once). Rows whose worker died are reclaimed
when their lease expires; the handler is told (``ctx.reclaimed``) so it can check
whether the first attempt already took effect before repeating it.

Two optional mechanisms let a handler do less per item:

- a *preparer* (``handler(topic, prepare=fn)``) is called once per claimed batch with
  that batch's items of its topic and returns ``{item id: anything}``; the handler gets
  the item's value as ``attempt.prepared`` (None for items it left out). It lets a
  handler load, for a whole batch, in a few queries what it would otherwise load item
  by item. What it loaded may be out of date by the time an item runs, so the handler
  must re-check whatever it relies on before acting (and fall back to its own per-item
  path when in doubt); a preparer that fails only costs the speed-up.
- ``attempt.record_with_outcome(sql, params)``: the write statement is committed
  together with the attempt's outcome on the outbox row, whatever that outcome is and
  even when the row turned out to be reclaimed meanwhile. A handler records its own
  result there instead of in a commit of its own (on PostgreSQL the outcome and the
  handler's writes go as one statement: one round trip, one commit).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q

from ispbill.core.backoff import doubling
from ispbill.core.db import insert_objects
from ispbill.worker.models import OutboxItem, OutboxState

log = logging.getLogger("ispbill.outbox")

_HANDLERS: dict[str, Callable[["OutboxItem", "Attempt"], object]] = {}
# topic -> fn(items, *, now) returning {item id: prepared value}; see the module docstring.
_PREPARERS: dict[str, Callable[..., dict]] = {}


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
    # What the topic's preparer returned for this item (None: not prepared).
    prepared: object = None
    # (sql, params) to commit with the outcome (see record_with_outcome); None when the
    # attempt is not run by perform(), and such writes then run at once.
    outcome_writes: list | None = field(default=None, repr=False, compare=False)

    def record_with_outcome(self, sql: str, params: list | tuple) -> None:
        """Commit the write ``sql`` (one INSERT, UPDATE or DELETE without RETURNING, with
        ``%s`` parameters) together with this attempt's outcome on the outbox row:
        success or failure, and also when that row was reclaimed by another worker
        meanwhile. Should the write fail, the attempt is recorded as a temporary failure
        instead, without it."""
        if self.outcome_writes is None:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
        else:
            self.outcome_writes.append((sql, list(params)))


def handler(topic: str, *, prepare: Callable[..., dict] | None = None):
    """Register the function that performs ``topic`` items, and optionally the function
    that prepares a claimed batch of them (see the module docstring)."""

    def register(fn):
        if topic in _HANDLERS and _HANDLERS[topic] is not fn:
            raise RuntimeError(f"outbox topic '{topic}' already has a handler")
        _HANDLERS[topic] = fn
        if prepare is not None:
            _PREPARERS[topic] = prepare
        else:
            _PREPARERS.pop(topic, None)
        return fn

    return register


def registered_topics() -> list[str]:
    return sorted(_HANDLERS)


def unregister(topic: str) -> None:
    _HANDLERS.pop(topic, None)
    _PREPARERS.pop(topic, None)


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


def enqueue_many(
    *, topic: str, items: list[tuple[str, dict, datetime | None]], now: datetime, max_attempts: int | None = None,
) -> None:
    """Record several intents ``(dedupe_key, payload, available_at)`` in one statement.

    Unlike :func:`enqueue`, a dedupe key already recorded is not skipped: the whole
    insert raises IntegrityError, so call it in a savepoint and fall back to
    :func:`enqueue` per item when that happens. Must be called inside the transaction
    whose change needs the side effects.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue_many() must run inside the transaction that needs the side effects")
    if not items:
        return
    attempts = max_attempts or settings.ISPBILL_OUTBOX_MAX_ATTEMPTS
    insert_objects([
        OutboxItem(
            topic=topic, dedupe_key=key, payload=payload, state=OutboxState.PENDING,
            next_attempt_at=available_at or now, created_at=now, max_attempts=attempts,
        )
        for key, payload, available_at in items
    ])


def backoff_seconds(attempts: int) -> int:
    """Exponential backoff with ±10 % jitter, capped."""
    capped = doubling(settings.ISPBILL_OUTBOX_BACKOFF_BASE, attempts, settings.ISPBILL_OUTBOX_BACKOFF_MAX)
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


_FINISH_SQL: dict[tuple, str] = {}


def _finish(item: OutboxItem, worker_id: str, writes: list | tuple = (), **fields) -> bool:
    """Record an outcome unless another worker has since reclaimed the row, together
    with the handler's ``writes`` ((sql, params), executed whether or not it was).

    Plain SQL guarded by (state, locked_by, attempts): this runs once per item, and
    building the same statement through the ORM every time cost more than running it.
    On PostgreSQL the writes ride along as data-modifying WITH clauses of the same
    statement; elsewhere they run first in the same transaction.
    """
    fields["locked_until"] = None
    names = tuple(fields)
    postgres = connection.vendor == "postgresql"
    key = (connection.vendor, names, tuple(sql for sql, _ in writes) if postgres else ())
    sql = _FINISH_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        opts = OutboxItem._meta
        assignments = ", ".join(f"{qn(opts.get_field(n).column)} = %s" for n in names)
        sql = (
            f"UPDATE {qn(opts.db_table)} SET {assignments} WHERE {qn(opts.pk.column)} = %s AND {qn('state')} = %s "
            f"AND {qn('locked_by')} = %s AND {qn('attempts')} = %s"
        )
        if postgres and writes:
            sql = "WITH " + ", ".join(f"handler_write_{i} AS ({w})" for i, (w, _) in enumerate(writes)) + " " + sql
        _FINISH_SQL[key] = sql
    opts = OutboxItem._meta
    params = [opts.get_field(n).get_db_prep_save(v, connection) for n, v in fields.items()]
    params += [item.pk, str(OutboxState.IN_FLIGHT), worker_id, item.attempts]
    if not writes:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount > 0
    if postgres:
        with connection.cursor() as cursor:  # one statement: atomic on its own
            cursor.execute(sql, [p for _, ps in writes for p in ps] + params)
            return cursor.rowcount > 0
    with transaction.atomic(), connection.cursor() as cursor:
        for write_sql, write_params in writes:
            cursor.execute(write_sql, write_params)
        cursor.execute(sql, params)
        return cursor.rowcount > 0


# ``perform`` returns this instead of a state when the outcome could not be recorded
# because the lease ran out and another worker reclaimed the row meanwhile.
STALE = "stale"


def perform(item: OutboxItem, *, reclaimed: bool, now: datetime, worker_id: str, prepared: object = None) -> str:
    """Run one claimed item's handler and record the outcome; returns the new state, or
    :data:`STALE` when the row was reclaimed by another worker before the outcome could
    be recorded (that worker's outcome stands). ``prepared``: the item's value from its
    topic's preparer, handed to the handler as ``attempt.prepared``."""
    if reclaimed and item.attempts > item.max_attempts:
        # Every allowed attempt was started and none recorded an outcome: the item
        # itself may be what stops its workers (a crash, a hang past the lease), so it
        # is not run again.
        message = f"gave up after {item.attempts - 1} attempts: the last one stopped without recording an outcome"
        log.warning("outbox %s %s dead: %s", item.topic, item.dedupe_key, message)
        return _record(item, worker_id, dict(state=OutboxState.DEAD, last_error=message, finished_at=now), now=now)
    fn = _HANDLERS.get(item.topic)
    writes: list = []
    try:
        if fn is None:
            raise PermanentFailure(f"no handler registered for topic '{item.topic}'")
        fn(item, Attempt(
            now=now, number=item.attempts, reclaimed=reclaimed, worker_id=worker_id, prepared=prepared,
            outcome_writes=writes,
        ))
    except PermanentFailure as exc:
        log.warning("outbox %s %s dead: %s", item.topic, item.dedupe_key, exc)
        fields = dict(state=OutboxState.DEAD, last_error=str(exc)[:2000], finished_at=now)
    except Exception as exc:  # every other failure is temporary until attempts run out
        fields = _failure_fields(item, exc, now)
    else:
        fields = dict(state=OutboxState.DONE, last_error="", finished_at=now)
    return _record(item, worker_id, fields, writes, now=now)


def _failure_fields(item: OutboxItem, exc: Exception, now: datetime) -> dict:
    """The outcome of an attempt that failed with ``exc`` (not a PermanentFailure)."""
    message = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, RetryLater):
        log.info("outbox %s %s attempt %d failed: %s", item.topic, item.dedupe_key, item.attempts, message)
        log.debug("%s", traceback.format_exc())
    hold = isinstance(exc, RetryLater) and not exc.count_attempt
    if item.attempts >= item.max_attempts and not hold:
        return dict(
            state=OutboxState.DEAD, last_error=f"gave up after {item.attempts} attempts: {message}"[:2000],
            finished_at=now,
        )
    delay = exc.after_seconds if isinstance(exc, RetryLater) and exc.after_seconds is not None else backoff_seconds(item.attempts)
    delay = max(1, delay)
    fields = dict(state=OutboxState.PENDING, last_error=message[:2000], next_attempt_at=now + timedelta(seconds=delay))
    if hold:
        fields["attempts"] = item.attempts - 1
    return fields


def _record(item: OutboxItem, worker_id: str, fields: dict, writes: list | None = None, *, now: datetime) -> str:
    if writes:
        try:
            # Inside a caller's transaction, a savepoint keeps a failed write from
            # spoiling it; otherwise _finish is atomic by itself.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                finished = _finish(item, worker_id, writes, **fields)
        except Exception as exc:
            # The handler's own record failed (and was rolled back): the attempt counts
            # as failed, as if the handler had raised.
            log.exception("outbox %s %s: recording the outcome failed", item.topic, item.dedupe_key)
            fields = _failure_fields(item, exc, now)
            finished = _finish(item, worker_id, **fields)
    else:
        finished = _finish(item, worker_id, **fields)
    if not finished:
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
    own database connection), so slow providers overlap; without it (or when called
    inside a transaction) they run here, in order. Items are independent side effects,
    so their order never matters.
    """
    worker_id = worker_id or default_worker_id()
    if pool is not None and connection.in_atomic_block:
        # Called inside a transaction: the batch is claimed in it, uncommitted, so other
        # threads' connections could neither see the claim nor record outcomes past its
        # row locks (PostgreSQL would wait forever, SQLite refuse). Perform here instead.
        pool = None
    result = DispatchResult()
    started = time.monotonic()
    lease = settings.ISPBILL_OUTBOX_LEASE_SECONDS

    checked: set[int] = set()
    checked_lock = threading.Lock()

    def run(pair) -> str | None:
        item, reclaimed = pair
        # A slow batch must not outlive its lease: once most of it has been spent, the
        # rest may soon belong to another worker, so they are left for whoever holds them.
        if time.monotonic() - started > lease * 0.8:
            return None
        if pool is not None:
            # A pool thread drops a broken or expired connection before its first item of
            # the batch, and after any item that left a database error behind.
            with checked_lock:
                first = threading.get_ident() not in checked
                checked.add(threading.get_ident())
            if first:
                close_old_connections()
        try:
            return perform(item, reclaimed=reclaimed, now=now, worker_id=worker_id, prepared=prepared.get(item.pk))
        finally:
            if pool is not None and connection.errors_occurred:
                close_old_connections()

    claimed = claim(now=now, worker_id=worker_id, limit=limit, ids=ids, topics=topics)
    prepared = _prepare(claimed, now=now)
    for state in (pool.map(run, claimed) if pool is not None else map(run, claimed)):
        if state is None:
            result.expired += 1
        else:
            result.add(state)
    return result


def _prepare(claimed: list[tuple[OutboxItem, bool]], *, now: datetime) -> dict[int, object]:
    """Run each topic's preparer over its items of the batch; {item id: prepared value}."""
    by_topic: dict[str, list[OutboxItem]] = {}
    for item, reclaimed in claimed:
        if item.topic in _PREPARERS and not (reclaimed and item.attempts > item.max_attempts):
            by_topic.setdefault(item.topic, []).append(item)
    prepared: dict[int, object] = {}
    for topic, items in by_topic.items():
        try:
            with transaction.atomic():
                values = _PREPARERS[topic](items, now=now)
        except Exception:
            # Only the speed-up is lost: each item's handler does its own work.
            log.exception("outbox %s: preparing a batch of %d failed; items run unprepared", topic, len(items))
            continue
        wanted = {item.pk for item in items}
        prepared.update((pk, value) for pk, value in values.items() if pk in wanted and value is not None)
    return prepared


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


_elsewhere = threading.local()


@contextmanager
def immediate_dispatch_in(executor: ThreadPoolExecutor) -> Iterator[None]:
    """Inside: :func:`dispatch_after_commit` hands its attempt to ``executor`` instead
    of making it in the committing thread (a thread settling many webhooks must not
    wait for a slow router after each batch)."""
    previous = getattr(_elsewhere, "executor", None)
    _elsewhere.executor = executor
    try:
        yield
    finally:
        _elsewhere.executor = previous


def dispatch_after_commit(ids: list[int], *, now_fn: Callable[[], datetime]) -> None:
    """Try the given items as soon as the current transaction commits (the worker's
    regular poll stays the fallback if this attempt fails)."""
    executor = getattr(_elsewhere, "executor", None)

    def run():
        try:
            dispatch(now=now_fn(), ids=ids, limit=len(ids))
        except Exception:  # the worker will pick the rows up
            log.exception("immediate dispatch failed; left for the worker")

    def run_elsewhere():
        close_old_connections()
        try:
            run()
        finally:
            close_old_connections()

    transaction.on_commit(run if executor is None else (lambda: executor.submit(run_elsewhere)))
