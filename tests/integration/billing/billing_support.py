"""Set-up helpers for billing integration tests: everything goes through the services."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time
from decimal import Decimal

from ispbill.billing import ledger
from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing, update_billing_settings
from ispbill.core.timeutil import isp_zone
from ispbill.plans.models import Package
from ispbill.plans.services import create_package
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber

_serial = itertools.count(1)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """An aware UTC instant on ``day`` at ``hour:minute`` in the ISP's zone (Dhaka)."""
    return datetime.combine(day, time(hour, minute), tzinfo=isp_zone()).astimezone(UTC)


def bill(day: date, **kwargs):
    """Run the billing run as of ``day`` (midday in Dhaka)."""
    return run_billing(today=day, now=at(day), **kwargs)


def make_package(name: str = "Home 10M", price: str = "1000.00") -> Package:
    return create_package(name=name, price=Decimal(price), rate_limit="10M/10M", router_profile=name.lower())


def make_subscriber(package: Package, activated_on: date, **extra) -> Subscriber:
    n = next(_serial)
    return create_subscriber(
        today=activated_on,
        name=f"Subscriber {n}",
        phone=f"017{n:08d}",
        pppoe_username=f"user{n:05d}",
        package_id=package.pk,
        activated_on=activated_on,
        **extra,
    )


def configure(**changes):
    return update_billing_settings(**changes)


def invoices_of(sub: Subscriber) -> list[Invoice]:
    return list(Invoice.objects.filter(subscriber_id=sub.pk).order_by("period_start", "id"))


def line_summary(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_paisa) for line in invoice.lines.order_by("position")]


def refreshed(sub: Subscriber) -> Subscriber:
    return Subscriber.objects.get(pk=sub.pk)


def assert_ledger_consistent(sub: Subscriber | None = None) -> None:
    assert ledger.ledger_discrepancies() == []
    subs = [sub] if sub is not None else list(Subscriber.objects.all())
    for s in subs:
        owed = sum(
            inv.amount_due_paisa for inv in Invoice.objects.filter(subscriber_id=s.pk).exclude(status="void")
        )
        assert ledger.balance(s.pk) == owed - ledger.unapplied_credit(s.pk)
