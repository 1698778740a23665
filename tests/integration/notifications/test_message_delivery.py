"""Reminders end to end on the database (SQLite and PostgreSQL): queued with their
outbox item in one transaction, sent by the dispatcher through the real HTTP SMS
provider (to a recording server) or SMTP (to a server process), and recorded; provider
outages are retried, refusals end the message."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings

from ispbill.billing.models import Invoice
from ispbill.billing.services import run_billing
from ispbill.notifications import channels
from ispbill.notifications import services as notifications
from ispbill.notifications.channels.sms_http import HttpSmsProvider
from ispbill.notifications.models import Message
from ispbill.plans.services import create_package
from ispbill.subscribers.services import create_subscriber, update_subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem

pytestmark = pytest.mark.django_db

BILLED = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka, outside quiet hours


@pytest.fixture
def invoice():
    package = create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile="home10")
    sub = create_subscriber(
        today=BILLED.date(), name="রহিম উদ্দিন", phone="01712345678", pppoe_username="rahim",
        package_id=package.pk, activated_on=date(2026, 12, 1),
    )
    assert run_billing(today=BILLED.date(), now=BILLED).issued == 1
    return Invoice.objects.select_related("subscriber").get(subscriber=sub)


@pytest.fixture
def provider(sms_server, clean_channels):
    sms = HttpSmsProvider(url=sms_server.url, sender="RupshaNet", timeout=5)
    channels.set_channels(sms=sms)
    yield sms
    sms.close()


def queue_reminder(invoice: Invoice) -> Message:
    with transaction.atomic():
        msg = notifications.queue_message(
            subscriber=invoice.subscriber, kind="reminder", channel="sms", now=NOW, invoice=invoice, step="-5",
            dedupe_key=f"{invoice.pk}:-5:sms",
        )
    assert msg is not None
    return msg


def outbox_item(msg: Message) -> OutboxItem:
    return OutboxItem.objects.get(dedupe_key=f"message:{msg.pk}")


def ucs2_segments(text: str) -> int:
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def test_a_bangla_reminder_is_sent_once_and_recorded(invoice, provider, sms_server):
    msg = queue_reminder(invoice)
    assert outbox_item(msg).state == "pending"

    result = outbox.drain(now=NOW)

    assert (result.done, result.retried, result.dead) == (1, 0, 0)
    msg.refresh_from_db()
    assert msg.status == "sent"
    assert (msg.sending_at, msg.sent_at) == (NOW, NOW)
    assert msg.provider_reference == "m-1"
    assert msg.recipient == "+8801712345678"
    assert msg.language == "bn"
    assert msg.body.startswith("প্রিয় রহিম উদ্দিন, আপনার ইন্টারনেট বিল ")  # rendered at send time
    assert "টাকা" in msg.body and "01 Dec 2026" in msg.body and "/pay/" in msg.body
    assert msg.encoding == "UCS-2"
    assert msg.segments == ucs2_segments(msg.body) > 1
    assert outbox_item(msg).state == "done"

    (req,) = sms_server.requests
    assert req.form == {"to": ["+8801712345678"], "text": [msg.body], "sender": ["RupshaNet"]}

    assert outbox.drain(now=NOW + timedelta(hours=1)).claimed == 0
    assert len(sms_server.requests) == 1


def test_a_provider_outage_is_retried_later_and_sent_exactly_once(invoice, provider, sms_server):
    msg = queue_reminder(invoice)
    sms_server.reply(500, "Internal Server Error")

    result = outbox.drain(now=NOW)

    assert (result.done, result.retried, result.dead) == (0, 1, 0)
    msg.refresh_from_db()
    item = outbox_item(msg)
    assert msg.status == "queued"
    assert "TemporarySendError" in msg.error and "HTTP 500" in msg.error
    assert (item.state, item.attempts) == ("pending", 1)
    assert item.next_attempt_at > NOW
    assert "HTTP 500" in item.last_error

    sms_server.reply(200)  # the provider is back
    assert outbox.drain(now=NOW).claimed == 0  # not before the backoff is over
    later = NOW + timedelta(hours=1)  # 13:00 in Dhaka
    assert outbox.drain(now=later).done == 1

    msg.refresh_from_db()
    assert (msg.status, msg.sent_at, msg.error) == ("sent", later, "")
    assert outbox_item(msg).state == "done"
    assert [r.status for r in sms_server.requests] == [500, 200]
    assert outbox.drain(now=later + timedelta(hours=1)).claimed == 0
    assert len(sms_server.requests) == 2


def test_a_refused_number_ends_the_message_as_dead(invoice, provider, sms_server):
    msg = queue_reminder(invoice)
    sms_server.reply(400, '{"error": "Invalid MSISDN"}')

    result = outbox.drain(now=NOW)

    assert (result.done, result.retried, result.dead) == (0, 0, 1)
    msg.refresh_from_db()
    item = outbox_item(msg)
    assert msg.status == "dead"
    assert "HTTP 400" in msg.error and "Invalid MSISDN" in msg.error
    assert item.state == "dead"
    assert "Invalid MSISDN" in item.last_error
    assert outbox.drain(now=NOW + timedelta(days=1)).claimed == 0
    assert len(sms_server.requests) == 1


def test_quiet_hours_hold_the_sms_until_morning(invoice, provider, sms_server):
    night = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)  # 23:00 in Dhaka
    with transaction.atomic():
        msg = notifications.queue_message(subscriber=invoice.subscriber, kind="reminder", channel="sms", now=night, invoice=invoice)

    assert outbox.drain(now=night).claimed == 0
    assert sms_server.requests == []
    morning = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 08:00 in Dhaka
    assert outbox.drain(now=morning).done == 1
    msg.refresh_from_db()
    assert msg.status == "sent"
    assert len(sms_server.requests) == 1


def test_an_email_reminder_goes_through_smtp_with_its_reference(invoice, smtp_sink, clean_channels):
    update_subscriber(subscriber_id=invoice.subscriber_id, today=NOW.date(), email="rahim@example.com")
    invoice.subscriber.refresh_from_db()
    with transaction.atomic():
        msg = notifications.queue_message(subscriber=invoice.subscriber, kind="reminder", channel="email", now=NOW, invoice=invoice)

    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST=smtp_sink.host, EMAIL_PORT=smtp_sink.port,
        EMAIL_USE_TLS=False, EMAIL_USE_SSL=False, EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="", EMAIL_TIMEOUT=5,
    ):
        assert outbox.drain(now=NOW).done == 1

    msg.refresh_from_db()
    assert msg.status == "sent"
    received = smtp_sink.message_with_reference(f"ispbill-{msg.pk}")
    assert received["Message-ID"] == msg.provider_reference
    assert received["To"] == "rahim@example.com"
    assert received["Subject"].strip() == msg.subject
    assert received.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == msg.body
    assert "/pay/" in received.get_body(preferencelist=("html",)).get_content()
