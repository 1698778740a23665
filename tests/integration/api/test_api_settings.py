"""/api/v1/settings (billing settings)"""

from __future__ import annotations

from datetime import date

import pytest

from ispbill.billing.models import Invoice

from ..billing.billing_support import bill, make_package, make_subscriber
from .api_support import assert_error, settings_snapshot

pytestmark = pytest.mark.django_db

DEFAULTS = {
    "billing_mode": "calendar", "billing_day": 1, "payment_terms": "prepaid", "invoice_lead_days": 7,
    "due_rule": "period_start", "due_days": 0, "grace_days": 3, "rounding": "paisa",
    "invoice_number_format": "INV-{year}-{seq:06d}", "credit_note_number_format": "CN-{year}-{seq:06d}",
    "tax_name": "VAT", "tax_rate": "0.00", "isp_name": "ispbill demo ISP", "hotline": "",
}


def test_get_the_defaults(api):
    assert api.get("/settings").json() == DEFAULTS


def test_patch_settings_and_they_apply_to_the_next_invoices(api):
    change = {
        "tax_rate": "5", "invoice_number_format": "B/{year}/{seq:04d}", "due_rule": "after_issue", "due_days": 10,
        "isp_name": "Dhaka Net", "hotline": "09610-000000", "invoice_lead_days": 5,
    }

    response = api.patch("/settings", change)

    assert response.status_code == 200
    assert response.json() == DEFAULTS | change | {"tax_rate": "5.00"}
    assert api.get("/settings").json() == response.json()
    sub = make_subscriber(make_package(), date(2026, 12, 16))
    assert bill(date(2026, 12, 10)).issued == 0  # five lead days now
    bill(date(2026, 12, 11))
    inv = Invoice.objects.get(subscriber=sub)
    assert (inv.number, inv.total_paisa, inv.due_on) == ("B/2026/0001", 54194, date(2026, 12, 21))


def test_patch_with_nothing_changes_nothing(api):
    assert api.patch("/settings", {}).json() == DEFAULTS
    assert api.patch("/settings", {"billing_day": None, "isp_name": None}).json() == DEFAULTS


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"invoice_number_format": "INV-{year}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": ""}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{{seq}}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{{year}}-{seq}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{month}-{seq}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{0}-{seq}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq.real.foo}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq[0]}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq:s}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq:9999999999d}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "INV-{seq:070d}"}, "invalid_number_format", "invoice_number_format"),
        ({"invoice_number_format": "x" * 65}, "invalid_input", "invoice_number_format"),
        ({"credit_note_number_format": "CN-{year}"}, "invalid_number_format", "credit_note_number_format"),
        ({"billing_day": 0}, "invalid_input", "billing_day"),
        ({"billing_day": 32}, "invalid_input", "billing_day"),
        ({"billing_day": "first"}, "invalid_input", "billing_day"),
        ({"billing_day": 1.5}, "invalid_input", "billing_day"),
        ({"invoice_lead_days": -1}, "invalid_input", "invoice_lead_days"),
        ({"invoice_lead_days": 61}, "invalid_input", "invoice_lead_days"),
        ({"due_days": 91}, "invalid_input", "due_days"),
        ({"grace_days": -3}, "invalid_input", "grace_days"),
        ({"billing_mode": "weekly"}, "invalid_input", "billing_mode"),
        ({"payment_terms": "later"}, "invalid_input", "payment_terms"),
        ({"due_rule": "whenever"}, "invalid_input", "due_rule"),
        ({"rounding": "rupee"}, "invalid_input", "rounding"),
        ({"tax_rate": "101"}, "invalid_tax_rate", "tax_rate"),
        ({"tax_rate": "-1"}, "invalid_input", "tax_rate"),
        ({"tax_rate": 5.5}, "invalid_input", "tax_rate"),
        ({"tax_rate": "5.555"}, "invalid_input", "tax_rate"),
        ({"tax_rate": "five"}, "invalid_input", "tax_rate"),
        ({"tax_name": "x" * 33}, "invalid_input", "tax_name"),
        # One bad value spoils the whole request: nothing else is saved either.
        ({"isp_name": "Half Written", "invoice_number_format": "INV-{year}"}, "invalid_number_format", "invoice_number_format"),
        ({"isp_name": "Half Written", "tax_rate": "150"}, "invalid_tax_rate", "tax_rate"),
        ({"isp_name": "Half Written", "billing_day": 0}, "invalid_input", "billing_day"),
    ],
)
def test_invalid_settings_are_refused_and_nothing_is_saved(api, body, code, field):
    before = settings_snapshot()

    assert_error(api.patch("/settings", body), 422, code, field)

    assert settings_snapshot() == before
    assert api.get("/settings").json() == DEFAULTS
