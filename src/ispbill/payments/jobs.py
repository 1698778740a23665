"""Periodic payment jobs."""

from __future__ import annotations

from datetime import datetime

from ispbill.payments import gateway_services, refund_services
from ispbill.worker.scheduler import Every, job


@job("payment_requery", Every(seconds=60), order=25)
def payment_requery(now: datetime) -> str:
    """Ask the gateways again about attempts whose confirmation was cut short."""
    return gateway_services.requery_pending(now=now)


@job("refund_follow_up", Every(seconds=300), order=26)
def refund_follow_up(now: datetime) -> str:
    """Ask the gateways about refunds they accepted but had not completed yet."""
    return refund_services.follow_up_refunds(now=now)
