"""Every page and every action, with every role: allowed, forbidden (403), anonymous
(sent to the login page)."""

from __future__ import annotations

import pytest
from django.test import Client

from .office_support import NO_ROLE, ROLES, row_counts

pytestmark = pytest.mark.django_db

EVERYONE = set(ROLES)

# page name -> (path template, query, roles allowed)
PAGES = {
    "dashboard": ("/office/", {}, EVERYONE),
    "subscribers": ("/office/subscribers/", {}, EVERYONE),
    "subscribers-filtered": ("/office/subscribers/", {"q": "user", "status": "active", "overdue": "1"}, EVERYONE),
    "subscriber": ("/office/subscribers/{sub}/", {}, EVERYONE),
    "subscribers-export-csv": ("/office/subscribers/export.csv", {"status": "active"}, EVERYONE),
    "subscribers-export-xlsx": ("/office/subscribers/export.xlsx", {"area": "Mirpur"}, EVERYONE),
    # The steps of one upload (columns, dry run, result) are in test_office_import.py.
    "import": ("/office/import/", {}, {"admin", "support"}),
    "change-package-preview": (
        "/office/subscribers/{sub}/change-package/preview", {"package": "{premium}", "effective_on": "2026-11-25"},
        {"admin", "billing"},
    ),
    "payments": ("/office/payments/", {}, EVERYONE),
    "payments-filtered": (
        "/office/payments/", {"q": "TRX", "status": "needs_review", "via": "rocket", "from": "2026-11-01", "to": "2026-11-30"},
        EVERYONE,
    ),
    "payment-exceptions": ("/office/payments/exceptions/", {"reason": "amount_mismatch"}, EVERYONE),
    "webhooks": ("/office/webhooks/", {"gateway": "bkash", "outcome": "error"}, {"admin", "billing"}),
    "messages": ("/office/messages/", {}, EVERYONE),
    "messages-filtered": (
        "/office/messages/", {"q": "rahim", "status": "sent", "channel": "sms", "kind": "receipt", "from": "2026-11-01"},
        EVERYONE,
    ),
    "audit": ("/office/audit/", {}, {"admin"}),
    "audit-filtered": (
        "/office/audit/", {"q": "x", "actor": "system", "action": "subscriber.", "date_from": "2026-11-01"}, {"admin"},
    ),
    "routers": ("/office/routers/", {}, EVERYONE),
    "router": ("/office/routers/{router}/", {}, EVERYONE),
    "router-add": ("/office/routers/add/", {}, {"admin", "support"}),
    "router-edit": ("/office/routers/{router}/edit/", {}, {"admin", "support"}),
    "router-drift": ("/office/routers/{router}/drift/", {}, {"admin", "support"}),
    "router-import": ("/office/routers/{router}/import/", {}, {"admin", "support"}),
    "router-import-preview": ("/office/routers/{router}/import/", {"preview": "1"}, {"admin", "support"}),
    "staff": ("/office/staff/", {}, {"admin"}),
    "staff-add": ("/office/staff/add/", {}, {"admin"}),
    "staff-user": ("/office/staff/{staff}/", {}, {"admin"}),
    "settings": ("/office/settings/", {}, {"admin"}),
    "settings-billing": ("/office/settings/billing", {}, {"admin"}),
    "settings-reminders": ("/office/settings/reminders", {"extra": "4"}, {"admin"}),
    "settings-templates": ("/office/settings/templates", {}, {"admin"}),
    "settings-template-sms": ("/office/settings/templates/reminder/bn/sms", {}, {"admin"}),
    "settings-template-email": ("/office/settings/templates/receipt/en/email", {}, {"admin"}),
    "settings-gateways": ("/office/settings/gateways", {}, {"admin"}),
    "settings-test-send": ("/office/settings/test-send", {}, {"admin"}),
    "invoices": ("/office/invoices/", {}, EVERYONE),
    "invoices-filtered": (
        "/office/invoices/", {"q": "INV", "status": "open", "month": "2026-11", "overdue": "1", "area": "Mirpur"}, EVERYONE,
    ),
    "invoice": ("/office/invoices/{invoice}/", {}, EVERYONE),
    "invoice-print": ("/office/invoices/{invoice}/print", {}, EVERYONE),
    "invoice-pdf": ("/office/invoices/{invoice}/pdf", {}, EVERYONE),
    "credit-notes": ("/office/credit-notes/", {}, EVERYONE),
    "credit-note": ("/office/credit-notes/{credit_note}/", {}, EVERYONE),
    "credit-note-pdf": ("/office/credit-notes/{credit_note}/pdf", {}, EVERYONE),
    "receipt": ("/office/payments/{payment}/receipt", {}, EVERYONE),
    "receipt-pdf": ("/office/payments/{payment}/receipt.pdf", {}, EVERYONE),
    "branding": ("/office/settings/branding", {}, {"admin"}),
}


def _fill(text: str, world) -> str:
    ids = {"sub": world["sub"].pk, "premium": world["premium"].pk}
    if "{router}" in text:
        ids["router"] = _router().pk
    if "{staff}" in text:
        ids["staff"] = _staff_target().pk
    if "{invoice}" in text:
        ids["invoice"] = _invoice_of(world).pk
    if "{credit_note}" in text:
        ids["credit_note"] = _credit_note(world).pk
    if "{payment}" in text:
        ids["payment"] = _payment(world).pk
    return text.format(**ids)


def _router():
    """A router on a closed port: pages that read it show the error, quickly."""
    import socket

    from ispbill.network.models import Router
    from ispbill.network.routers import create_router

    existing = Router.objects.filter(name="office-router").first()
    if existing is not None:
        return existing
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return create_router(name="office-router", host="127.0.0.1", port=port, username="admin", password="pw")


def _staff_target():
    """A viewer whose role, password and access the staff actions change."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from ispbill.backoffice.services import ensure_roles

    User = get_user_model()
    user = User.objects.filter(username="target-user").first()
    if user is None:
        ensure_roles()
        user = User.objects.create_user("target-user", "target@example.com")
        user.groups.add(Group.objects.get(name="viewer"))
    return user


def _invoice_of(world):
    from ispbill.billing.models import Invoice

    return Invoice.objects.filter(subscriber=world["sub"]).order_by("id").first()


def _credit_note(world):
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from ispbill.billing.models import CreditNote
    from ispbill.billing.services import issue_credit_note

    return CreditNote.objects.filter(subscriber=world["sub"]).first() or issue_credit_note(
        subscriber_id=world["sub"].pk, invoice_id=_invoice_of(world).pk, amount=Decimal("10.00"), reason="outage",
        today=date(2026, 11, 25), now=datetime(2026, 11, 25, 10, tzinfo=UTC),
    )


def _payment(world):
    from datetime import UTC, datetime
    from decimal import Decimal

    from ispbill.payments.models import Payment
    from ispbill.payments.services import record_payment

    existing = Payment.objects.filter(subscriber=world["sub"]).first()
    if existing is not None:
        return existing
    return record_payment(
        subscriber_id=world["sub"].pk, amount=Decimal("100.00"), method="cash",
        received_at=datetime(2026, 11, 25, 10, tzinfo=UTC), notify=False,
    )[0]


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "superuser"])
@pytest.mark.parametrize("page", list(PAGES))
def test_page_by_role(world, client_for, page, role):
    path, query, allowed = PAGES[page]
    response = client_for(role).get(_fill(path, world), {k: _fill(v, world) for k, v in query.items()})
    if role == "superuser" or role in allowed:
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("page", list(PAGES))
def test_page_sends_anonymous_visitors_to_the_login_page(world, page):
    path, query, _ = PAGES[page]
    response = Client().get(_fill(path, world), {k: _fill(v, world) for k, v in query.items()})
    assert response.status_code == 302
    assert response["Location"].startswith("/office/login/?next=/office/")


# action name -> (path template, form data, roles allowed, what changes when it runs)
ACTIONS = {
    "record-payment": (
        "/office/subscribers/{sub}/payments", {"amount": "500.00", "method": "cash", "key": "k-1"}, {"admin", "billing"},
        "Payment",
    ),
    "change-package": (
        "/office/subscribers/{sub}/change-package", {"package": "{premium}", "effective_on": "2026-11-25"},
        {"admin", "billing"}, "PackageChange",
    ),
    "suspend": (
        "/office/subscribers/{sub}/status", {"action": "suspend", "reason": "asked by the owner"}, {"admin", "support"},
        "EnforcementAction",
    ),
    "disable": (
        "/office/subscribers/{sub}/status", {"action": "disable", "reason": "moved away"}, {"admin", "support"},
        "EnforcementAction",
    ),
    "remind": (
        "/office/subscribers/{sub}/remind", {"invoice": "{invoice}", "kind": "overdue", "channel": "sms"},
        {"admin", "support"}, "Message",
    ),
    "exempt": ("/office/subscribers/{sub}/exempt", {"never_suspend": "1"}, {"admin", "support"}, None),
}


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_by_role(world, client_for, action, role):
    from ispbill.billing.models import Invoice
    from ispbill.subscribers.models import Subscriber

    path, data, allowed, changes = ACTIONS[action]
    invoice = Invoice.objects.get(subscriber=world["sub"])
    fill = lambda v: v.format(sub=world["sub"].pk, premium=world["premium"].pk, invoice=invoice.pk)  # noqa: E731
    before = row_counts()
    response = client_for(role).post(fill(path), {k: fill(v) for k, v in data.items()})
    after = row_counts()
    sub = Subscriber.objects.get(pk=world["sub"].pk)
    if role in allowed:
        assert response.status_code == 303
        assert response["Location"] == f"/office/subscribers/{world['sub'].pk}/"
        if changes:
            assert after[changes] > before[changes]
        else:
            assert sub.never_suspend is True
    else:
        assert response.status_code == 403
        assert after == before
        assert sub.never_suspend is False and sub.status == "active"


@pytest.mark.parametrize("action", list(ACTIONS))
def test_actions_are_post_only(world, client_for, action):
    path, _, _, _ = ACTIONS[action]
    response = client_for("admin").get(path.format(sub=world["sub"].pk))
    assert response.status_code == 405


@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_sends_anonymous_visitors_to_the_login_page(world, action):
    path, data, _, _ = ACTIONS[action]
    before = row_counts()
    response = Client().post(path.format(sub=world["sub"].pk), {})
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert row_counts() == before


# Actions on routers and staff users: action name -> (path template, form data, roles
# allowed, whether an allowed role's POST changes something).
ROUTER_STAFF_ACTIONS = {
    "router-test": ("/office/routers/{router}/test", {}, {"admin", "support"}, True),
    "router-reconcile": ("/office/routers/{router}/reconcile", {}, {"admin", "support"}, True),
    "router-import-confirm": ("/office/routers/{router}/import", {"username": "alice"}, {"admin", "support"}, False),
    "router-add": (
        "/office/routers/add/",
        {"name": "r-new", "host": "10.0.0.9", "port": "8728", "username": "api", "password": "pw", "method": "routeros",
         "suspended_profile": "Suspended_Profile", "suspended_address_list": "suspended", "coa_port": "3799"},
        {"admin", "support"}, True,
    ),
    "router-edit": (
        "/office/routers/{router}/edit/",
        {"name": "renamed", "host": "10.0.0.9", "port": "8728", "username": "api", "method": "routeros",
         "suspended_profile": "Suspended_Profile", "suspended_address_list": "suspended", "coa_port": "3799"},
        {"admin", "support"}, True,
    ),
    "staff-add": (
        "/office/staff/add/", {"username": "newbie", "role": "viewer", "password": "Lantern-Orchid-42"}, {"admin"}, True,
    ),
    "staff-role": ("/office/staff/{staff}/role", {"role": "billing"}, {"admin"}, True),
    "staff-password": ("/office/staff/{staff}/password", {"password": "Lantern-Orchid-42"}, {"admin"}, True),
    "staff-deactivate": ("/office/staff/{staff}/deactivate", {}, {"admin"}, True),
    "staff-reactivate": ("/office/staff/{staff}/reactivate", {}, {"admin"}, False),
}


def _router_staff_state() -> tuple:
    from django.contrib.auth import get_user_model

    from ispbill.audit.models import AuditEvent
    from ispbill.network.models import ReconcileRun, Router

    users = get_user_model().objects.order_by("pk")
    return (
        list(Router.objects.order_by("pk").values_list("name", "last_error", "consecutive_failures")),
        ReconcileRun.objects.count(), AuditEvent.objects.count(),
        [(u.username, u.is_active, u.password, sorted(u.groups.values_list("name", flat=True))) for u in users],
    )


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
@pytest.mark.parametrize("action", list(ROUTER_STAFF_ACTIONS))
def test_router_and_staff_action_by_role(world, client_for, action, role):
    path, data, allowed, changes = ROUTER_STAFF_ACTIONS[action]
    path = _fill(path, world)
    client = client_for(role)
    before = _router_staff_state()
    response = client.post(path, data)
    after = _router_staff_state()
    if role in allowed:
        assert response.status_code == 303, response.content[:500]
        assert response["Location"].startswith(("/office/routers/", "/office/staff/"))
        if changes:
            assert after != before
    else:
        assert response.status_code == 403
        assert after == before


@pytest.mark.parametrize("action", list(ROUTER_STAFF_ACTIONS))
def test_router_and_staff_actions_send_anonymous_visitors_to_the_login_page(world, action):
    path = _fill(ROUTER_STAFF_ACTIONS[action][0], world)
    before = _router_staff_state()
    response = Client().post(path, {})
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert _router_staff_state() == before


@pytest.mark.parametrize("action", [a for a in ROUTER_STAFF_ACTIONS if a not in ("router-add", "router-edit", "staff-add")])
def test_router_and_staff_actions_are_post_only(world, client_for, action):
    response = client_for("admin").get(_fill(ROUTER_STAFF_ACTIONS[action][0], world))
    assert response.status_code == 405


# Actions on an invoice: action name -> (path template, form data, roles allowed, the
# row count that grows when an allowed role posts it). Each answers with the invoice page.
INVOICE_ACTIONS = {
    "invoice-void": ("/office/invoices/{invoice}/void", {"reason": "duplicate", "confirm": "1"}, {"admin", "billing"}, "LedgerEntry"),
    "invoice-credit-note": (
        "/office/invoices/{invoice}/credit-note", {"amount": "50.00", "reason": "outage", "confirm": "1"}, {"admin", "billing"},
        "CreditNote",
    ),
}


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
@pytest.mark.parametrize("action", list(INVOICE_ACTIONS))
def test_invoice_action_by_role(world, client_for, action, role):
    path, data, allowed, changes = INVOICE_ACTIONS[action]
    before = row_counts()
    response = client_for(role).post(_fill(path, world), data)
    after = row_counts()
    if role in allowed:
        assert response.status_code == 303
        assert response["Location"] == f"/office/invoices/{_invoice_of(world).pk}/"
        assert after[changes] > before[changes]
    else:
        assert response.status_code == 403
        assert after == before


@pytest.mark.parametrize("action", list(INVOICE_ACTIONS))
def test_invoice_actions_are_post_only_and_need_a_sign_in(world, client_for, action):
    path = _fill(INVOICE_ACTIONS[action][0], world)
    assert client_for("admin").get(path).status_code == 405
    before = row_counts()
    response = Client().post(path, INVOICE_ACTIONS[action][1])
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert row_counts() == before


# Settings actions (manage_settings: admin only): action name -> (path, form data,
# whether an allowed POST records a settings audit event).
SETTINGS_ACTIONS = {
    "settings-billing-save": (
        "/office/settings/billing/save",
        {"billing_mode": "calendar", "billing_day": "1", "payment_terms": "prepaid", "invoice_lead_days": "7",
         "due_rule": "period_start", "due_days": "0", "grace_days": "5", "rounding": "paisa",
         "invoice_number_format": "INV-{year}-{seq:06d}", "credit_note_number_format": "CN-{year}-{seq:06d}",
         "tax_name": "VAT", "tax_rate": "0"},
        True,
    ),
    "settings-reminders-save": (
        "/office/settings/reminders/save",
        {"steps": "1", "step-0-offset": "-3", "step-0-kind": "reminder", "step-0-sms": "1",
         "quiet_hours_start": "21:00", "quiet_hours_end": "08:00", "payment_link_days": "30"},
        True,
    ),
    "settings-template-preview": ("/office/settings/templates/reminder/en/sms/preview", {"body": "Hi {name}"}, False),
    "settings-template-save": ("/office/settings/templates/reminder/en/sms/save", {"body": "Hi {name}"}, True),
    "settings-template-reset": ("/office/settings/templates/reminder/en/sms/reset", {}, False),
    "settings-gateway-switch": ("/office/settings/gateways/nagad", {"enabled": "0"}, True),
    "settings-test-send": (
        "/office/settings/test-send/send", {"sms-channel": "sms", "sms-to": "01712345678", "sms-language": "en"}, True,
    ),
}


class _QuietChannel:
    """Test sends go somewhere harmless (and are counted)."""

    def __init__(self):
        self.sent = 0

    def send_sms(self, **kwargs):
        from ispbill.notifications.channels import SendResult

        self.sent += 1
        return SendResult(provider_reference="quiet")


def _settings_state() -> tuple:
    from ispbill.audit.models import AuditEvent
    from ispbill.billing.models import BillingSettings
    from ispbill.dunning.models import DunningSettings
    from ispbill.notifications.models import MessageTemplate
    from ispbill.payments.models import GatewaySwitch

    return (
        BillingSettings.load().grace_days, DunningSettings.load().ladder, MessageTemplate.objects.count(),
        list(GatewaySwitch.objects.values_list("gateway", "enabled")),
        AuditEvent.objects.filter(action__startswith="settings.").count(),
    )


@pytest.fixture
def quiet_channel():
    from ispbill.notifications.channels import reset_channels, set_channels

    channel = _QuietChannel()
    set_channels(sms=channel)
    yield channel
    reset_channels()


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "superuser"])
@pytest.mark.parametrize("action", list(SETTINGS_ACTIONS))
def test_settings_action_by_role(world, client_for, quiet_channel, action, role):
    path, data, changes = SETTINGS_ACTIONS[action]
    before = _settings_state()
    response = client_for(role).post(path, data)
    after = _settings_state()
    if role in ("admin", "superuser"):
        assert response.status_code in (200, 303), response.content[:500]
        if response.status_code == 303:
            assert response["Location"].startswith("/office/settings/")
        assert (after[-1] > before[-1]) is changes
    else:
        assert response.status_code == 403
        assert after == before and quiet_channel.sent == 0


@pytest.mark.parametrize("action", list(SETTINGS_ACTIONS))
def test_settings_actions_are_post_only(world, client_for, action):
    assert client_for("admin").get(SETTINGS_ACTIONS[action][0]).status_code == 405


@pytest.mark.parametrize("action", list(SETTINGS_ACTIONS))
def test_settings_actions_send_anonymous_visitors_to_the_login_page(world, quiet_channel, action):
    before = _settings_state()
    response = Client().post(SETTINGS_ACTIONS[action][0], SETTINGS_ACTIONS[action][1])
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert _settings_state() == before and quiet_channel.sent == 0
