"""Periodic dunning jobs."""

from __future__ import annotations

from datetime import datetime

from ispbill.dunning import services
from ispbill.worker.scheduler import Every, job


@job("dunning_run", Every(seconds=3600), order=20)
def dunning_run(now: datetime) -> str:
    """Queue the reminders due today (hourly: a new day's steps go out soon after midnight,
    SMS held until the end of quiet hours)."""
    result = services.run_dunning(now=now)
    return f"{result.today}: {result.invoices_checked} open invoices checked, {result.queued} messages queued"
