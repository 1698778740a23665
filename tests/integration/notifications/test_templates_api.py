"""/api/v1/message-templates: list, customise and reset the texts sent to subscribers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from ispbill.api.tokens import issue_token
from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing
from ispbill.core.timeutil import isp_zone
from ispbill.notifications import services, texts
from ispbill.notifications.models import MessageTemplate
from ispbill.plans.services import create_package
from ispbill.subscribers.services import create_subscriber

pytestmark = pytest.mark.django_db

URL = "/api/v1/message-templates"
NOV_1 = date(2026, 11, 1)
KINDS = ("reminder", "due_today", "overdue", "suspended", "reconnected", "receipt")


@pytest.fixture(autouse=True)
def _fresh_template_cache():
    """Templates are cached in the process for a few seconds; a test's customised text
    must not outlive its rolled-back transaction."""
    services.forget_templates()
    yield
    services.forget_templates()


@pytest.fixture
def auth():
    """A token of an admin (templates are settings: manage_settings)."""
    from ispbill.backoffice.services import ensure_roles
    from django.contrib.auth.models import Group

    ensure_roles()
    user = get_user_model().objects.create_user(username="staff", password="correct horse battery")
    user.groups.add(Group.objects.get(name="admin"))
    return {"Authorization": f"Bearer {issue_token(username='staff')}"}


@pytest.fixture
def api(client, auth):
    class Api:
        def get(self, path=""):
            return client.get(URL + path, headers=auth)

        def put(self, path, body: dict):
            return client.put(URL + path, data=json.dumps(body), content_type="application/json", headers=auth)

        def delete(self, path):
            return client.delete(URL + path, headers=auth)

    return Api()


@pytest.fixture
def invoice():
    """An English-speaking subscriber with November's Tk 1000.00 invoice open."""
    package = create_package(name="Home 10M", price=Decimal("1000.00"))
    sub = create_subscriber(
        today=NOV_1, name="Ayesha Siddiqua", phone="01711000001", pppoe_username="tpl-user-1",
        package_id=package.pk, activated_on=NOV_1, language="en", email="ayesha@example.com",
    )
    run_billing(today=NOV_1, now=at(NOV_1))
    return Invoice.objects.select_related("subscriber").get(subscriber=sub)


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=isp_zone()).astimezone(UTC)


def rendered(invoice: Invoice, kind: str, channel: str, now: datetime) -> tuple[str, str, str]:
    msg = services.queue_message(subscriber=invoice.subscriber, kind=kind, channel=channel, now=now, invoice=invoice, step="-5")
    assert msg is not None and msg.language == "en"
    return services.render_message(msg, now=now)


def row(listing, kind, language, channel) -> dict:
    [found] = [t for t in listing if (t["kind"], t["language"], t["channel"]) == (kind, language, channel)]
    return found


# -- listing ----------------------------------------------------------------------------

def test_lists_all_24_built_in_templates(api):
    response = api.get()
    assert response.status_code == 200
    listing = response.json()
    assert len(listing) == 24
    assert {(t["kind"], t["language"], t["channel"]) for t in listing} == {
        (k, lang, ch) for k in KINDS for lang in ("en", "bn") for ch in ("sms", "email")
    }
    assert not any(t["customised"] for t in listing)
    for t in listing:
        default = texts.DEFAULTS[(t["kind"], t["language"], t["channel"])]
        assert (t["subject"], t["body"]) == (default.subject, default.body)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer isb_not-a-real-token"}, {"Authorization": "Basic eDp5"}])
def test_needs_a_token(client, headers):
    response = client.get(URL, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    response = client.put(URL + "/reminder/en/sms", data=json.dumps({"body": "x"}), content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert not MessageTemplate.objects.exists()


# -- customising ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        ("Dear {name}, pay {amount} now", "{amount}"),
        ("Dear {name}, pay {amount_due} by {due}", "{due}"),
        ("Dear {Name}, pay {amount_due}", "{Name}"),
        ("Dear {name.__class__}", "{name.__class__}"),
    ],
)
def test_unknown_placeholder_is_refused(api, body, unknown):
    response = api.put("/reminder/en/sms", {"subject": "", "body": body})
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_template"
    assert error["field"] == "body"
    assert unknown in error["message"]
    assert "{amount_due}" in error["message"]  # says what can be used
    assert not MessageTemplate.objects.exists()


def test_unknown_placeholder_in_the_subject_is_refused(api):
    response = api.put("/reminder/en/email", {"subject": "Bill for {customer}", "body": "Dear {name}"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_template"
    assert "{customer}" in response.json()["message"]


def test_email_needs_a_subject(api):
    response = api.put("/reminder/en/email", {"subject": "  ", "body": "Dear {name}"})
    assert response.status_code == 422
    assert (response.json()["code"], response.json()["field"]) == ("invalid_template", "subject")


def test_empty_body_is_refused(api):
    response = api.put("/reminder/en/sms", {"subject": "", "body": ""})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"


@pytest.mark.parametrize("path", ["/birthday/en/sms", "/reminder/fr/sms", "/reminder/en/fax"])
def test_unknown_template_is_404(api, path):
    response = api.put(path, {"subject": "Hi", "body": "Dear {name}"})
    assert response.status_code == 404
    assert response.json()["code"] == "template_not_found"
    assert api.delete(path).status_code == 404
    assert not MessageTemplate.objects.exists()


def test_customised_sms_is_used_when_rendering_and_reset_restores_the_default(api, invoice):
    now = at(NOV_1, 14)
    body = "Hello {name}: Tk {amount_due} for {invoice_number} by {due_date}. {payment_link}"
    response = api.put("/reminder/en/sms", {"subject": "", "body": body})
    assert response.status_code == 200
    assert response.json() == {"kind": "reminder", "language": "en", "channel": "sms", "subject": "", "body": body, "customised": True}

    listing = api.get().json()
    assert row(listing, "reminder", "en", "sms")["customised"] is True
    assert row(listing, "reminder", "en", "sms")["body"] == body
    assert sum(t["customised"] for t in listing) == 1  # Bangla and email versions untouched

    _, text, html = rendered(invoice, "reminder", "sms", now)
    assert text.startswith(f"Hello Ayesha Siddiqua: Tk 1000.00 for {invoice.number} by 01 Nov 2026. ")
    assert text.split(" ")[-1].startswith(settings.ISPBILL_PUBLIC_URL + "/pay/")
    assert html == ""

    response = api.delete("/reminder/en/sms")
    assert response.status_code == 200
    assert response.json()["customised"] is False
    assert response.json()["body"] == texts.DEFAULTS[("reminder", "en", "sms")].body
    assert not any(t["customised"] for t in api.get().json())
    assert not MessageTemplate.objects.exists()

    _, text, _ = rendered(invoice, "reminder", "sms", now)
    assert text.startswith("Dear Ayesha Siddiqua, your internet bill of Tk 1000.00 is due on 01 Nov 2026. Pay now: ")


def test_customised_email_is_used_for_subject_text_and_html(api, invoice):
    now = at(NOV_1, 14)
    response = api.put("/reminder/en/email", {
        "subject": "{isp_name}: Tk {amount_due} due", "body": "Dear {name},\n\nPay here: {payment_link}\n\nThanks",
    })
    assert response.status_code == 200 and response.json()["customised"] is True

    subject, text, html = rendered(invoice, "reminder", "email", now)
    assert subject == "ispbill demo ISP: Tk 1000.00 due"
    assert text.startswith("Dear Ayesha Siddiqua,\n\nPay here: " + settings.ISPBILL_PUBLIC_URL + "/pay/")
    link = text.split("Pay here: ")[1].split("\n")[0]
    assert f'<a href="{link}"' in html


def test_saving_twice_updates_the_one_customisation(api, invoice):
    now = at(NOV_1, 14)
    assert api.put("/reminder/en/sms", {"body": "First {name}"}).status_code == 200
    assert api.put("/reminder/en/sms", {"body": "Second {name}"}).status_code == 200
    assert MessageTemplate.objects.count() == 1
    _, text, _ = rendered(invoice, "reminder", "sms", now)
    assert text == "Second Ayesha Siddiqua"


def test_reset_of_a_template_never_customised_is_harmless(api):
    response = api.delete("/overdue/bn/email")
    assert response.status_code == 200
    assert response.json()["customised"] is False
    assert response.json()["body"] == texts.DEFAULTS[("overdue", "bn", "email")].body


@pytest.mark.parametrize("role", ["billing", "support", "viewer"])
def test_only_admins_edit_templates(client, role):
    """Editing what every subscriber receives is a settings change; other roles get 403
    and nothing is saved or recorded."""
    from ispbill.audit.models import AuditEvent
    from ispbill.notifications.models import MessageTemplate

    from ..backoffice.office_support import make_staff

    headers = {"Authorization": f"Bearer {issue_token(username=make_staff(role).username)}"}
    put = client.put(URL + "/reminder/en/sms", data=json.dumps({"body": "Pay {amount}"}),
                     content_type="application/json", headers=headers)
    reset = client.delete(URL + "/reminder/en/sms", headers=headers)
    assert (put.status_code, reset.status_code) == (403, 403)
    assert put.json()["code"] == "forbidden"
    assert not MessageTemplate.objects.exists()
    assert not AuditEvent.objects.filter(action="settings.template").exists()


def test_template_edit_is_audited(api):
    from ispbill.audit.models import AuditEvent

    assert api.put("/reminder/en/sms", {"body": "Pay {amount_due} by {due_date}"}).status_code == 200
    (event,) = AuditEvent.objects.filter(action="settings.template")
    assert event.actor_name == "staff" and event.after["body"] == "Pay {amount_due} by {due_date}"
