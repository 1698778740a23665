"""queue_messages (receipts): both channels' messages and outbox items inserted at
once; a dedupe key already used is skipped (the bulk insert falls back per message)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from ispbill.notifications import services as notifications
from ispbill.notifications.models import Message
from ispbill.plans.services import create_package
from ispbill.subscribers.services import create_subscriber
from ispbill.worker.models import OutboxItem

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka, outside quiet hours


@pytest.fixture
def sub():
    package = create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile="home10")
    s = create_subscriber(
        today=NOW.date(), name="Rahim", phone="01712345678", pppoe_username="rahim", email="rahim@example.com",
        package_id=package.pk, activated_on=date(2026, 12, 1),
    )
    return s


def _queue(sub, keys=("k:sms", "k:email")):
    with transaction.atomic():
        return notifications.queue_messages(subscriber=sub, kind="receipt", channels=("sms", "email"), now=NOW,
                                            dedupe_keys=keys)


def test_both_channels_with_their_outbox_items(sub):
    msgs = _queue(sub)
    assert sorted(m.channel for m in msgs) == ["email", "sms"]
    for m in msgs:
        assert OutboxItem.objects.filter(dedupe_key=f"message:{m.pk}", payload={"message_id": m.pk}).exists()
        assert Message.objects.get(pk=m.pk).recipient == (sub.phone if m.channel == "sms" else sub.email)


def test_keys_already_used_are_skipped(sub):
    with transaction.atomic():
        first = notifications.queue_message(subscriber=sub, kind="receipt", channel="sms", now=NOW, dedupe_key="k:sms")
    msgs = _queue(sub)
    assert [m.channel for m in msgs] == ["email"]
    assert Message.objects.filter(dedupe_key__in=["k:sms", "k:email"]).count() == 2
    assert OutboxItem.objects.filter(dedupe_key__startswith="message:").count() == 2
    assert _queue(sub) == []
    assert Message.objects.filter(pk=first.pk).exists()
