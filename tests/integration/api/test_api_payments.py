"""/api/v1/payments"""

from __future__ import annotations

from datetime import date

import pytest

from ispbill.billing import ledger
from ispbill.payments.models import Payment

from ..billing.billing_support import bill, make_package, make_subscriber
from .api_support import assert_error, row_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(db):
    """Joined 16 Oct; owes 16-31 Oct (516.13), November and December (1000.00 each)."""
    home = make_package("Home 10M", "1000.00")
    s = make_subscriber(home, date(2026, 10, 16))
    bill(date(2026, 11, 25))
    return s


def invoices(api, sub) -> list[dict]:
    return sorted(api.get("/invoices", subscriber=sub.pk).json()["items"], key=lambda i: i["period_start"])


def test_record_a_payment_and_see_where_it_went(api, sub):
    oct_, nov, dec = invoices(api, sub)
    assert oct_["total"] == "516.13"

    response = api.post("/payments", {"subscriber": sub.pk, "amount": "1016.13", "reference": "Till 7"})

    assert response.status_code == 201
    payment = response.json()
    assert payment == {
        "id": payment["id"], "subscriber": sub.pk, "amount": "1016.13", "currency": "BDT", "method": "cash",
        "status": "completed", "reference": "Till 7", "received_at": "2026-11-25T10:00:00Z",  # the fixed clock
        "allocations": [{"invoice": oct_["id"], "amount": "516.13"}, {"invoice": nov["id"], "amount": "500.00"}],
        "gateway": "", "transaction_id": None, "method_label": "", "review_reason": "", "refunded": "0.00",
    }
    assert api.get(f"/payments/{payment['id']}").json() == payment
    assert api.get("/payments", subscriber=sub.pk).json() == {"items": [payment], "count": 1}
    assert [(i["amount_due"], i["status"]) for i in invoices(api, sub)] == [
        ("0.00", "paid"),
        ("500.00", "partially_paid"),
        ("1000.00", "open"),
    ]
    assert api.get(f"/subscribers/{sub.pk}").json()["balance"] == "1500.00"


def test_overpayment_is_shown_as_unallocated_credit(api, sub):
    response = api.post(
        "/payments",
        {"subscriber": sub.pk, "amount": "3000.00", "method": "bank", "received_at": "2026-11-24T08:15:00+06:00"},
    )

    payment = response.json()
    assert payment["received_at"] == "2026-11-24T02:15:00Z"
    assert payment["method"] == "bank"
    assert [a["amount"] for a in payment["allocations"]] == ["516.13", "1000.00", "1000.00", "483.87"]
    assert payment["allocations"][-1]["invoice"] is None
    assert api.get(f"/subscribers/{sub.pk}").json()["balance"] == "-483.87"
    # The credit pays January as soon as it is issued.
    bill(date(2026, 12, 25))
    jan = invoices(api, sub)[-1]
    assert (jan["period_start"], jan["amount_due"], jan["status"]) == ("2027-01-01", "516.13", "partially_paid")
    assert ledger.ledger_discrepancies() == []


def test_idempotency_key_makes_a_retry_harmless(api, sub):
    body = {"subscriber": sub.pk, "amount": "200.00"}
    first = api.post("/payments", body, headers={"Idempotency-Key": "pos-42-0001"})
    again = api.post("/payments", body, headers={"Idempotency-Key": "pos-42-0001"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Payment.objects.count() == 1
    assert invoices(api, sub)[0]["amount_due"] == "316.13"

    before = row_counts()
    assert_error(
        api.post("/payments", body | {"amount": "300.00"}, headers={"Idempotency-Key": "pos-42-0001"}), 409, "duplicate_reference"
    )
    assert_error(api.post("/payments", body, headers={"Idempotency-Key": "k" * 101}), 422, "invalid_idempotency_key")
    assert row_counts() == before
    # Without a key, the same body is a second payment.
    assert api.post("/payments", body).status_code == 201
    assert Payment.objects.count() == 2


@pytest.mark.parametrize(
    "amount",
    ["-100.00", "-0.01", "0", "0.00", "abc", "", " ", "100.123", "1e2", "NaN", "Infinity", "1,000.00", "৫০০",
     "99999999999999", 100.5, 100.0, True, None, [], {}],
)
def test_bad_amounts_are_refused_and_write_nothing(api, sub, amount):
    before = row_counts()

    body = assert_error(api.post("/payments", {"subscriber": sub.pk, "amount": amount}), 422, "invalid_input", "amount")

    assert "amount" in body["message"]
    assert row_counts() == before


def test_whole_number_amounts_are_accepted(api, sub):
    assert api.post("/payments", {"subscriber": sub.pk, "amount": 500}).json()["amount"] == "500.00"
    assert api.post("/payments", {"subscriber": sub.pk, "amount": "16.1"}).json()["amount"] == "16.10"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"subscriber": 999999}, 404, "subscriber_not_found", None),
        ({"subscriber": "me"}, 422, "invalid_input", "subscriber"),
        ({"subscriber": None}, 422, "invalid_input", "subscriber"),
        ({"method": "cheque"}, 422, "invalid_input", "method"),
        ({"reference": "r" * 101}, 422, "invalid_input", "reference"),
        ({"received_at": "yesterday"}, 422, "invalid_input", "received_at"),
    ],
)
def test_bad_payment_requests_are_refused_and_write_nothing(api, sub, body, status, code, field):
    before = row_counts()
    assert_error(api.post("/payments", {"subscriber": sub.pk, "amount": "100.00"} | body), status, code, field)
    assert row_counts() == before


def test_unknown_payment_is_a_404(api):
    assert_error(api.get("/payments/999999"), 404, "not_found")
