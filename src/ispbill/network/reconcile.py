"""Reconciliation: compare a router with the billing system, repair drift, report leakage.

One run per router: read what the router enforces (PPP secrets, active sessions, the
suspended address list) through its driver; build what it should enforce from the
database (one query); compare (:func:`ispbill.network.drift.diff`); put drifted
subscribers back in their desired state with the driver's bulk operations; remember each
subscriber's session address (for the captive page); and record a :class:`ReconcileRun`
holding the leakage report:

* ``online_unpaid``: online though suspended in billing, and not walled off;
* ``unknown_on_router``: secrets billing does not know (no subscriber has the user name);
* ``paid_but_suspended``: active in billing but restricted on the router (suspended
  profile, on the suspended address list, or the secret disabled);
* ``missing_on_router``: subscribers assigned to the router with no secret on it.

A router that cannot be read gets a run with ``error`` and is marked unhealthy; nothing
else changes, and the next run after it comes back converges.

Repairs race with the outbox: a payment may restore a subscriber while a run is about to
suspend them. Each subscriber's state generation is read with the desired state; a
subscriber whose state changed since is left to its own enforcement action, and one that
changed while the repair ran is put back to its new desired state straight away.

The job reconciles several routers at once (``ISPBILL_RECONCILE_CONCURRENCY``), each on
a thread with its own database connection, so a router that does not answer holds up no
other. A subscriber belongs to one router, so no two threads repair the same one; the
scheduler's leader lock keeps a second worker from running the job at the same time. On
SQLite, whose database has one writer, the threads take turns at the database (router
I/O is never part of a turn), and every write transaction is short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from ispbill.core.db import chunks, id_chunks, in_ids, is_postgres
from ispbill.network.connections import driver_for
from ispbill.network.drift import Desired, diff
from ispbill.network.drivers.base import BulkResult, Driver, DriverError, RouterState, RouterUnavailable, Target
from ispbill.network.handlers import mark_router
from ispbill.network.choices import NetState
from ispbill.network.models import NetworkState, ReconcileRun, Router
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber

log = logging.getLogger("ispbill.network")

_BLOCKED_STATUSES = (SubscriberStatus.SUSPENDED, SubscriberStatus.DISABLED)

_sqlite_turn = threading.Lock()


@contextmanager
def _database_turn() -> Iterator[None]:
    """Hold while using the database; never talk to a router inside. SQLite has one
    writer: the threads of a pass take turns here rather than queue on its busy timeout
    (a shared-cache in-memory database, the test database, has none and fails at once
    with "database table is locked"). PostgreSQL needs no turns."""
    if connection.vendor != "sqlite":
        yield
        return
    with _sqlite_turn:
        yield


@dataclass(frozen=True)
class _Row:
    """One subscriber on the router, as the database has it at the start of the run."""

    subscriber_id: int
    username: str
    profile: str
    suspended: bool
    generation: int | None  # None: no NetworkState row yet
    applied: str | None
    address: str

    @property
    def key(self) -> tuple[bool, int | None]:
        return (self.suspended, self.generation)


def _wants_suspended(status: str, desired: str | None) -> bool:
    return desired == NetState.SUSPENDED or status in _BLOCKED_STATUSES


def _load(router_id: int, ids: Sequence[int] | None = None) -> dict[int, _Row]:
    """This router's subscribers (or just ``ids`` of them) with their desired state: one
    query (per id chunk when ``ids`` is given)."""
    fields = (
        "id", "pppoe_username", "status", "package__router_profile", "network__desired", "network__generation",
        "network__applied", "network__address",
    )
    base = Subscriber.objects.filter(router_id=router_id).order_by()
    parts = [base] if ids is None else [base.filter(pk__in=list(part)) for part in id_chunks(ids, reserve_params=1)]
    rows: dict[int, _Row] = {}
    for qs in parts:
        for sid, username, status, profile, desired, generation, applied, address in qs.values_list(*fields):
            rows[sid] = _Row(
                sid, username, profile or "default", _wants_suspended(status, desired), generation, applied, address or ""
            )
    return rows


def _changed_since(router_id: int, before: dict[int, _Row], ids: Iterable[int]) -> dict[int, _Row | None]:
    """Of ``ids``, those whose desired state or generation is no longer what ``before``
    holds (or who left the router): id → the row now (None if gone)."""
    ids = list(ids)
    if not ids:
        return {}
    now_rows = _load(router_id, ids)
    return {sid: now_rows.get(sid) for sid in ids if now_rows.get(sid) is None or now_rows[sid].key != before[sid].key}


# --- set-based writes -------------------------------------------------------------------


def _table() -> str:
    return connection.ops.quote_name(NetworkState._meta.db_table)


def _ts(value: datetime):
    return value if is_postgres() else connection.ops.adapt_datetimefield_value(value)


def _create_missing_states(rows: Iterable[_Row]) -> None:
    """A NetworkState row for every subscriber without one (desired from their status);
    one that appears meanwhile (a suspension in another process) is left as it is."""
    missing = [
        (r.subscriber_id, NetState.SUSPENDED if r.suspended else NetState.ACTIVE) for r in rows if r.generation is None
    ]
    if not missing:
        return
    columns = "subscriber_id, desired, applied, generation, reason, address"
    with connection.cursor() as cursor:
        if is_postgres():
            for part in chunks(missing, 50_000):
                cursor.execute(
                    f"INSERT INTO {_table()} ({columns}) SELECT v.sid, v.desired, %s, 0, '', '' "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v(sid, desired) ON CONFLICT (subscriber_id) DO NOTHING",
                    [NetState.UNKNOWN.value, [m[0] for m in part], [m[1].value for m in part]],
                )
        else:
            cursor.executemany(
                f"INSERT INTO {_table()} ({columns}) VALUES (%s, %s, %s, 0, '', '') ON CONFLICT (subscriber_id) DO NOTHING",
                [(sid, desired.value, NetState.UNKNOWN.value) for sid, desired in missing],
            )


def _set_addresses(pairs: Sequence[tuple[int, str]], now: datetime) -> None:
    """``(subscriber_id, address)`` pairs; ``address_seen_at`` becomes ``now``."""
    if not pairs:
        return
    with connection.cursor() as cursor:
        if is_postgres():
            for part in chunks(pairs, 50_000):
                cursor.execute(
                    f"UPDATE {_table()} AS n SET address = v.address, address_seen_at = %s "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v(sid, address) WHERE n.subscriber_id = v.sid",
                    [now, [p[0] for p in part], [p[1] for p in part]],
                )
        else:
            cursor.executemany(
                f"UPDATE {_table()} SET address = %s, address_seen_at = %s WHERE subscriber_id = %s",
                [(address, _ts(now), sid) for sid, address in pairs],
            )


def _clear_addresses(ids: Sequence[int]) -> None:
    with connection.cursor() as cursor:
        for part in id_chunks(ids):
            clause, params = in_ids("subscriber_id", part)
            cursor.execute(f"UPDATE {_table()} SET address = '' WHERE {clause}", params)


def _set_applied(pairs: Sequence[tuple[int, int]], value: str, now: datetime) -> None:
    """``(subscriber_id, generation)`` pairs: applied = ``value`` where the generation
    is still the one the run saw."""
    if not pairs:
        return
    with connection.cursor() as cursor:
        if is_postgres():
            for part in chunks(pairs, 50_000):
                cursor.execute(
                    f"UPDATE {_table()} AS n SET applied = %s, applied_at = %s "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS v(sid, gen) "
                    "WHERE n.subscriber_id = v.sid AND n.generation = v.gen",
                    [value, now, [p[0] for p in part], [p[1] for p in part]],
                )
        else:
            cursor.executemany(
                f"UPDATE {_table()} SET applied = %s, applied_at = %s WHERE subscriber_id = %s AND generation = %s",
                [(value, _ts(now), sid, gen) for sid, gen in pairs],
            )


# --- the run ----------------------------------------------------------------------------


def _repair(driver: Driver, suspend: list[Target], restore: list[Target]) -> tuple[BulkResult, BulkResult]:
    done_suspend = driver.bulk_suspend(suspend) if suspend else BulkResult()
    done_restore = driver.bulk_restore(restore) if restore else BulkResult()
    return done_suspend, done_restore


def _addresses(rows: dict[int, _Row], state: RouterState) -> dict[int, str]:
    """Where each subscriber on the router can be found now: the address of their live
    session or, failing that, an entry this system put on the suspended address list for
    them (unless a live session holds that address now)."""
    live = {s.address for s in state.active.values() if s.address}
    by_name = {r.username: r.subscriber_id for r in rows.values()}
    found: dict[int, str] = {}
    for name, session in state.active.items():
        sid = by_name.get(name)
        if sid is not None and session.address:
            found[sid] = session.address
    for address, entry in state.suspended.items():
        if entry.comment.isdigit() and address not in live:
            sid = int(entry.comment)
            if sid in rows and sid not in found:
                found[sid] = address
    return found


def reconcile_router(router: Router, *, now: datetime, repair: bool = True) -> ReconcileRun:
    """Compare ``router`` with the database, repair drift (unless ``repair`` is False)
    and return the recorded :class:`ReconcileRun`."""
    started = time.monotonic()
    run = ReconcileRun(router=router, started_at=now)

    def finish() -> ReconcileRun:
        run.finished_at = now + timedelta(seconds=time.monotonic() - started)
        run.save()
        return run

    try:
        driver = driver_for(router)
        state = driver.read_state()
    except RouterUnavailable as exc:
        run.error = f"router unavailable ({exc.reason}): {exc.message}"[:4000]
        log.warning("reconcile %s: %s", router.name, run.error)
        with _database_turn():
            mark_router(router, now=now, error=f"{exc.reason}: {exc.message}")
            return finish()
    except Exception as exc:  # a refused read, a bad stored secret, no driver for the method
        run.error = f"cannot read the router: {exc}"[:4000]
        log.warning("reconcile %s: %s", router.name, run.error)
        with _database_turn():
            mark_router(router, now=now, error=run.error)
            return finish()

    with _database_turn():
        mark_router(router, now=now)
        rows = _load(router.pk)
    desired = [Desired(r.subscriber_id, r.username, r.profile, r.suspended) for r in rows.values()]
    # What the driver reports as the suspended profile (RADIUS: the suspended group).
    suspended_profile = getattr(driver, "suspended_profile", "") or router.suspended_profile
    drift = diff(desired, state, suspended_profile=suspended_profile)

    blocked_comments = {e.comment for e in state.suspended.values() if e.comment}
    restricted = {
        t.subscriber_id for t in drift.to_restore if _restricted(t, state, suspended_profile, blocked_comments)
    }
    disabled = []  # active in billing, but the secret is disabled on the router: reported, not repaired
    for d in desired:
        secret = state.secrets.get(d.username)
        if not d.suspended and secret is not None and secret.disabled and d.subscriber_id not in restricted:
            disabled.append(d)
    run.secrets = len(state.secrets)
    run.online = len(state.active)
    run.online_unpaid = [d.username for d in drift.online_unpaid]
    with _database_turn():
        run.unknown_on_router = _unknown_to_billing(drift.unknown_on_router)
    run.paid_but_suspended = [t.username for t in drift.to_restore if t.subscriber_id in restricted] + [
        d.username for d in disabled
    ]
    run.missing_on_router = [d.username for d in drift.missing_on_router]

    drifted = {t.subscriber_id for t in (*drift.to_suspend, *drift.to_restore)}
    ok: dict[int, bool] = {}  # subscriber id → suspended state now on the router
    errors: list[str] = []
    if repair and drifted:
        with _database_turn():
            moved = _changed_since(router.pk, rows, drifted)
        suspend = [t for t in drift.to_suspend if t.subscriber_id not in moved]
        restore = [t for t in drift.to_restore if t.subscriber_id not in moved]
        failed: dict[int, str] = {}
        try:
            done_suspend, done_restore = _repair(driver, suspend, restore)
            for sid in done_suspend.ok:
                ok[sid] = True
            for sid in done_restore.ok:
                ok[sid] = False
            failed.update(done_suspend.failed)
            failed.update(done_restore.failed)
            # A payment (or staff) may have changed someone while the repair ran.
            with _database_turn():
                again = _changed_since(router.pk, rows, list(ok))
            if again:
                fix_suspend = [_target(r) for r in again.values() if r is not None and r.suspended]
                fix_restore = [_target(r) for r in again.values() if r is not None and not r.suspended]
                fixed_suspend, fixed_restore = _repair(driver, fix_suspend, fix_restore)
                failed.update(fixed_suspend.failed)
                failed.update(fixed_restore.failed)
                for sid in again:
                    ok.pop(sid, None)
        except DriverError as exc:
            message = exc.message if isinstance(exc, RouterUnavailable) else str(exc)
            errors.append(f"repair stopped: {message}")
            with _database_turn():
                mark_router(router, now=now, error=message)
        if failed:
            names = {r.subscriber_id: r.username for r in rows.values()}
            first = next(iter(failed.items()))
            errors.append(f"{len(failed)} repairs failed (first: {names.get(first[0], first[0])}: {first[1]})")
        if moved:
            log.info("reconcile %s: %d subscribers changed during the run; left to their enforcement actions",
                     router.name, len(moved))
    run.repaired = len(ok)
    run.error = "; ".join(errors)[:4000]

    # What the database learns: who is where, and what is applied.
    addresses = _addresses(rows, state)
    set_pairs = [(sid, address) for sid, address in addresses.items()]
    clear = [r.subscriber_id for r in rows.values() if r.address and r.subscriber_id not in addresses]
    in_sync = [r for r in rows.values() if r.subscriber_id not in drifted and r.username in state.secrets]
    applied_suspended = [(r.subscriber_id, r.generation or 0) for r in in_sync if r.suspended and r.applied != NetState.SUSPENDED]
    applied_active = [(r.subscriber_id, r.generation or 0) for r in in_sync if not r.suspended and r.applied != NetState.ACTIVE]
    for sid, suspended in ok.items():
        (applied_suspended if suspended else applied_active).append((sid, rows[sid].generation or 0))
    with _database_turn(), transaction.atomic():
        _create_missing_states(rows.values())
        _set_addresses(set_pairs, now)
        _clear_addresses(clear)
        _set_applied(applied_suspended, NetState.SUSPENDED, now)
        _set_applied(applied_active, NetState.ACTIVE, now)
        finish()
    log.info(
        "reconcile %s: %d secrets, %d online, %d online unpaid, %d unknown, %d paid but suspended, %d missing, %d repaired",
        router.name, run.secrets, run.online, len(run.online_unpaid), len(run.unknown_on_router),
        len(run.paid_but_suspended), len(run.missing_on_router), run.repaired,
    )
    return run


def _target(row: _Row) -> Target:
    return Target(row.subscriber_id, row.username, row.profile)


def _unknown_to_billing(names: list[str]) -> list[str]:
    """Of the secrets no subscriber on this router accounts for, those no subscriber at all
    has (a subscriber of another router, or of none yet, is known to billing)."""
    known: set[str] = set()
    size = 10_000 if is_postgres() else 900
    for part in chunks(names, size):
        known.update(Subscriber.objects.filter(pppoe_username__in=list(part)).values_list("pppoe_username", flat=True))
    return [name for name in names if name not in known]


def _restricted(target: Target, state: RouterState, suspended_profile: str, blocked_comments: set[str]) -> bool:
    """A subscriber to restore is *restricted* (rather than merely on another package's
    profile): on the suspended profile or on the suspended address list."""
    secret = state.secrets.get(target.username)
    if secret is not None and secret.profile == suspended_profile:
        return True
    session = state.active.get(target.username)
    if session is not None and session.address and session.address in state.suspended:
        return True
    return str(target.subscriber_id) in blocked_comments


@dataclass(frozen=True)
class DriftRow:
    """One subscriber whose account on the router differs from what billing wants."""

    subscriber_id: int | None
    username: str
    problem: str  # online_unpaid | to_suspend | to_restore | missing_on_router | unknown_on_router | disabled
    wanted: str  # the profile billing wants, or "suspended"
    on_router: str  # the secret's profile ("" when there is none)
    online_address: str = ""
    listed: bool = False


@dataclass
class DriftPreview:
    secrets: int
    online: int
    rows: list[DriftRow]


def compare_router(router: Router, *, timeout: float) -> DriftPreview:
    """Read ``router`` now (one attempt, ``timeout`` seconds per read) and list how it
    differs from billing, the way a reconcile run would see it, without repairing or
    recording anything. Raises the driver's errors (RouterUnavailable, …)."""
    from ispbill.network.connections import one_off_driver

    driver = one_off_driver(router, timeout=timeout)
    try:
        state = driver.read_state()
    finally:
        driver.close()
    rows = _load(router.pk)
    desired = [Desired(r.subscriber_id, r.username, r.profile, r.suspended) for r in rows.values()]
    suspended_profile = getattr(driver, "suspended_profile", "") or router.suspended_profile
    drift = diff(desired, state, suspended_profile=suspended_profile)

    def row(sid: int | None, username: str, problem: str, wanted: str) -> DriftRow:
        secret = state.secrets.get(username)
        session = state.active.get(username)
        address = session.address if session is not None else ""
        return DriftRow(sid, username, problem, wanted, secret.profile if secret else "", address,
                        bool(address) and address in state.suspended)

    out: list[DriftRow] = []
    unpaid = {d.subscriber_id for d in drift.online_unpaid}
    for d in drift.online_unpaid:
        out.append(row(d.subscriber_id, d.username, "online_unpaid", "suspended"))
    for t in drift.to_suspend:
        if t.subscriber_id not in unpaid:
            out.append(row(t.subscriber_id, t.username, "to_suspend", "suspended"))
    for t in drift.to_restore:
        out.append(row(t.subscriber_id, t.username, "to_restore", t.profile))
    restoring = {t.subscriber_id for t in drift.to_restore}
    for d in desired:
        secret = state.secrets.get(d.username)
        if not d.suspended and secret is not None and secret.disabled and d.subscriber_id not in restoring:
            out.append(row(d.subscriber_id, d.username, "disabled", d.profile))
    for d in drift.missing_on_router:
        out.append(row(d.subscriber_id, d.username, "missing_on_router", "suspended" if d.suspended else d.profile))
    for name in _unknown_to_billing(drift.unknown_on_router):
        out.append(row(None, name, "unknown_on_router", ""))
    return DriftPreview(secrets=len(state.secrets), online=len(state.active), rows=out)


def reconcile_routers(*, now: datetime) -> list[ReconcileRun]:
    """Reconcile every active router, each on its own: one failing stops no other. The
    runs come back in router id order.

    Up to ``ISPBILL_RECONCILE_CONCURRENCY`` routers are reconciled at once, each on a
    thread with its own database connection (closed when its router is done), so a
    router that does not answer delays no other. Inside a transaction they are
    reconciled one after another on the calling thread: other threads' connections
    could not see its uncommitted rows."""
    routers = list(Router.objects.filter(is_active=True).order_by("pk"))
    threads = min(settings.ISPBILL_RECONCILE_CONCURRENCY, len(routers))
    if threads <= 1 or connection.in_atomic_block:
        runs = [_reconcile_or_record(router, now=now) for router in routers]
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reconcile") as pool:
            runs = list(pool.map(lambda router: _reconcile_on_own_connection(router, now=now), routers))
    return [run for run in runs if run is not None]


def _reconcile_on_own_connection(router: Router, *, now: datetime) -> ReconcileRun | None:
    try:
        return _reconcile_or_record(router, now=now)
    finally:
        connection.close()  # this thread's


def _reconcile_or_record(router: Router, *, now: datetime) -> ReconcileRun | None:
    """The router's run; if reconciling failed, a run recording the failure (None if
    even that could not be recorded)."""
    try:
        return reconcile_router(router, now=now)
    except Exception as exc:  # a bug or a database hiccup for this router only
        log.exception("reconcile %s failed", router.name)
        try:
            with _database_turn():
                return ReconcileRun.objects.create(
                    router=router, started_at=now, finished_at=now, error=f"reconcile failed: {exc}"[:4000]
                )
        except Exception:
            log.exception("could not record the failed reconcile of %s", router.name)
            return None
