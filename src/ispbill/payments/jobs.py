"""Periodic payment jobs."""

from __future__ import annotations

from datetime import datetime

from ispbill.payments import gateway_services
from ispbill.worker.scheduler import Every, job


@job("payment_requery", Every(seconds=60), order=25)
def payment_requery(now: datetime) -> str:
    """Ask the gateways again about attempts whose confirmation was cut short."""
    return gateway_services.requery_pending(now=now)
