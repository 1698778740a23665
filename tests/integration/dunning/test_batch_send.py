"""Reminders sent a batch at a time (SQLite and PostgreSQL).

The dispatcher's preparer loads and renders a whole claimed batch at once; each send then
marks its message "sending" only if nothing it was rendered from changed in between, and
otherwise decides it again under the message's row lock. Here things change between the
preparing and the sending: each affected message must come out exactly as if it had
never been prepared (cancelled, not sent twice, re-rendered), and only it.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.billing.models import BillingSettings, Invoice
from ispbill.billing.services import run_billing
from ispbill.core import clock
from ispbill.dunning.services import run_dunning
from ispbill.notifications import services
from ispbill.notifications.models import Message, MessageTemplate
from ispbill.notifications.sms import sms_cost
from ispbill.payments import links
from ispbill.payments.models import PaymentLink
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import DUE_ON, ISSUED_ON, at, make_subscriber

pytestmark = pytest.mark.django_db

NOW = at(date(2026, 11, 26), 10)  # the -5 reminder is due; outside quiet hours


@pytest.fixture
def after_prepare(monkeypatch):
    """``after_prepare(fn)``: ``fn()`` runs once the send preparer has prepared a batch,
    before any of its items is sent (replacing any earlier ``fn``)."""
    assert outbox._PREPARERS[services.SEND_TOPIC] is services.prepare_sends

    def install(fn):
        def prepare_then(items, *, now):
            prepared = services.prepare_sends(items, now=now)
            fn()
            return prepared

        monkeypatch.setitem(outbox._PREPARERS, services.SEND_TOPIC, prepare_then)

    return install


@pytest.fixture
def unprepared(monkeypatch):
    """The ids of the messages that took the unprepared path (decided under the lock)."""
    calls: list[int] = []
    real = services._prepare_locked

    def spy(message_id, now):
        calls.append(message_id)
        return real(message_id, now)

    monkeypatch.setattr(services, "_prepare_locked", spy)
    return calls


def reminders(*subscribers) -> dict[int, Message]:
    """{subscriber id: its SMS reminder} after the billing and dunning runs."""
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    assert run_dunning(now=NOW).queued >= len(subscribers)
    return {m.subscriber_id: m for m in Message.objects.filter(channel="sms", subscriber__in=subscribers)}


def pay(sub, amount: Decimal | None = None) -> None:
    invoice = Invoice.objects.get(subscriber=sub, due_on=DUE_ON)
    amount = Decimal(invoice.amount_due_paisa) / 100 if amount is None else amount
    with clock.use_clock(clock.FixedClock(NOW)):
        record_payment(subscriber_id=sub.pk, amount=amount, method="cash", received_at=NOW, reference=f"counter {sub.pk}")


def reload(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def test_a_batch_is_sent_without_reading_anything_per_message(channel, package, unprepared):
    subs = [make_subscriber(package, email=f"s{i}@example.com" if i % 2 else "") for i in range(8)]
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    queued = run_dunning(now=NOW).queued
    assert queued == 12  # 8 SMS, 4 emails

    with CaptureQueriesContext(connection) as queries:
        result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.done) == (queued, queued)
    assert unprepared == []
    # Reads are per batch (claim, settings, messages, template, links), not per message.
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(reads) <= 8, reads
    messages = list(Message.objects.filter(subscriber__in=subs))
    assert {m.status for m in messages} == {"sent"}
    delivered = {d.message_id: d for d in channel.deliveries}
    assert sorted(delivered) == sorted(m.pk for m in messages)
    for m in messages:
        assert delivered[m.pk].text == m.body and delivered[m.pk].to == m.recipient
        assert m.sending_at == NOW and m.sent_at == NOW and m.provider_reference.startswith("rec-")
        if m.channel == "sms":
            assert (m.encoding, m.segments) == ("UCS-2", sms_cost(m.body).segments)  # Bangla
    # One payment link per subscriber, shared by its SMS and email.
    assert PaymentLink.objects.count() == len(subs)
    for sub in subs[1::2]:
        urls = {re.search(r"https?://\S+/pay/\S+", m.body).group(0) for m in messages if m.subscriber_id == sub.pk}
        assert len(urls) == 1
    assert OutboxItem.objects.exclude(state=OutboxState.DONE).count() == 0


def test_an_invoice_paid_between_preparing_and_sending_cancels_exactly_that_message(
    channel, package, after_prepare, unprepared,
):
    a, b, c = (make_subscriber(package) for _ in range(3))
    msgs = reminders(a, b, c)
    after_prepare(lambda: pay(b))

    result = outbox.drain(now=NOW)

    assert result.done == len(OutboxItem.objects.all())  # every item settled, none retried
    assert (reload(msgs[a.pk]).status, reload(msgs[c.pk]).status) == ("sent", "sent")
    cancelled = reload(msgs[b.pk])
    assert (cancelled.status, cancelled.error) == ("cancelled", "invoice paid before sending")
    assert cancelled.sending_at is None
    assert [d.to for d in channel.sms if d.message_id in {m.pk for m in msgs.values()}] == [a.phone, c.phone]
    assert msgs[b.pk].pk in unprepared and msgs[a.pk].pk not in unprepared and msgs[c.pk].pk not in unprepared


def test_a_message_settled_under_it_is_not_sent_again(channel, package, after_prepare, unprepared):
    a, b, c = (make_subscriber(package) for _ in range(3))
    msgs = reminders(a, b, c)

    def meanwhile():
        # another worker already delivered A's; staff cancelled B's
        Message.objects.filter(pk=msgs[a.pk].pk).update(status="sent", provider_reference="elsewhere")
        Message.objects.filter(pk=msgs[b.pk].pk).update(status="cancelled", error="by staff")

    after_prepare(meanwhile)
    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.done) == (3, 3)
    assert [d.message_id for d in channel.sms] == [msgs[c.pk].pk]
    assert (reload(msgs[a.pk]).status, reload(msgs[a.pk]).provider_reference) == ("sent", "elsewhere")
    assert (reload(msgs[b.pk]).status, reload(msgs[b.pk]).error) == ("cancelled", "by staff")
    assert reload(msgs[c.pk]).status == "sent"
    assert sorted(unprepared) == sorted([msgs[a.pk].pk, msgs[b.pk].pk])


def test_a_message_being_sent_by_another_worker_is_not_sent_twice(channel, package, after_prepare):
    a, b = (make_subscriber(package) for _ in range(2))
    msgs = reminders(a, b)
    after_prepare(lambda: Message.objects.filter(pk=msgs[a.pk].pk).update(status="sending", sending_at=NOW))

    outbox.dispatch(now=NOW, worker_id="w1")

    assert [d.message_id for d in channel.sms] == [msgs[b.pk].pk]
    assert reload(msgs[a.pk]).status == "uncertain"  # as for any "sending" message found by a send


def test_rows_changed_between_preparing_and_sending_are_read_again(channel, package, after_prepare, unprepared):
    """Changes made without touching ``updated_at`` (queryset updates) are caught too."""
    a, b, c, d, e = (make_subscriber(package, language="en") for _ in range(5))
    msgs = reminders(a, b, c, d, e)
    old_link = {}

    def meanwhile():
        pay(b, Decimal("400.00"))  # half paid: the amount in the text changes
        Subscriber.objects.filter(pk=c.pk).update(status="disabled")
        Subscriber.objects.filter(pk=d.pk).update(name="Renamed Subscriber", phone="+8801799999999")
        old_link[e.pk] = links.current_link(subscriber_id=e.pk, now=NOW, valid_days=30)
        links.revoke(subscriber_id=e.pk, now=NOW)

    after_prepare(meanwhile)
    outbox.dispatch(now=NOW, worker_id="w1")

    sent = {m.subscriber_id: m for m in Message.objects.filter(pk__in=[m.pk for m in msgs.values()])}
    assert sent[a.pk].status == "sent" and "Tk 1000.00" in sent[a.pk].body
    assert sent[b.pk].status == "sent" and "Tk 600.00" in sent[b.pk].body
    assert (sent[c.pk].status, sent[c.pk].error) == ("cancelled", "subscriber disabled")
    assert sent[d.pk].body.startswith("Dear Renamed Subscriber,") and sent[d.pk].recipient == "+8801799999999"
    assert [x.to for x in channel.sms if x.message_id == sent[d.pk].pk] == ["+8801799999999"]
    assert sent[e.pk].status == "sent" and links.url_for(old_link[e.pk]) not in sent[e.pk].body
    token = re.search(r"/pay/(\S+)", sent[e.pk].body).group(1)
    assert links.resolve(token, now=NOW).revoked_at is None
    # A's message was prepared and went out as prepared; the others were read again.
    assert sorted(unprepared) == sorted(msgs[s.pk].pk for s in (b, c, d, e))


def test_settings_and_templates_changed_after_preparing_reach_the_text(channel, package, after_prepare, unprepared):
    a, b = (make_subscriber(package, language="en") for _ in range(2))
    msgs = reminders(a, b)

    def meanwhile():
        s = BillingSettings.load()
        s.isp_name = "Dhaka Net"
        s.save()

    after_prepare(meanwhile)
    outbox.dispatch(now=NOW, worker_id="w1", ids=[OutboxItem.objects.get(dedupe_key=f"message:{msgs[a.pk].pk}").pk])
    assert reload(msgs[a.pk]).body.endswith("- Dhaka Net")
    assert unprepared == [msgs[a.pk].pk]

    def edit_template():
        MessageTemplate.objects.create(kind="reminder", language="en", channel="sms", body="Pay {amount_due} now, {name}.")
        services.forget_templates()  # as after the cache's few seconds

    after_prepare(edit_template)
    outbox.dispatch(now=NOW, worker_id="w1")
    assert reload(msgs[b.pk]).body == f"Pay 1000.00 now, {b.name}."
    assert unprepared == [msgs[a.pk].pk, msgs[b.pk].pk]
