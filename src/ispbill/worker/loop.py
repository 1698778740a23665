"""``ispbill worker``: the scheduler (when leader) and the outbox dispatcher."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection

from ispbill.core import clock
from ispbill.worker import outbox, scheduler

log = logging.getLogger("ispbill.worker")


def run_forever(stop: threading.Event, *, poll_seconds: float = 1.0, worker_id: str | None = None) -> None:
    worker_id = worker_id or outbox.default_worker_id()
    leadership = scheduler.Leadership(worker_id)
    scheduler.load_job_modules()
    log.info("worker %s started; jobs: %s", worker_id, ", ".join(j.name for j in scheduler.jobs()))
    # Sends to SMS providers, SMTP and routers overlap on these threads.
    # SQLite has one writer at a time: threads there only queue on its lock.
    threads = settings.ISPBILL_DISPATCH_THREADS if connection.vendor == "postgresql" else 1
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dispatch") if threads > 1 else None
    try:
        while not stop.is_set():
            try:
                now = clock.now()
                if leadership.acquire(now):
                    scheduler.run_due_jobs(now)
                result = outbox.dispatch(now=clock.now(), worker_id=worker_id, limit=200, pool=pool)
                if result.claimed:
                    continue  # more may be waiting
            except Exception:
                log.exception("worker loop error; retrying")
                close_old_connections()
            stop.wait(poll_seconds)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        try:
            leadership.release()
        except Exception:
            pass
