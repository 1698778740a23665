"""The dashboard's figures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.backoffice.selectors import dashboard
from ispbill.core import clock
from ispbill.network.models import ReconcileRun, Router

from ..billing.billing_support import bill, make_subscriber

pytestmark = pytest.mark.django_db


def test_dashboard_figures(world, client_for, fixed_clock):
    make_subscriber(world["basic"], date(2026, 11, 20))
    bill(date(2026, 11, 20))
    router = Router.objects.create(name="core-1", host="10.0.0.1", consecutive_failures=2, last_error="timeout")
    ReconcileRun.objects.create(router=router, started_at=clock.now(), online_unpaid=["a", "b"], unknown_on_router=["x"])
    client = client_for("billing")
    client.post(f"/office/subscribers/{world['sub'].pk}/payments", {"amount": "400.00", "method": "cash", "key": "d1"})
    client.post(f"/office/subscribers/{world['sub'].pk}/status", {"action": "suspend", "reason": "x"})  # billing: 403

    now = clock.now()
    d = dashboard(now=now, today=date(2026, 11, 25))
    assert d.billed_paisa == 100000 + 36667  # November, and 11 of 30 days from 20 November
    assert d.collected_paisa == 40000
    assert d.collection_rate == Decimal(40000) / Decimal(136667)
    assert d.overdue_paisa == 60000 + 36667 == d.outstanding_paisa
    assert dict(d.aging) == {"0–7 days": 36667, "8–30 days": 60000, "31–60 days": 0, "60+ days": 0}
    assert d.by_status["active"] == 2
    assert d.leakage["online_unpaid"] == 2 and d.leakage["unknown_on_router"] == 1
    assert d.payments_by_day["Cash"][date(2026, 11, 25)] == 40000

    html = client.get("/office/").content.decode()
    assert "৳ 400.00" in html and "core-1" in html and "2 failures" in html


def test_todays_payments_show_at_once_and_earlier_days_within_the_cache_time(world, fixed_clock, settings):
    """Earlier days' sums are reused from the cache; today's are always summed afresh."""
    from datetime import UTC, datetime

    from django.core.cache import cache

    from ispbill.payments.services import record_payment

    sub = world["sub"].pk
    yesterday = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka
    record_payment(subscriber_id=sub, amount=Decimal("100.00"), method="cash", received_at=yesterday)
    first = dashboard(now=fixed_clock.now(), today=date(2026, 11, 25))
    assert first.collected_paisa == 10000

    record_payment(subscriber_id=sub, amount=Decimal("50.00"), method="cash", received_at=fixed_clock.now())
    record_payment(subscriber_id=sub, amount=Decimal("25.00"), method="cash", received_at=yesterday, reference="late")
    second = dashboard(now=fixed_clock.now(), today=date(2026, 11, 25))
    assert second.collected_paisa == 10000 + 5000  # today's at once; yesterday's late entry not yet
    assert second.payments_by_day["Cash"][date(2026, 11, 24)] == 10000

    cache.clear()  # what the expiry (ISPBILL_DASHBOARD_CACHE_SECONDS) does
    third = dashboard(now=fixed_clock.now(), today=date(2026, 11, 25))
    assert third.collected_paisa == 10000 + 5000 + 2500
    assert third.payments_by_day["Cash"][date(2026, 11, 24)] == 12500
