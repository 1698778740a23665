"""The busiest back-office pages run a fixed number of SQL statements, however many
subscribers, invoices, payments and messages there are."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.backoffice.services import change_status_by_hand
from ispbill.core import clock
from ispbill.network.models import ReconcileRun, Router
from ispbill.notifications.services import request_reminder
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import at, bill, make_subscriber

pytestmark = pytest.mark.django_db

LIST_PARAMS = [
    {},
    {"status": "suspended"},
    {"area": "mirpur"},
    {"package": "basic"},
    {"router": "core"},
    {"overdue": "1"},
    {"q": "subscriber"},
    {"q": "017"},
    {"after": "first"},
    {"q": "user", "status": "active", "area": "Mirpur", "package": "basic", "router": "core", "overdue": "1"},
]


def _queries(client, path, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, params or {})
    assert response.status_code == 200, path
    return len(ctx.captured_queries)


def _grow_to(world, n: int, router: Router) -> None:
    """``n`` subscribers in Mirpur on the core router, billed for November; every third
    one has paid part of it, every fifth is suspended."""
    now = clock.now()
    while Subscriber.objects.count() < n:
        sub = make_subscriber(world["basic"], date(2026, 11, 1), area="Mirpur", router=router)
        k = Subscriber.objects.count()
        bill(date(2026, 11, 1))
        if k % 3 == 0:
            record_payment(subscriber_id=sub.pk, amount=Decimal("300.00"), method="cash", received_at=now)
        if k % 5 == 0:
            change_status_by_hand(subscriber_id=sub.pk, action="suspend", reason="unpaid", now=now)
    ReconcileRun.objects.create(router=router, started_at=now - timedelta(minutes=n), online_unpaid=["x"] * n)


@pytest.fixture
def router(db):
    return Router.objects.create(name="core", host="10.0.0.1")


def _resolve(params: dict, world, router) -> dict:
    values = {"basic": world["basic"].pk, "core": router.pk, "first": Subscriber.objects.order_by("id").first().pk}
    return {k: values.get(v, v) for k, v in params.items()}


@pytest.mark.parametrize("params", LIST_PARAMS, ids=lambda p: ",".join(p) or "unfiltered")
def test_subscriber_list_queries_do_not_grow_with_rows(world, client_for, router, params):
    client = client_for("viewer")
    counts = []
    for n in (3, 30):
        _grow_to(world, n, router)
        counts.append(_queries(client, "/office/subscribers/", _resolve(params, world, router)))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 9, counts


def test_dashboard_queries_do_not_grow_with_rows(world, client_for, router):
    client = client_for("viewer")
    counts = []
    for n in (3, 30):
        _grow_to(world, n, router)
        Router.objects.create(name=f"edge-{n}", host=f"10.0.1.{n}")
        cache.clear()  # earlier days' payment sums are cached: count the uncached page
        counts.append(_queries(client, "/office/"))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 16, counts


def test_detail_queries_do_not_grow_with_history(world, client_for, router):
    """One subscriber with 3, then 30 months of invoices, payments and reminders."""
    sub = make_subscriber(world["premium"], date(2024, 6, 1), router=router)
    client = client_for("viewer")
    month, counts = date(2024, 6, 1), []
    for months in (3, 30):
        while sub.invoices.count() < months:
            bill(month)
            invoice = sub.invoices.order_by("-period_start").first()
            record_payment(subscriber_id=sub.pk, amount=Decimal("700.00"), method="cash", received_at=at(month))
            request_reminder(invoice_id=invoice.pk, kind="overdue", channels=["sms"], now=at(month))
            month = (month + timedelta(days=32)).replace(day=1)
        counts.append(_queries(client, f"/office/subscribers/{sub.pk}/"))
    assert counts[0] == counts[1], counts
