"""Starts for one subscriber arriving at the same moment, each in its own request and
transaction (PostgreSQL: real row locks), are counted one after another by the limit."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection
from django.test import Client

from ispbill.payments.models import PaymentAttempt

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_a_burst_of_starts_gets_no_more_than_the_limit_past(world, bkash, fixed_clock, settings, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent transactions (PostgreSQL)")
    settings.ISPBILL_PAY_START_LIMIT = "3/10m"
    token = world.token()
    caplog.set_level(logging.INFO, logger="ispbill.portal")
    starts = 10
    barrier = threading.Barrier(starts)
    responses: list = []
    errors: list[BaseException] = []

    def press_pay():
        try:
            barrier.wait(timeout=5)
            responses.append(Client().post(f"/pay/{token}/start", {"gateway": "bkash"}))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=press_pay) for _ in range(starts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert errors == []
    assert sorted(r.status_code for r in responses) == [303] * 3 + [429] * 7
    assert {r["Retry-After"] for r in responses if r.status_code == 429} == {"600"}
    assert PaymentAttempt.objects.filter(subscriber=world.sub).count() == 3
    assert len(bkash.payments) == 3
    refusals = [r for r in caplog.records if r.name == "ispbill.portal" and "payment start refused" in r.getMessage()]
    assert len(refusals) == 7
