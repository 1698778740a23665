"""/api/v1/invoices and /api/v1/credit-notes"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing import ledger
from ispbill.payments.services import record_payment

from ..billing.billing_support import at, bill, configure, make_package, make_subscriber
from .api_support import assert_error, row_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def home(db):
    return make_package("Home 10M", "1000.00")


@pytest.fixture
def joiner(home):
    """Joins on 16 Dec 2026: the first invoice is 16 of 31 days, 516.13."""
    sub = make_subscriber(home, date(2026, 12, 16))
    bill(date(2026, 12, 9))
    return sub


def invoice_json(api, sub) -> dict:
    (inv,) = api.get("/invoices", subscriber=sub.pk).json()["items"]
    return inv


def test_invoice_json_is_exact(api, joiner):
    listing = api.get("/invoices").json()

    assert listing["count"] == 1
    inv = listing["items"][0]
    assert inv == {
        "id": inv["id"], "number": "INV-2026-000001", "subscriber": joiner.pk, "kind": "recurring",
        "period_start": "2026-12-16", "period_end": "2026-12-31", "issued_on": "2026-12-09", "due_on": "2026-12-16",
        "currency": "BDT", "total": "516.13", "amount_due": "516.13", "status": "open",
        "lines": [
            {"kind": "proration_charge", "description": "Home 10M, 16 Dec 2026 – 31 Dec 2026 (16 of 31 days)", "amount": "516.13"}
        ],
    }
    assert api.get(f"/invoices/{inv['id']}").json() == inv


def test_invoice_with_tax_lists_the_tax_line(api, home):
    configure(tax_rate=Decimal("5"))
    sub = make_subscriber(home, date(2026, 12, 16))
    bill(date(2026, 12, 9))

    inv = invoice_json(api, sub)

    assert (inv["total"], inv["amount_due"]) == ("541.94", "541.94")
    assert inv["lines"][1] == {"kind": "tax", "description": "VAT 5%", "amount": "25.81"}


def test_invoice_list_filters_by_subscriber_and_status(api, home):
    one = make_subscriber(home, date(2026, 11, 1))
    two = make_subscriber(home, date(2026, 11, 1))
    bill(date(2026, 11, 1))
    record_payment(subscriber_id=one.pk, amount=Decimal("1000.00"), method="cash", received_at=at(date(2026, 11, 3)))

    assert api.get("/invoices").json()["count"] == 2
    paid = api.get("/invoices", status="paid").json()["items"]
    assert [(i["subscriber"], i["amount_due"]) for i in paid] == [(one.pk, "0.00")]
    assert [i["subscriber"] for i in api.get("/invoices", subscriber=two.pk).json()["items"]] == [two.pk]
    assert api.get("/invoices", status="void").json() == {"items": [], "count": 0}


def test_void_an_unpaid_invoice(api, joiner):
    inv = invoice_json(api, joiner)

    response = api.post(f"/invoices/{inv['id']}/void", {"reason": "Issued in error"})

    assert response.status_code == 200
    assert response.json() == inv | {"status": "void", "amount_due": "0.00"}
    assert ledger.balance(joiner.pk) == 0
    assert ledger.ledger_discrepancies() == []
    # Voiding again is harmless.
    assert api.post(f"/invoices/{inv['id']}/void", {"reason": "again"}).json()["status"] == "void"


def test_void_refuses_an_invoice_with_money_on_it(api, joiner):
    record_payment(subscriber_id=joiner.pk, amount=Decimal("16.13"), method="cash", received_at=at(date(2026, 12, 10)))
    inv = invoice_json(api, joiner)
    before = row_counts()

    assert_error(api.post(f"/invoices/{inv['id']}/void", {"reason": "oops"}), 409, "invoice_has_payments")

    assert row_counts() == before
    assert api.get(f"/invoices/{inv['id']}").json() == inv


def test_void_bad_requests(api, joiner):
    inv = invoice_json(api, joiner)
    before = row_counts()
    assert_error(api.post("/invoices/999999/void", {"reason": "x"}), 404, "invoice_not_found")
    assert_error(api.post(f"/invoices/{inv['id']}/void", {"reason": ""}), 422, "invalid_input", "reason")
    assert_error(api.post(f"/invoices/{inv['id']}/void", {}), 422, "invalid_input", "reason")
    assert_error(api.get("/invoices/999999"), 404, "not_found")
    assert row_counts() == before


def test_credit_note_to_an_invoice(api, joiner):
    inv = invoice_json(api, joiner)

    response = api.post(
        "/credit-notes", {"subscriber": joiner.pk, "amount": "16.13", "reason": "Outage 20 Dec", "invoice": inv["id"]}
    )

    assert response.status_code == 201
    note = response.json()
    assert note == {
        "id": note["id"], "number": "CN-2026-000001", "subscriber": joiner.pk, "invoice": inv["id"],
        "issued_on": "2026-11-25", "total": "16.13", "reason": "Outage 20 Dec",
        "lines": [{"kind": "adjustment", "description": "Outage 20 Dec", "amount": "-16.13"}],
    }
    assert api.get(f"/credit-notes/{note['id']}").json() == note
    assert api.get("/credit-notes", subscriber=joiner.pk).json() == {"items": [note], "count": 1}
    after = api.get(f"/invoices/{inv['id']}").json()
    assert (after["amount_due"], after["status"]) == ("500.00", "partially_paid")


def test_credit_note_larger_than_what_is_owed_leaves_credit(api, joiner):
    response = api.post("/credit-notes", {"subscriber": joiner.pk, "amount": "600.00", "reason": "Goodwill"})

    assert response.status_code == 201
    assert invoice_json(api, joiner)["status"] == "paid"
    assert api.get(f"/subscribers/{joiner.pk}").json()["balance"] == "-83.87"
    assert ledger.ledger_discrepancies() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"amount": "-5.00"}, 422, "invalid_input"),
        ({"amount": "0"}, 422, "invalid_input"),
        ({"amount": "abc"}, 422, "invalid_input"),
        ({"amount": 5.5}, 422, "invalid_input"),
        ({"amount": "5.555"}, 422, "invalid_input"),
        ({"reason": ""}, 422, "invalid_input"),
        ({"reason": "   "}, 422, "reason_required"),
        ({"subscriber": 999999}, 404, "subscriber_not_found"),
        ({"invoice": 999999}, 404, "invoice_not_found"),
        ({"invoice": "other"}, 404, "invoice_not_found"),
    ],
)
def test_bad_credit_notes_are_refused_and_write_nothing(api, home, joiner, body, status, code):
    other = make_subscriber(home, date(2026, 12, 1))
    bill(date(2026, 11, 24))
    if body.get("invoice") == "other":
        body = {"invoice": api.get("/invoices", subscriber=other.pk).json()["items"][0]["id"]}
    before = row_counts()

    request = {"subscriber": joiner.pk, "amount": "10.00", "reason": "Outage"} | body
    assert_error(api.post("/credit-notes", request), status, code)

    assert row_counts() == before


def test_credit_note_to_a_void_invoice_is_refused(api, joiner):
    inv = invoice_json(api, joiner)
    api.post(f"/invoices/{inv['id']}/void", {"reason": "Issued in error"})
    before = row_counts()

    body = assert_error(
        api.post("/credit-notes", {"subscriber": joiner.pk, "amount": "10.00", "reason": "x", "invoice": inv["id"]}),
        409, "invoice_void",
    )

    assert "void" in body["message"]
    assert row_counts() == before


def test_unknown_credit_note_is_a_404(api):
    assert_error(api.get("/credit-notes/999999"), 404, "not_found")
