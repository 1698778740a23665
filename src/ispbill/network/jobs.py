"""Periodic network jobs, and registration of the enforcement handler."""

from __future__ import annotations

from datetime import datetime, timedelta

from ispbill.network import handlers  # noqa: F401  (registers network.enforce)
from ispbill.network import reconcile, services
from ispbill.network.models import ReconcileRun
from ispbill.worker.scheduler import Every, job

REPORT_RETENTION = timedelta(days=14)


@job("suspension_run", Every(seconds=3600), order=30)
def suspension_run(now: datetime) -> str:
    """Suspend subscribers unpaid past due + grace (after the dunning run's reminders)."""
    count = services.suspend_overdue(now=now)
    return f"{count} subscribers suspended"


@job("reconcile_routers", Every(seconds=300), order=40)
def reconcile_routers(now: datetime) -> str:
    """Compare every active router with billing, repair drift, record the leakage report."""
    runs = reconcile.reconcile_routers(now=now)
    # Keep two weeks of reports (288 a day per router); the newest per router always stays.
    ReconcileRun.objects.filter(started_at__lt=now - REPORT_RETENTION).exclude(pk__in=[r.pk for r in runs]).delete()
    failed = sum(1 for r in runs if r.error)
    repaired = sum(r.repaired for r in runs)
    leaks = sum(len(r.online_unpaid) + len(r.paid_but_suspended) for r in runs)
    return f"{len(runs)} routers reconciled ({failed} with errors), {repaired} repaired, {leaks} leaks found"
