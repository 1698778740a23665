"""The API around reminders: message filters, a reminder sent by hand, dunning settings."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ispbill.api.tokens import issue_token
from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing
from ispbill.dunning.services import run_dunning
from ispbill.notifications.models import Message
from ispbill.payments.services import record_payment
from ispbill.worker import outbox

from .conftest import DUE_ON, ISSUED_ON, at, make_subscriber

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, token: str):
        self.client = Client()
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, path, params=None):
        return self.client.get(f"/api/v1{path}", params or {}, **self.auth)

    def post(self, path, body):
        return self.client.post(f"/api/v1{path}", body, content_type="application/json", **self.auth)

    def patch(self, path, body):
        return self.client.patch(f"/api/v1{path}", body, content_type="application/json", **self.auth)


@pytest.fixture
def staff():
    return get_user_model().objects.create_user(username="clerk", password="x" * 12, is_staff=True, is_superuser=True)  # the API checks roles


@pytest.fixture
def api(staff):
    return Api(issue_token(username=staff.username))


def invoice_of(sub) -> Invoice:
    return Invoice.objects.get(subscriber=sub, due_on=DUE_ON)


def test_messages_filter_by_subscriber_kind_status_and_channel(api, channel, package, fixed_clock):
    a = make_subscriber(package, email="a@example.com")
    b = make_subscriber(package)
    c = make_subscriber(package)
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    now = at(date(2026, 11, 26), 10)
    fixed_clock.set(now)
    run_dunning(now=now)
    record_payment(subscriber_id=c.pk, amount=Decimal(invoice_of(c).amount_due_paisa) / 100, method="cash", received_at=now)
    outbox.drain(now=now)

    def listed(**params):
        response = api.get("/messages", params)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["count"] == len(body["items"])
        return sorted((m["subscriber"], m["kind"], m["channel"], m["status"]) for m in body["items"])

    assert listed(subscriber=a.pk) == [(a.pk, "reminder", "email", "sent"), (a.pk, "reminder", "sms", "sent")]
    assert listed(subscriber=a.pk, kind="reminder", status="sent") == listed(subscriber=a.pk)
    assert listed(subscriber=a.pk, kind="due_today") == []
    assert listed(status="cancelled") == [(c.pk, "reminder", "sms", "cancelled")]
    assert listed(subscriber=c.pk) == [(c.pk, "receipt", "sms", "sent"), (c.pk, "reminder", "sms", "cancelled")]
    assert listed(kind="reminder", status="sent") == [
        (a.pk, "reminder", "email", "sent"), (a.pk, "reminder", "sms", "sent"), (b.pk, "reminder", "sms", "sent"),
    ]
    assert listed(channel="email") == [(a.pk, "reminder", "email", "sent")]
    one = api.get("/messages", {"subscriber": a.pk, "channel": "sms"}).json()["items"][0]
    assert one["step"] == "-5" and one["trigger"] == "auto" and one["encoding"] == "UCS-2" and one["segments"] >= 1
    assert one["body"] == next(d.text for d in channel.sms if d.message_id == one["id"])
    assert Client().get("/api/v1/messages").status_code == 401


def test_remind_by_hand_is_queued_as_manual_and_sent_by_the_dispatcher(api, staff, channel, package, fixed_clock):
    a = make_subscriber(package, email="a@example.com")
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    fixed_clock.set(at(date(2026, 11, 27), 11))
    invoice = invoice_of(a)

    response = api.post(f"/invoices/{invoice.pk}/remind", {"kind": "due_today"})
    assert response.status_code == 202, response.content
    queued = response.json()
    assert sorted((m["kind"], m["channel"], m["trigger"], m["status"], m["invoice"]) for m in queued) == [
        ("due_today", "email", "manual", "queued", invoice.pk), ("due_today", "sms", "manual", "queued", invoice.pk),
    ]
    assert channel.deliveries == []  # queued, not sent by the request

    result = outbox.drain(now=fixed_clock.now())
    assert result.done == 2
    msgs = list(Message.objects.filter(pk__in=[m["id"] for m in queued]))
    assert all(m.status == "sent" and m.trigger == "manual" and m.requested_by_id == staff.pk for m in msgs)
    assert sorted(d.message_id for d in channel.deliveries) == sorted(m.pk for m in msgs)
    sms = next(d for d in channel.deliveries if d.channel == "sms")
    assert sms.to == a.phone and "01 Dec 2026" in sms.text
    listed = api.get("/messages", {"subscriber": a.pk, "kind": "due_today", "status": "sent"}).json()
    assert {m["trigger"] for m in listed["items"]} == {"manual"} and listed["count"] == 2


def test_remind_for_a_paid_invoice_is_a_conflict(api, channel, package, fixed_clock):
    a = make_subscriber(package)
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    fixed_clock.set(at(date(2026, 11, 27), 11))
    invoice = invoice_of(a)
    record_payment(subscriber_id=a.pk, amount=Decimal(invoice.amount_due_paisa) / 100, method="cash", received_at=fixed_clock.now())

    response = api.post(f"/invoices/{invoice.pk}/remind", {"kind": "due_today"})
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "invoice_not_open"
    assert set(Message.objects.values_list("kind", flat=True)) == {"receipt"}  # for the payment, nothing else
    assert not Message.objects.filter(trigger="manual").exists()
    assert api.post("/invoices/999999/remind", {"kind": "due_today"}).status_code == 404


def test_dunning_settings_validation_and_a_changed_ladder_is_used_by_the_next_run(api, channel, package):
    response = api.get("/settings/dunning")
    assert response.status_code == 200
    before = response.json()
    assert [(s["offset"], s["kind"]) for s in before["ladder"]] == [(-5, "reminder"), (0, "due_today"), (1, "overdue")]
    assert (before["quiet_hours_start"], before["quiet_hours_end"]) == ("21:00", "08:00")

    duplicate = [
        {"offset": -3, "kind": "reminder", "channels": ["sms"]},
        {"offset": -3, "kind": "due_today", "channels": ["email"]},
    ]
    response = api.patch("/settings/dunning", {"ladder": duplicate})
    assert response.status_code == 422 and response.json()["code"] == "invalid_ladder"
    response = api.patch("/settings/dunning", {"quiet_hours_start": "25:00"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_input"
    assert api.get("/settings/dunning").json() == before  # nothing changed

    response = api.patch(
        "/settings/dunning",
        {"ladder": [{"offset": -3, "kind": "reminder", "channels": ["sms"]}], "quiet_hours_start": "22:30"},
    )
    assert response.status_code == 200, response.content
    after = api.get("/settings/dunning").json()
    assert after["ladder"] == [{"offset": -3, "kind": "reminder", "channels": ["sms"]}]
    assert after["quiet_hours_start"] == "22:30"

    a = make_subscriber(package, email="a@example.com")
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    assert run_dunning(now=at(date(2026, 11, 26), 10)).queued == 0  # -5 is no longer a step
    assert run_dunning(now=at(date(2026, 11, 28), 10)).queued == 1  # -3, SMS only
    assert list(Message.objects.filter(subscriber=a).values_list("kind", "step", "channel")) == [("reminder", "-3", "sms")]


def test_settings_changed_between_sends_reach_the_very_next_send(api, channel, package, fixed_clock):
    """The sender keeps the settings in memory between sends; a change must still be
    used by the next message (ISP name in the text, quiet hours for the hold)."""
    a = make_subscriber(package)
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    fixed_clock.set(at(date(2026, 11, 26), 10))
    run_dunning(now=fixed_clock.now())
    assert outbox.drain(now=fixed_clock.now()).done == 1
    assert channel.sms[-1].text.endswith("- ispbill demo ISP")

    assert api.patch("/settings", {"isp_name": "Dhaka Net"}).status_code == 200
    invoice = invoice_of(a)
    assert api.post(f"/invoices/{invoice.pk}/remind", {"kind": "due_today"}).status_code == 202
    assert outbox.drain(now=fixed_clock.now()).done == 1
    assert channel.sms[-1].text.endswith("- Dhaka Net")

    # Queued outside quiet hours; quiet hours then changed to cover 10:00: held, not sent.
    assert api.post(f"/invoices/{invoice.pk}/remind", {"kind": "due_today"}).status_code == 202
    response = api.patch("/settings/dunning", {"quiet_hours_start": "09:30", "quiet_hours_end": "12:00"})
    assert response.status_code == 200
    result = outbox.drain(now=fixed_clock.now())
    assert (result.done, result.retried) == (0, 1)
    assert len(channel.sms) == 2
    held = Message.objects.filter(subscriber=a, status="queued").get()
    assert outbox.drain(now=at(date(2026, 11, 26), 12)).done == 1
    held.refresh_from_db()
    assert held.status == "sent" and len(channel.sms) == 3
