"""Scheduler leadership: a PostgreSQL advisory lock held by one connection, or on
SQLite a lease row that expires unless renewed."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ispbill.worker.models import LeaderLease
from ispbill.worker.scheduler import Leadership

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


# -- PostgreSQL: advisory lock ----------------------------------------------------------

def _contend(peers_):
    """Two peers each create a Leadership and try to acquire it at the same moment."""
    a, b = peers_
    start = threading.Barrier(2, timeout=10)
    leaders = {a: Leadership("worker-a"), b: Leadership("worker-b")}

    def try_acquire(peer):
        start.wait()
        return leaders[peer].acquire(NOW)

    fa, fb = a.submit(try_acquire, a), b.submit(try_acquire, b)
    got = {a: fa.result(timeout=10), b: fb.result(timeout=10)}
    assert sorted(got.values()) == [False, True], got
    holder = a if got[a] else b
    other = b if holder is a else a
    return holder, other, leaders


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_postgres_exactly_one_leader_then_handover_on_release(peers):
    holder, other, leaders = _contend(peers(2))

    # the holder keeps it; the other keeps being refused
    assert holder.run(leaders[holder].acquire, NOW + timedelta(seconds=5)) is True
    assert other.run(leaders[other].acquire, NOW + timedelta(minutes=5)) is False

    holder.run(leaders[holder].release)

    assert other.run(leaders[other].acquire, NOW + timedelta(seconds=6)) is True
    assert holder.run(leaders[holder].acquire, NOW + timedelta(seconds=7)) is False


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_postgres_leadership_ends_with_the_holders_connection(peers):
    holder, other, leaders = _contend(peers(2))

    # the holder's process dies: the server drops its session and with it the lock.
    # The backend ends asynchronously after the client hangs up, so poll (bounded).
    holder.run(lambda: connection.close())
    deadline = time.monotonic() + 10
    while not other.run(leaders[other].acquire, NOW):
        assert time.monotonic() < deadline, "the lock outlived its session"
        time.sleep(0.05)

    # the old holder reconnects and must not believe it still leads
    assert holder.run(leaders[holder].acquire, NOW) is False


# -- SQLite: lease row ------------------------------------------------------------------

@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("the lease row is the SQLite path; PostgreSQL uses an advisory lock (tested above)")


@pytest.mark.django_db
def test_sqlite_lease_refuses_a_second_holder_until_it_expires(sqlite_only):
    a, b = Leadership("worker-a"), Leadership("worker-b")

    assert a.acquire(NOW) is True
    assert b.acquire(NOW) is False
    assert b.acquire(NOW + timedelta(seconds=30)) is False  # expires_at is not yet in the past
    lease = LeaderLease.objects.get(name=Leadership.NAME)
    assert (lease.holder, lease.expires_at) == ("worker-a", NOW + timedelta(seconds=30))

    assert b.acquire(NOW + timedelta(seconds=31)) is True
    assert a.acquire(NOW + timedelta(seconds=32)) is False
    assert LeaderLease.objects.get(name=Leadership.NAME).holder == "worker-b"


@pytest.mark.django_db
def test_sqlite_lease_is_renewed_by_its_holder(sqlite_only):
    a, b = Leadership("worker-a"), Leadership("worker-b")
    assert a.acquire(NOW) is True
    assert a.acquire(NOW + timedelta(seconds=20)) is True  # renewed to +50 s

    assert b.acquire(NOW + timedelta(seconds=31)) is False
    assert b.acquire(NOW + timedelta(seconds=51)) is True


@pytest.mark.django_db
def test_sqlite_release_hands_over_at_once(sqlite_only):
    a, b = Leadership("worker-a"), Leadership("worker-b")
    assert a.acquire(NOW) is True
    b.release()  # not the holder: changes nothing
    assert b.acquire(NOW + timedelta(seconds=1)) is False

    a.release()

    assert b.acquire(NOW + timedelta(seconds=1)) is True
