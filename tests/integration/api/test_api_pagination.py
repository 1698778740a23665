"""Lists page in the database: a page costs the same queries with 3 rows in the table or
30, and ``count`` is the whole table's (matching the filters)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.api.pagination import MAX_LIMIT
from ispbill.payments import services
from ispbill.payments.models import InboundWebhook, Payment

from ..billing.billing_support import bill, make_package, make_subscriber
from .api_support import assert_error

pytestmark = pytest.mark.django_db


def queries(api, path: str, **params) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path, **params)
    assert response.status_code == 200, response.content
    return response.json(), [q["sql"] for q in captured]


def assert_paged(sqls: list[str], table: str, limit: int) -> None:
    """The table is read twice: one page (LIMIT in SQL) and one COUNT."""
    reads = [sql for sql in sqls if f'FROM "{table}"' in sql]
    assert len(reads) == 2, reads
    assert sum("COUNT(" in sql for sql in reads) == 1, reads
    assert any(f"LIMIT {limit}" in sql for sql in reads), reads


def add_webhooks(n: int, clock) -> None:
    for _ in range(n):
        clock.advance(timedelta(seconds=1))
        InboundWebhook.objects.create(
            gateway="bkash", kind="sns", method="POST", path="/webhooks/bkash", headers={"X-Amz-Sns": "1"},
            body="{}", received_at=clock.now(), outcome="accepted",
        )


@pytest.fixture
def sub(db, fixed_clock):
    s = make_subscriber(make_package("Home 10M", "1000.00"), date(2026, 11, 1))
    bill(date(2026, 11, 1))
    return s


def add_payments(n: int, sub, clock) -> None:
    """``n`` cash payments (each with its ledger entries) and ``n`` gateway payments held for review."""
    for _ in range(n):
        clock.advance(timedelta(seconds=1))
        services.record_payment(subscriber_id=sub.pk, amount=Decimal("10.00"), method="cash", received_at=clock.now(),
                                notify=False)
        Payment.objects.create(
            amount_paisa=50_000, method="gateway", method_label="bKash", status="needs_review",
            review_reason="unknown_reference: no payment attempt", gateway="bkash",
            transaction_id=f"TRXPAGE{Payment.objects.count():04d}", received_at=clock.now(),
        )


def test_a_webhooks_page_reads_only_that_page(api, fixed_clock):
    add_webhooks(3, fixed_clock)
    api.get("/webhooks")  # the token's first use is recorded once
    small, few = queries(api, "/webhooks", limit=5)

    add_webhooks(27, fixed_clock)
    large, many = queries(api, "/webhooks", limit=5)
    middle, _ = queries(api, "/webhooks", limit=5, offset=10, outcome="accepted")

    assert len(few) == len(many)
    assert_paged(many, "payments_inboundwebhook", 5)
    assert (len(small["items"]), small["count"]) == (3, 3)
    newest = list(InboundWebhook.objects.order_by("-received_at", "-id").values_list("pk", flat=True))
    assert [w["id"] for w in large["items"]] == newest[:5] and large["count"] == 30
    assert [w["id"] for w in middle["items"]] == newest[10:15] and middle["count"] == 30
    assert large["items"][0] == api.get(f"/webhooks/{newest[0]}").json()


def payment_ids(status: str) -> list[int]:
    qs = Payment.objects.order_by("-received_at", "-id")
    return list((qs.filter(status=status) if status else qs).values_list("pk", flat=True))


@pytest.mark.parametrize("status", ["", "needs_review"])
def test_a_payments_page_reads_only_that_page(api, sub, fixed_clock, status):
    add_payments(3, sub, fixed_clock)
    api.get("/payments")
    small, few = queries(api, "/payments", limit=5, status=status)
    assert [p["id"] for p in small["items"]] == payment_ids(status)[:5] and small["count"] == len(payment_ids(status))

    add_payments(27, sub, fixed_clock)
    large, many = queries(api, "/payments", limit=5, offset=5, status=status)

    assert len(few) == len(many)
    assert_paged(many, "payments_payment", 5)
    ids = payment_ids(status)
    assert [p["id"] for p in large["items"]] == ids[5:10] and large["count"] == len(ids) == (30 if status else 60)
    assert large["items"] == [api.get(f"/payments/{pk}").json() for pk in ids[5:10]]
    assert all(p["allocations"] for p in large["items"] if p["status"] == "completed")


def test_limit_is_capped(api):
    assert api.get("/webhooks", limit=MAX_LIMIT).status_code == 200
    assert_error(api.get("/webhooks", limit=MAX_LIMIT + 1), 422, "invalid_input", "limit")
