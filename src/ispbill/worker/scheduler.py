"""Periodic jobs with one leader across processes.

A job is a function of the instant it runs as of; it reads no clock itself. Apps
register jobs in their ``jobs`` module (listed in :data:`JOB_MODULES`).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Callable

from django.db import connection, transaction
from django.db.models import Q

from ispbill.core.db import is_postgres, lock_key
from ispbill.core.timeutil import isp_zone, local_date
from ispbill.worker.models import JobRun, LeaderLease

log = logging.getLogger("ispbill.scheduler")

FAILED_JOB_PAUSE = timedelta(minutes=5)

JOB_MODULES = [
    "ispbill.billing.jobs", "ispbill.dunning.jobs", "ispbill.notifications.jobs", "ispbill.network.jobs", "ispbill.payments.jobs",
    "ispbill.backoffice.jobs",
]


@dataclass(frozen=True)
class Every:
    seconds: int

    def is_due(self, last_as_of: datetime | None, now: datetime) -> bool:
        return last_as_of is None or now - last_as_of >= timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Daily:
    """Once per local day, at or after ``at`` (ISP time); a missed day runs on start-up."""

    at: time

    def is_due(self, last_as_of: datetime | None, now: datetime) -> bool:
        local = now.astimezone(isp_zone())
        if local.time() < self.at:
            return False
        return last_as_of is None or local_date(last_as_of) < local.date()


@dataclass(frozen=True)
class Job:
    name: str
    schedule: Every | Daily
    run: Callable[[datetime], str]
    order: int


_JOBS: dict[str, Job] = {}


def job(name: str, schedule: Every | Daily, *, order: int = 100):
    """Register a periodic job; lower ``order`` runs first when several are due."""

    def register(fn):
        _JOBS[name] = Job(name, schedule, fn, order)
        return fn

    return register


def unregister(name: str) -> None:
    _JOBS.pop(name, None)


def load_job_modules() -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)


def jobs() -> list[Job]:
    load_job_modules()
    return sorted(_JOBS.values(), key=lambda j: (j.order, j.name))


@dataclass
class JobOutcome:
    name: str
    ok: bool
    result: str


def run_job(j: Job, now: datetime) -> JobOutcome:
    JobRun.objects.get_or_create(name=j.name)
    JobRun.objects.filter(name=j.name).update(last_started_at=now)
    try:
        result = j.run(now) or ""
    except Exception as exc:
        log.exception("job %s failed", j.name)
        JobRun.objects.filter(name=j.name).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        return JobOutcome(j.name, False, f"{type(exc).__name__}: {exc}")
    from django.db.models import F

    JobRun.objects.filter(name=j.name).update(
        last_finished_at=now, last_as_of=now, last_result=str(result)[:2000], last_error="", runs=F("runs") + 1
    )
    return JobOutcome(j.name, True, str(result))


def run_due_jobs(now: datetime, *, force: bool = False) -> list[JobOutcome]:
    """Run every job that is due as of ``now`` (all of them when ``force``)."""
    runs = {r.name: r for r in JobRun.objects.all()}
    outcomes = []
    for j in jobs():
        run = runs.get(j.name)
        if not force and run is not None and run.last_error and run.last_started_at and now - run.last_started_at < FAILED_JOB_PAUSE:
            continue  # a failing job is retried every few minutes, not on every loop
        if force or j.schedule.is_due(run.last_as_of if run else None, now):
            outcomes.append(run_job(j, now))
    return outcomes


class Leadership:
    """Who runs the scheduler. PostgreSQL: a session advisory lock held on this
    thread's connection (released by the server if the process dies). SQLite: a lease
    row renewed on every loop."""

    NAME = "scheduler"
    LEASE_SECONDS = 30

    def __init__(self, holder: str):
        self.holder = holder
        self._key = lock_key(self.NAME)
        self._held_on = None

    def acquire(self, now: datetime) -> bool:
        if is_postgres():
            # A session lock lives as long as the server connection that took it: if
            # Django has since reconnected, the lock is gone and must be taken again.
            connection.ensure_connection()
            raw = connection.connection
            if self._held_on is not None and self._held_on is raw and not raw.closed:
                return True
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self._key])
                got = bool(cursor.fetchone()[0])
            self._held_on = raw if got else None
            return got
        with transaction.atomic():
            LeaderLease.objects.get_or_create(name=self.NAME, defaults={"holder": self.holder, "expires_at": now})
            return bool(
                LeaderLease.objects.filter(name=self.NAME)
                .filter(Q(holder=self.holder) | Q(expires_at__lt=now))
                .update(holder=self.holder, expires_at=now + timedelta(seconds=self.LEASE_SECONDS))
            )

    def release(self) -> None:
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self._key])
            self._held_on = None
        else:
            LeaderLease.objects.filter(name=self.NAME, holder=self.holder).delete()
