"""/api/v1/subscribers, including change-package."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing.models import Invoice, PackageChange
from ispbill.billing.services import run_billing
from ispbill.payments.services import record_payment
from ispbill.plans.services import create_package
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import at
from .api_support import assert_error, row_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def basic(db):
    return create_package(name="Basic", price=Decimal("1000.00"))


@pytest.fixture
def premium(db):
    return create_package(name="Premium", price=Decimal("1500.00"))


def new_subscriber(basic, **overrides) -> dict:
    return {
        "name": "Rahim Uddin",
        "phone": "01712-345678",
        "email": "rahim@example.com",
        "address": "House 5, Road 3",
        "area": "Mirpur",
        "pppoe_username": "rahim",
        "package": basic.pk,
    } | overrides


def create(api, basic, **overrides) -> dict:
    response = api.post("/subscribers", new_subscriber(basic, **overrides))
    assert response.status_code == 201, response.content
    return response.json()


def bill(day: date):
    return run_billing(today=day, now=at(day))


# -- CRUD -------------------------------------------------------------------------------

def test_create_get_list_and_patch_a_subscriber(api, basic):
    response = api.post("/subscribers", new_subscriber(basic))

    assert response.status_code == 201
    created = response.json()
    sid = created["id"]
    assert created == {
        "id": sid, "name": "Rahim Uddin", "phone": "+8801712345678", "email": "rahim@example.com",
        "address": "House 5, Road 3", "area": "Mirpur", "pppoe_username": "rahim", "package": basic.pk,
        "status": "active", "activated_on": "2026-11-25",  # today in Dhaka by the fixed clock
        "billing_mode": "", "grace_days_override": None, "never_suspend": False, "language": "", "notes": "",
        "billed_through": None, "balance": "0.00", "router": None,
    }
    assert api.get(f"/subscribers/{sid}").json() == created
    other = create(api, basic, name="Karim", pppoe_username="karim", phone="+8801812345678", area="Uttara")
    assert api.get("/subscribers").json() == {"items": [created, other], "count": 2}
    assert api.get("/subscribers", q="karim").json()["items"] == [other]
    assert api.get("/subscribers", area="mirpur").json()["items"] == [created]

    response = api.patch(f"/subscribers/{sid}", {"name": "Rahim U.", "phone": "8801912345678", "grace_days_override": 5})
    assert response.status_code == 200
    assert response.json() == created | {"name": "Rahim U.", "phone": "+8801912345678", "grace_days_override": 5}


def test_balance_comes_from_the_ledger(api, basic):
    sub = create(api, basic, activated_on="2026-11-16")
    bill(date(2026, 11, 16))  # 16-30 Nov: 500.00
    record_payment(subscriber_id=sub["id"], amount=Decimal("123.45"), method="cash", received_at=at(date(2026, 11, 20)))

    got = api.get(f"/subscribers/{sub['id']}").json()

    assert (got["balance"], got["billed_through"]) == ("376.55", "2026-11-30")


def test_reenabling_through_the_api_bills_from_today(api, basic):
    sub = create(api, basic, activated_on="2026-09-01")
    bill(date(2026, 9, 1))
    assert api.patch(f"/subscribers/{sub['id']}", {"status": "disabled"}).json()["status"] == "disabled"

    response = api.patch(f"/subscribers/{sub['id']}", {"status": "active"})

    assert response.json()["billed_through"] == "2026-11-24"
    bill(date(2026, 11, 25))
    spans = list(Invoice.objects.order_by("period_start").values_list("period_start", "period_end"))
    assert spans == [
        (date(2026, 9, 1), date(2026, 9, 30)),
        (date(2026, 11, 25), date(2026, 11, 30)),
        (date(2026, 12, 1), date(2026, 12, 31)),
    ]


@pytest.mark.parametrize(
    ("overrides", "status", "code", "field"),
    [
        ({"pppoe_username": "taken"}, 409, "duplicate_username", None),
        ({"phone": "12345"}, 422, "invalid_phone", "phone"),
        ({"phone": "01212345678"}, 422, "invalid_phone", "phone"),
        ({"phone": "০১৭১২৩৪৫৬৭৮"}, 422, "invalid_phone", "phone"),  # Bengali digits
        ({"phone": ""}, 422, "field_required", "phone"),
        ({"email": "not-an-email"}, 422, "invalid_email", "email"),
        ({"email": "a@b"}, 422, "invalid_email", "email"),
        ({"package": 999999}, 422, "unknown_package", "package"),
        ({"package": "basic"}, 422, "invalid_input", "package"),
        ({"package": 10**20}, 422, "unknown_package", "package"),
        ({"name": "  "}, 422, "name_required", "name"),
        ({"name": None}, 422, "invalid_input", "name"),
        ({"pppoe_username": "has space"}, 422, "invalid_username", "pppoe_username"),
        ({"pppoe_username": "x" * 65}, 422, "invalid_input", "pppoe_username"),
        ({"status": "gone"}, 422, "invalid_input", "status"),
        ({"billing_mode": "weekly"}, 422, "invalid_input", "billing_mode"),
        ({"activated_on": "2026-02-30"}, 422, "invalid_input", "activated_on"),
        ({"grace_days_override": -1}, 422, "invalid_input", "grace_days_override"),
        ({"grace_days_override": 61}, 422, "invalid_input", "grace_days_override"),
    ],
)
def test_bad_subscriber_input_is_refused_and_writes_nothing(api, basic, overrides, status, code, field):
    create(api, basic, pppoe_username="taken", phone="01812345678")
    before = row_counts()

    body = new_subscriber(basic, **overrides)
    assert_error(api.post("/subscribers", body), status, code, field)

    assert row_counts() == before


def test_missing_required_fields_are_named(api):
    body = assert_error(api.post("/subscribers", {"name": "Only a name"}), 422, "invalid_input")
    assert {e["field"] for e in body["errors"]} == {"phone", "pppoe_username", "package"}


@pytest.mark.parametrize(
    ("patch", "status", "code"),
    [
        ({"pppoe_username": "taken"}, 409, "duplicate_username"),
        ({"phone": "017"}, 422, "invalid_phone"),
        ({"phone": None}, 422, "invalid_phone"),
        ({"email": "nope"}, 422, "invalid_email"),
        ({"name": ""}, 422, "name_required"),
        ({"status": "deleted"}, 422, "invalid_input"),
        ({"never_suspend": "maybe"}, 422, "invalid_input"),
        ({"never_suspend": None}, 422, "invalid_never_suspend"),
    ],
)
def test_bad_patch_is_refused_and_changes_nothing(api, basic, patch, status, code):
    create(api, basic, pppoe_username="taken", phone="01812345678")
    sub = create(api, basic)

    assert_error(api.patch(f"/subscribers/{sub['id']}", patch), status, code)

    assert api.get(f"/subscribers/{sub['id']}").json() == sub


@pytest.mark.parametrize(("patch", "expected"), [({"email": None}, {"email": ""}), ({"billing_mode": None}, {"billing_mode": ""})])
def test_patch_with_null_clears_an_optional_text_field(api, basic, patch, expected):
    sub = create(api, basic, billing_mode="anniversary")

    response = api.patch(f"/subscribers/{sub['id']}", patch)

    assert response.status_code == 200, response.content
    assert response.json() == sub | expected


def test_unknown_subscriber_is_a_404(api, basic):
    assert_error(api.get("/subscribers/999999"), 404, "not_found")
    assert_error(api.patch("/subscribers/999999", {"name": "x"}), 404, "not_found")
    assert_error(api.get("/subscribers/99999999999999999999"), 404, "not_found")


# -- change-package ---------------------------------------------------------------------

@pytest.fixture
def billed(api, basic):
    """A Basic subscriber since 1 Nov with November and December invoiced."""
    sub = create(api, basic, activated_on="2026-11-01")
    bill(date(2026, 11, 1))
    bill(date(2026, 11, 25))
    return sub


UPGRADE_LINES = [
    {"kind": "proration_credit", "description": "Unused Basic, 25 Nov 2026 – 30 Nov 2026 (6 of 30 days)", "amount": "-200.00"},
    {"kind": "proration_charge", "description": "Premium, 25 Nov 2026 – 30 Nov 2026 (6 of 30 days)", "amount": "300.00"},
    {"kind": "proration_credit", "description": "Unused Basic, 01 Dec 2026 – 31 Dec 2026 (31 of 31 days)", "amount": "-1000.00"},
    {"kind": "proration_charge", "description": "Premium, 01 Dec 2026 – 31 Dec 2026 (31 of 31 days)", "amount": "1500.00"},
]


def test_upgrade_through_the_api_invoices_the_difference(api, billed, premium):
    response = api.post(f"/subscribers/{billed['id']}/change-package", {"package": premium.pk, "effective_on": "2026-11-25"})

    assert response.status_code == 200
    body = response.json()
    inv = Invoice.objects.get(kind="adjustment")
    assert body == {
        "document": "invoice", "preview": False, "total": "600.00", "lines": UPGRADE_LINES, "invoice": inv.pk,
        "credit_note": None,
    }
    got = api.get(f"/invoices/{inv.pk}").json()
    assert (got["total"], got["amount_due"], got["due_on"], got["lines"]) == ("600.00", "600.00", "2026-11-25", UPGRADE_LINES)
    sub = api.get(f"/subscribers/{billed['id']}").json()
    assert (sub["package"], sub["balance"]) == (premium.pk, "2600.00")


def test_preview_returns_the_same_lines_and_writes_nothing(api, billed, premium):
    url = f"/subscribers/{billed['id']}/change-package"
    before = row_counts()

    preview = api.post(url, {"package": premium.pk, "effective_on": "2026-11-25", "preview": True})

    assert preview.status_code == 200
    assert row_counts() == before
    assert api.get(f"/subscribers/{billed['id']}").json() == billed | {"billed_through": "2026-12-31", "balance": "2000.00"}
    assert preview.json() == {
        "document": "invoice", "preview": True, "total": "600.00", "lines": UPGRADE_LINES, "invoice": None,
        "credit_note": None,
    }
    real = api.post(url, {"package": premium.pk, "effective_on": "2026-11-25"}).json()
    assert real["lines"] == preview.json()["lines"]


def test_downgrade_through_the_api_issues_a_credit_note(api, premium, basic):
    sub = create(api, premium, activated_on="2026-11-01")
    bill(date(2026, 11, 1))
    record_payment(subscriber_id=sub["id"], amount=Decimal("1500.00"), method="cash", received_at=at(date(2026, 11, 2)))

    response = api.post(f"/subscribers/{sub['id']}/change-package", {"package": basic.pk, "effective_on": "2026-11-16"})

    body = response.json()
    assert response.status_code == 200
    assert body == {
        "document": "credit_note", "preview": False, "total": "-250.00",
        "lines": [
            {"kind": "proration_credit", "description": "Unused Premium, 16 Nov 2026 – 30 Nov 2026 (15 of 30 days)", "amount": "-750.00"},
            {"kind": "proration_charge", "description": "Basic, 16 Nov 2026 – 30 Nov 2026 (15 of 30 days)", "amount": "500.00"},
        ],
        "invoice": None, "credit_note": body["credit_note"],
    }
    note = api.get(f"/credit-notes/{body['credit_note']}").json()
    assert (note["number"], note["total"], note["invoice"]) == ("CN-2026-000001", "250.00", None)
    assert api.get(f"/subscribers/{sub['id']}").json()["balance"] == "-250.00"
    bill(date(2026, 11, 25))  # December at Basic, 250.00 of credit already on it
    dec = api.get("/invoices", subscriber=sub["id"]).json()["items"][0]
    assert (dec["total"], dec["amount_due"], dec["status"]) == ("1000.00", "750.00", "partially_paid")


def test_future_change_through_the_api_is_scheduled(api, billed, premium):
    response = api.post(f"/subscribers/{billed['id']}/change-package", {"package": premium.pk, "effective_on": "2027-01-01"})

    assert response.status_code == 200
    assert response.json() == {
        "document": "scheduled", "preview": False, "total": "0.00", "lines": [], "invoice": None, "credit_note": None,
    }
    change = PackageChange.objects.get()
    assert (change.effective_on, change.applied_at) == (date(2027, 1, 1), None)
    assert api.get(f"/subscribers/{billed['id']}").json()["package"] == billed["package"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"package": "same", "effective_on": "2026-11-25"}, 422, "same_package"),
        ({"package": 999999, "effective_on": "2026-11-25"}, 422, "unknown_package"),
        ({"package": "premium", "effective_on": "25/11/2026"}, 422, "invalid_input"),
        ({"package": "premium", "effective_on": "2026-10-31"}, 422, "effective_on_before_activation"),
        ({"package": "premium"}, 422, "invalid_input"),
        ({"package": "premium", "effective_on": "2026-11-25", "preview": "perhaps"}, 422, "invalid_input"),
    ],
)
def test_bad_change_package_requests_are_refused_and_write_nothing(api, billed, premium, body, status, code):
    body = dict(body)
    body["package"] = {"same": billed["package"], "premium": premium.pk}.get(body["package"], body["package"])
    before = row_counts()

    assert_error(api.post(f"/subscribers/{billed['id']}/change-package", body), status, code)

    assert row_counts() == before
    assert Subscriber.objects.get(pk=billed["id"]).package_id == billed["package"]


def test_disabled_subscriber_cannot_change_package(api, billed, premium):
    api.patch(f"/subscribers/{billed['id']}", {"status": "disabled"})
    before = row_counts()

    assert_error(
        api.post(f"/subscribers/{billed['id']}/change-package", {"package": premium.pk, "effective_on": "2026-11-25"}),
        409, "subscriber_disabled",
    )

    assert row_counts() == before


def test_change_package_for_an_unknown_subscriber_is_a_404(api, premium):
    for preview in (False, True):
        assert_error(
            api.post("/subscribers/999999/change-package", {"package": premium.pk, "effective_on": "2026-11-25", "preview": preview}),
            404, "subscriber_not_found",
        )
