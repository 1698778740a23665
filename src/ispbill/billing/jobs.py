"""Periodic billing jobs."""

from __future__ import annotations

from datetime import datetime, time

from ispbill.billing import services
from ispbill.core.timeutil import local_date
from ispbill.worker.scheduler import Daily, job


@job("billing_run", Daily(at=time(0, 5)), order=10)
def billing_run(now: datetime) -> str:
    """Apply package changes scheduled for today, then issue every invoice due today."""
    today = local_date(now)
    changed = services.apply_scheduled_package_changes(today=today, now=now)
    result = services.run_billing(today=today, now=now)
    return f"{today}: issued {result.issued} invoices, applied {changed} package changes"
