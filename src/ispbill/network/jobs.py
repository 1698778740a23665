"""Periodic network jobs, and registration of the enforcement handler."""

from __future__ import annotations

from datetime import datetime

from ispbill.network import handlers  # noqa: F401  (registers network.enforce)
from ispbill.network import services
from ispbill.worker.scheduler import Every, job


@job("suspension_run", Every(seconds=3600), order=30)
def suspension_run(now: datetime) -> str:
    """Suspend subscribers unpaid past due + grace (after the dunning run's reminders)."""
    count = services.suspend_overdue(now=now)
    return f"{count} subscribers suspended"
