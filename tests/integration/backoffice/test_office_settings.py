"""The settings pages: billing, reminders, message templates (with preview), payment
gateways and test sends. Each save is validated by the same service as the API and
leaves an audit event with the values before and after."""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client

from ispbill.audit.models import AuditEvent
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.dunning.models import DunningSettings, default_ladder
from ispbill.notifications import texts
from ispbill.notifications.channels import PermanentSendError, SendResult, reset_channels, set_channels
from ispbill.notifications.models import Message, MessageTemplate
from ispbill.notifications.services import request_reminder
from ispbill.notifications.sms import sms_cost
from ispbill.payments import gateway_services, links
from ispbill.payments.gateways import GATEWAYS
from ispbill.payments.models import GatewaySwitch, PaymentAttempt
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox

pytestmark = pytest.mark.django_db

BILLING_FORM = {
    "billing_mode": "calendar", "billing_day": "1", "payment_terms": "prepaid", "invoice_lead_days": "7",
    "due_rule": "period_start", "due_days": "0", "grace_days": "3", "rounding": "paisa",
    "invoice_number_format": "INV-{year}-{seq:06d}", "credit_note_number_format": "CN-{year}-{seq:06d}",
    "tax_name": "VAT", "tax_rate": "0.00",
}


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def billing_snapshot() -> dict:
    s = BillingSettings.load()
    return {f.name: getattr(s, f.name) for f in BillingSettings._meta.fields if f.name != "updated_at"}


def ladder_form(rows, *, quiet=("21:00", "08:00"), link_days="30") -> dict:
    """The reminder page's form: ``rows`` of (offset, kind, channels, remove)."""
    data = {"steps": str(len(rows)), "quiet_hours_start": quiet[0], "quiet_hours_end": quiet[1], "payment_link_days": link_days}
    for i, (offset, kind, channels, remove) in enumerate(rows):
        data[f"step-{i}-offset"] = str(offset)
        data[f"step-{i}-kind"] = kind
        for c in channels:
            data[f"step-{i}-{c}"] = "1"
        if remove:
            data[f"step-{i}-remove"] = "1"
    return data


@pytest.fixture
def admin(client_for):
    return client_for("admin")


@pytest.fixture
def recorder():
    rec = Recorder()
    set_channels(sms=rec, email=rec)
    yield rec
    reset_channels()


class Recorder:
    """An SMS/email channel that keeps what it was asked to send (or refuses it)."""

    def __init__(self):
        self.sent: list[dict] = []
        self.refuse: str | None = None

    def send_sms(self, *, to, text, reference):
        return self._keep(channel="sms", to=to, text=text, reference=reference)

    def send_email(self, *, to, subject, text, html, reference):
        return self._keep(channel="email", to=to, subject=subject, text=text, html=html, reference=reference)

    def _keep(self, **sent):
        if self.refuse:
            raise PermanentSendError(self.refuse)
        self.sent.append(sent)
        return SendResult(provider_reference=f"rec-{len(self.sent)}")


# -- index ------------------------------------------------------------------------------------

def test_index_links_every_area_and_the_branding_page(world, admin):
    page = admin.get("/office/settings/").content.decode()
    for href in ("/office/settings/billing", "/office/settings/reminders", "/office/settings/templates",
                 "/office/settings/gateways", "/office/settings/test-send", "/office/settings/branding"):
        assert f'href="{href}"' in page
    assert 'href="/office/settings/"' in page  # the nav link


def test_the_nav_shows_settings_only_to_who_may_manage_them(world, client_for):
    assert 'href="/office/settings/"' not in client_for("billing").get("/office/").content.decode()


# -- billing ----------------------------------------------------------------------------------

def test_billing_page_shows_the_settings_and_what_a_change_affects(world, admin):
    page = admin.get("/office/settings/billing").content.decode()
    assert 'value="INV-{year}-{seq:06d}"' in page
    assert "INV-2026-000123" in page  # what the next numbers look like
    assert "issued invoices never change" in page


def test_saving_billing_settings_changes_them_and_records_before_and_after(world, admin):
    data = BILLING_FORM | {"grace_days": "5", "tax_rate": "7.5", "invoice_number_format": "B/{year}/{seq:04d}"}

    response = admin.post("/office/settings/billing/save", data)

    assert response.status_code == 303 and response["Location"] == "/office/settings/billing"
    s = BillingSettings.load()
    assert (s.grace_days, s.tax_rate, s.invoice_number_format) == (5, Decimal("7.50"), "B/{year}/{seq:04d}")
    (event,) = events("settings.billing")
    assert event.actor_name == "admin-user" and event.target_type == "billingsettings"
    assert event.before == {"grace_days": 3, "tax_rate": "0.00", "invoice_number_format": "INV-{year}-{seq:06d}"}
    assert event.after == {"grace_days": 5, "tax_rate": "7.50", "invoice_number_format": "B/{year}/{seq:04d}"}
    assert "apply from the next billing run" in admin.get("/office/settings/billing").content.decode()


def test_saving_unchanged_billing_settings_records_nothing(world, admin):
    assert admin.post("/office/settings/billing/save", BILLING_FORM).status_code == 303
    assert events("settings.billing") == []


def test_issued_invoices_keep_their_number_and_total(world, admin):
    before = list(Invoice.objects.values_list("number", "total_paisa", "due_on"))
    admin.post("/office/settings/billing/save", BILLING_FORM | {"tax_rate": "15", "invoice_number_format": "X-{seq}"})
    assert list(Invoice.objects.values_list("number", "total_paisa", "due_on")) == before


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"invoice_number_format": "INV-{year}"}, "must contain {seq}"),
        ({"invoice_number_format": "INV-{month}-{seq}"}, "unknown field {month}"),
        ({"credit_note_number_format": "CN-{seq:070d}"}, "unsupported format spec"),
        ({"billing_day": "32"}, "less than or equal to 31"),
        ({"invoice_lead_days": "-1"}, "greater than or equal to 0"),
        ({"tax_rate": "101"}, "between 0 and 100"),
        ({"tax_rate": "5.555"}, "at most two decimal places"),
        ({"tax_rate": "five"}, "must be a number"),
        ({"rounding": "rupee"}, "Select a valid choice"),
    ],
)
def test_invalid_billing_settings_are_shown_and_nothing_is_saved(world, admin, change, shown):
    before = billing_snapshot()

    response = admin.post("/office/settings/billing/save", BILLING_FORM | {"grace_days": "9"} | change)

    assert response.status_code == 200
    page = response.content.decode()
    assert shown in page
    assert 'class="has-error"' in page
    assert f'value="{next(iter(change.values()))}"' in page or "<option" in page  # what was typed is kept
    assert billing_snapshot() == before
    assert events("settings.billing") == []


# -- reminders --------------------------------------------------------------------------------

def test_reminder_page_lists_the_ladder_with_rows_to_add(world, admin):
    page = admin.get("/office/settings/reminders").content.decode()
    assert page.count('name="step-') > 0
    assert 'name="steps" value="5"' in page  # three steps and two empty rows
    assert 'value="-5"' in page and 'value="21:00"' in page
    assert 'name="steps" value="6"' in admin.get("/office/settings/reminders?extra=3").content.decode()


def test_saving_the_ladder_adds_and_removes_steps_and_records_it(world, admin):
    rows = [
        (-5, "reminder", ["sms", "email"], False),
        (0, "due_today", ["sms", "email"], True),  # removed
        (1, "overdue", ["sms"], False),
        (-2, "reminder", ["sms"], False),  # added
        ("", "reminder", ["sms", "email"], False),  # an unused empty row
    ]

    response = admin.post("/office/settings/reminders/save", ladder_form(rows, quiet=("22:00", "07:30"), link_days="14"))

    assert response.status_code == 303 and response["Location"] == "/office/settings/reminders"
    d = DunningSettings.load()
    assert d.ladder == [
        {"offset": -5, "kind": "reminder", "channels": ["email", "sms"]},
        {"offset": -2, "kind": "reminder", "channels": ["sms"]},
        {"offset": 1, "kind": "overdue", "channels": ["sms"]},
    ]
    assert (d.quiet_hours_start, d.quiet_hours_end, d.payment_link_days) == (time(22, 0), time(7, 30), 14)
    (event,) = events("settings.reminders")
    assert event.before["ladder"] == default_ladder() and event.after["ladder"] == d.ladder
    assert event.before["quiet_hours_start"] == "21:00" and event.after["quiet_hours_start"] == "22:00"
    assert event.before["payment_link_days"] == 30 and event.after["payment_link_days"] == 14


@pytest.mark.parametrize(
    ("rows", "extra", "shown"),
    [
        ([(-5, "reminder", ["sms"], False), (-5, "due_today", ["sms"], False)], {}, "share an offset"),
        ([(-5, "receipt", ["sms"], False)], {}, "the kind must be one of"),
        ([(-5, "reminder", [], False)], {}, "choose SMS, email or both"),
        ([(61, "reminder", ["sms"], False)], {}, "from -60 to 60"),
        ([("soon", "reminder", ["sms"], False)], {}, "whole number"),
        ([(-5, "reminder", ["sms"], False)], {"quiet_hours_start": "25:00"}, "Enter a valid time"),
        ([(-5, "reminder", ["sms"], False)], {"payment_link_days": "0"}, "greater than or equal to 1"),
    ],
)
def test_invalid_reminder_settings_are_shown_and_nothing_is_saved(world, admin, rows, extra, shown):
    before = (DunningSettings.load().ladder, DunningSettings.load().quiet_hours_start)

    response = admin.post("/office/settings/reminders/save", ladder_form(rows) | extra)

    assert response.status_code == 200
    assert shown in response.content.decode()
    assert (DunningSettings.load().ladder, DunningSettings.load().quiet_hours_start) == before
    assert events("settings.reminders") == []


# -- message templates ------------------------------------------------------------------------

def test_templates_list_every_kind_language_and_channel(world, admin):
    MessageTemplate.objects.create(kind="receipt", language="bn", channel="sms", body="ধন্যবাদ {name}")
    page = admin.get("/office/settings/templates").content.decode()
    for kind, language, channel in texts.DEFAULTS:
        assert f'href="/office/settings/templates/{kind}/{language}/{channel}"' in page
    assert page.count("badge blue") == 1  # the one customised
    assert page.count("badge grey") == len(texts.DEFAULTS) - 1


def test_saving_a_template_customises_it_and_records_before_and_after(world, admin):
    body = "Hello {name}, pay Tk {amount_due} by {due_date}: {payment_link}"

    response = admin.post("/office/settings/templates/reminder/en/sms/save", {"body": body})

    assert response.status_code == 303 and response["Location"] == "/office/settings/templates/reminder/en/sms"
    assert MessageTemplate.objects.get(kind="reminder", language="en", channel="sms").body == body
    (event,) = events("settings.template")
    assert event.target_label == "reminder/en/sms"
    assert event.before == {"subject": "", "body": texts.DEFAULTS[("reminder", "en", "sms")].body, "customised": False}
    assert event.after == {"subject": "", "body": body, "customised": True}


def test_reset_goes_back_to_the_built_in_text(world, admin):
    admin.post("/office/settings/templates/overdue/bn/email/save", {"subject": "বকেয়া", "body": "প্রিয় {name}"})

    response = admin.post("/office/settings/templates/overdue/bn/email/reset")

    assert response.status_code == 303
    assert not MessageTemplate.objects.filter(kind="overdue", language="bn", channel="email").exists()
    saved, reset = events("settings.template")
    assert reset.before["body"] == "প্রিয় {name}" and reset.after == {
        "subject": texts.DEFAULTS[("overdue", "bn", "email")].subject,
        "body": texts.DEFAULTS[("overdue", "bn", "email")].body, "customised": False,
    }


@pytest.mark.parametrize(
    ("channel", "data", "shown"),
    [
        ("sms", {"body": "Dear {nmae}, pay {amount_due}"}, "unknown placeholders: {nmae}"),
        ("sms", {"body": "Dear {name.__class__}"}, "unknown placeholders: {name.__class__}"),
        ("email", {"subject": "", "body": "Dear {name}"}, "an email template needs a subject"),
        ("email", {"subject": "Pay {Amount}", "body": "Dear {name}"}, "unknown placeholders: {Amount}"),
        ("sms", {"body": "   "}, "the text must not be empty"),
    ],
)
def test_a_refused_template_is_shown_with_the_error_and_not_saved(world, admin, channel, data, shown):
    for action in ("save", "preview"):
        response = admin.post(f"/office/settings/templates/reminder/en/{channel}/{action}", data)
        assert response.status_code == 200
        assert shown in response.content.decode()
    assert not MessageTemplate.objects.exists()
    assert events("settings.template") == []


def test_unknown_template_is_404(world, admin):
    assert admin.get("/office/settings/templates/reminder/fr/sms").status_code == 404
    assert admin.post("/office/settings/templates/test/en/sms/save", {"body": "x"}).status_code == 404


def test_preview_renders_the_first_subscriber_as_a_send_would_and_saves_nothing(world, admin, recorder):
    sub = world["sub"]
    invoice = Invoice.objects.get(subscriber=sub)
    body = "{name}: Tk {amount_due} due {due_date}, suspended {suspension_date}. {invoice_number} {payment_link}"
    MessageTemplate.objects.create(kind="overdue", language="en", channel="sms", body=body)
    Subscriber.objects.filter(pk=sub.pk).update(language="en")
    # The real send path: queue an overdue SMS and deliver it.
    request_reminder(invoice_id=invoice.pk, kind="overdue", channels=["sms"], now=world_now())
    outbox.drain(now=world_now())
    sent = Message.objects.get(subscriber=sub, kind="overdue", channel="sms")
    assert sent.status == "sent"

    response = admin.post("/office/settings/templates/overdue/en/sms/preview", {"body": body})

    page = response.content.decode()
    assert response.status_code == 200
    shown = re.search(r'<pre class="message-text sms" lang="en">([^<]*)</pre>', page).group(1)
    # Exactly the text that went out: the same link, whose token differs only in the
    # signing time it carries (same length, so the same cost).
    assert len(shown) == len(sent.body)
    assert without_signing_time(shown) == without_signing_time(sent.body)
    cost = sms_cost(sent.body)
    assert (sent.encoding, sent.segments) == (cost.encoding, cost.segments)
    assert f"<dd>{cost.encoding}</dd>" in page and f"{cost.segments} SMS segment" in page
    assert "nothing has been saved" in page
    assert MessageTemplate.objects.get(kind="overdue", language="en", channel="sms").body == body


def without_signing_time(text: str) -> str:
    """A payment link's token is ``payload:timestamp:signature``; keep the payload."""
    return re.sub(r"(/pay/[^:\s]+):[^\s]+", r"\1", text)


def world_now():
    from ispbill.core import clock

    return clock.now()


def test_preview_counts_bangla_as_ucs2_and_english_as_gsm7(world, admin):
    en = admin.post("/office/settings/templates/reminder/en/sms/preview", {"body": "Dear {name}, pay now."}).content.decode()
    assert "<dd>GSM-7</dd>" in en and "1 SMS segment" in en
    long_bn = "প্রিয় {name}, " + "বিল পরিশোধ করুন। " * 6
    bn = admin.post("/office/settings/templates/reminder/bn/sms/preview", {"body": long_bn}).content.decode()
    expected = sms_cost(long_bn.replace("{name}", world["sub"].name))
    assert expected.encoding == "UCS-2" and expected.segments > 1
    assert "<dd>UCS-2</dd>" in bn and f"{expected.segments} SMS segments" in bn


def test_preview_without_subscribers_uses_a_built_in_sample(db, fixed_clock, client_for):
    page = client_for("admin").get("/office/settings/templates/receipt/en/sms").content.decode()
    assert "built-in sample" in page
    assert "Dear Rahim Uddin, we received Tk 1000.00. Balance due: Tk 0.00." in page
    assert not Subscriber.objects.exists()


def test_preview_escapes_html_in_the_template_and_in_the_subscriber_name(world, admin):
    Subscriber.objects.filter(pk=world["sub"].pk).update(name='<img src=x onerror="alert(1)">', language="en")
    data = {"subject": "<b>Bill</b> {name}", "body": "<script>alert('x')</script> Dear {name}"}

    for page in (
        admin.post("/office/settings/templates/reminder/en/email/preview", data).content.decode(),
        admin.post("/office/settings/templates/reminder/en/sms/preview", {"body": data["body"]}).content.decode(),
    ):
        assert "<script>alert" not in page
        assert "<img src=x" not in page and '<img src="x"' not in page
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Dear &lt;img src=x" in page
    email_page = admin.post("/office/settings/templates/reminder/en/email/preview", data).content.decode()
    assert "<b>Bill</b>" not in email_page and "&lt;b&gt;Bill&lt;/b&gt;" in email_page
    # The HTML alternative sits in a sandboxed frame, escaped once more for the attribute.
    assert 'sandbox title=' in email_page and "&amp;lt;script&amp;gt;" in email_page


# -- gateways ---------------------------------------------------------------------------------

@pytest.fixture
def sslcommerz_configured(monkeypatch):
    for cls in GATEWAYS.values():
        for name in cls.env_vars:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSLCOMMERZ_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SSLCOMMERZ_STORE_ID", "store-1")
    monkeypatch.setenv("SSLCOMMERZ_STORE_PASSWORD", "very-secret-password")
    yield
    gateway_services.set_adapter_options("sslcommerz")


def test_gateways_page_shows_configuration_without_secrets(world, admin, sslcommerz_configured):
    page = admin.get("/office/settings/gateways").content.decode()
    assert "very-secret-password" not in page and "store-1" not in page
    assert "SSLCOMMERZ_STORE_PASSWORD" in page and "BKASH_APP_SECRET" in page
    ssl = page.split('id="gateway-sslcommerz"')[1].split("</tr>")[0]
    bkash = page.split('id="gateway-bkash"')[1].split("</tr>")[0]
    assert "badge green" in ssl and "offered" in ssl
    assert ">no<" in bkash and "not offered" in bkash


def test_a_switched_off_gateway_is_not_offered_on_the_payment_page(world, admin, client_for, sslcommerz_configured):
    from ispbill.core import clock

    link = links.current_link(subscriber_id=world["sub"].pk, now=clock.now(), valid_days=30)
    pay = f"/pay/{links.token_for(link)}"
    assert 'value="sslcommerz"' in Client().get(pay).content.decode()

    response = admin.post("/office/settings/gateways/sslcommerz", {"enabled": "0"})

    assert response.status_code == 303 and response["Location"] == "/office/settings/gateways"
    page = Client().get(pay).content.decode()
    assert 'value="sslcommerz"' not in page and "Online payment is not available" in page
    # A hand-made start for it is refused, and no attempt is recorded.
    refused = Client().post(f"{pay}/start", {"gateway": "sslcommerz"})
    assert refused.status_code == 404 and not PaymentAttempt.objects.exists()
    # Callbacks and webhooks of payments already started still find their adapter.
    assert gateway_services.gateway_for("sslcommerz") is not None
    (event,) = events("settings.gateway")
    assert (event.before, event.after) == (
        {"gateway": "sslcommerz", "enabled": True}, {"gateway": "sslcommerz", "enabled": False},
    )

    admin.post("/office/settings/gateways/sslcommerz", {"enabled": "1"})
    assert 'value="sslcommerz"' in Client().get(pay).content.decode()
    assert [e.after["enabled"] for e in events("settings.gateway")] == [False, True]


def test_switching_an_unknown_gateway_or_without_a_value_changes_nothing(world, admin):
    admin.post("/office/settings/gateways/paypal", {"enabled": "0"})
    admin.post("/office/settings/gateways/bkash", {"enabled": "maybe"})
    assert not GatewaySwitch.objects.exists() and events("settings.gateway") == []


# -- test sends -------------------------------------------------------------------------------

def test_test_sms_goes_through_the_channel_and_is_recorded(world, admin, recorder):
    response = admin.post("/office/settings/test-send/send", {"sms-channel": "sms", "sms-to": "01712-345678", "sms-language": "bn"})

    assert response.status_code == 303 and response["Location"] == "/office/settings/test-send"
    (sent,) = recorder.sent
    assert sent["to"] == "+8801712345678" and "ispbill demo ISP" in sent["text"] and "পরীক্ষামূলক" in sent["text"]
    (event,) = events("settings.test_send")
    assert event.after["ok"] is True and event.after["to"] == "+8801712345678"
    assert event.after["encoding"] == "UCS-2" and event.after["provider_reference"] == "rec-1"
    page = admin.get("/office/settings/test-send").content.decode()
    assert "+8801712345678" in page and "rec-1" in page
    assert not Message.objects.exists()  # not a subscriber message


def test_test_email_goes_through_django_mail(world, admin):
    response = admin.post("/office/settings/test-send/send", {"email-channel": "email", "email-to": "ops@example.com", "email-language": "en"})

    assert response.status_code == 303
    (sent,) = mail.outbox
    assert sent.to == ["ops@example.com"] and "test message" in sent.body
    (event,) = events("settings.test_send")
    assert event.after["ok"] is True and event.after["channel"] == "email"


def test_a_refused_test_send_shows_the_providers_reason_and_is_recorded(world, admin, recorder):
    recorder.refuse = "HTTP 400: invalid sender id"

    response = admin.post("/office/settings/test-send/send", {"sms-channel": "sms", "sms-to": "01712345678", "sms-language": "en"}, follow=True)

    assert "invalid sender id" in response.content.decode()
    (event,) = events("settings.test_send")
    assert event.after["ok"] is False and "invalid sender id" in event.after["error"]


@pytest.mark.parametrize(
    "data",
    [
        {"sms-channel": "sms", "sms-to": "12345", "sms-language": "en"},
        {"email-channel": "email", "email-to": "not-an-address", "email-language": "en"},
    ],
)
def test_a_bad_address_is_refused_before_anything_is_sent(world, admin, recorder, data):
    response = admin.post("/office/settings/test-send/send", data, follow=True)
    assert "class=\"error\"" in response.content.decode()
    assert recorder.sent == [] and events("settings.test_send") == []


# -- CSRF -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/office/settings/billing/save", BILLING_FORM | {"grace_days": "9"}),
        ("/office/settings/reminders/save", ladder_form([(-1, "reminder", ["sms"], False)])),
        ("/office/settings/templates/reminder/en/sms/save", {"body": "Hi {name}"}),
        ("/office/settings/templates/reminder/en/sms/reset", {}),
        ("/office/settings/gateways/bkash", {"enabled": "0"}),
        ("/office/settings/test-send/send", {"sms-channel": "sms", "sms-to": "01712345678", "sms-language": "en"}),
    ],
)
def test_a_post_without_the_csrf_token_is_refused(world, client_for, recorder, path, data):
    client = client_for("admin", enforce_csrf_checks=True)
    before = (billing_snapshot(), DunningSettings.load().ladder)

    assert client.post(path, data).status_code == 403

    assert (billing_snapshot(), DunningSettings.load().ladder) == before
    assert not MessageTemplate.objects.exists() and not GatewaySwitch.objects.exists() and recorder.sent == []
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()
