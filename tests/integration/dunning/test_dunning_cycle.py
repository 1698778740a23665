"""A whole dunning cycle, the clock moved day by day through ``ispbill tick --at``.

Prepaid subscribers on the default ladder (-5, 0, +1; grace 3): the December invoice is
issued on 24 Nov and due on 1 Dec, so reminders fall on 26 Nov, 1 Dec and 2 Dec and
service would be suspended on 5 Dec. Two ticks a day (09:00 and 15:00 in Dhaka) must
not send anything twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest

from ispbill import cli
from ispbill.core import clock
from ispbill.billing.models import Invoice
from ispbill.dunning.policy import DUNNING_KINDS
from ispbill.notifications.models import Message
from ispbill.payments.services import record_payment
from ispbill.subscribers.services import update_subscriber
from ispbill.worker import outbox, scheduler
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import DUE_ON, at, make_subscriber

pytestmark = pytest.mark.django_db

DUNNING = [str(k) for k in DUNNING_KINDS]


def tick(when: str) -> None:
    """``ispbill tick --at <when>`` (read in Asia/Dhaka)."""
    assert cli.main(["tick", "--at", when]) == 0


def pay_in_full(sub, when) -> None:
    """Cash at the counter at ``when`` (the clock stands there: the receipt is queued then)."""
    invoice = Invoice.objects.get(subscriber=sub, due_on=DUE_ON)
    with clock.use_clock(clock.FixedClock(when)):
        record_payment(
            subscriber_id=sub.pk, amount=Decimal(invoice.amount_due_paisa) / 100, method="cash", received_at=when,
            reference=f"counter {sub.pk}",
        )
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def local(dt):
    from ispbill.core.timeutil import isp_zone

    return dt.astimezone(isp_zone())


def sends(channel, sub, kind_of, kinds=DUNNING):
    """(channel, kind) of each delivery of ``kinds`` (None: all) to ``sub``, in delivery order."""
    out = []
    for d in channel.deliveries:
        if d.to in (sub.phone, sub.email) and (kinds is None or kind_of[d.message_id] in kinds):
            out.append((d.channel, kind_of[d.message_id]))
    return out


def dunning_sends(channel, sub, kind_of):
    return sends(channel, sub, kind_of)


def ucs2_segments(text: str) -> int:
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def test_whole_cycle_day_by_day(channel, package, capsys):
    a = make_subscriber(package, language="bn", email="a@example.com")  # never pays
    b = make_subscriber(package, email="b@example.com")  # pays on 28 Nov
    c = make_subscriber(package, email="c@example.com")  # pays between decision and send
    d = make_subscriber(package, email="d@example.com")  # disabled after the invoice is issued
    n = make_subscriber(package, never_suspend=True)  # exempt from suspension, still reminded
    e = make_subscriber(package, language="en")  # English

    day = date(2026, 11, 24)
    while day <= date(2026, 12, 6):
        for hour in (9, 15):
            now = at(day, hour)
            if (day, hour) == (date(2026, 11, 26), 9):
                # The dunning job decides C's reminder, C pays at the counter, then the
                # dispatcher runs: the message is cancelled, nothing is sent to C.
                outcomes = scheduler.run_due_jobs(now, force=True)
                assert all(o.ok for o in outcomes), outcomes
                assert Message.objects.filter(subscriber=c, kind="reminder", status="queued").count() == 2
                pay_in_full(c, now)
                outbox.drain(now=now)
            else:
                tick(f"{day.isoformat()}T{hour:02d}:00")
            if (day, hour) == (date(2026, 11, 24), 9):
                assert Invoice.objects.filter(due_on=DUE_ON, issued_on=date(2026, 11, 24), status="open").count() == 6
            if (day, hour) == (date(2026, 11, 25), 9):
                update_subscriber(subscriber_id=d.pk, today=day, status="disabled")
            if (day, hour) == (date(2026, 11, 28), 9):
                pay_in_full(b, at(day, 12))
        day += timedelta(days=1)
    capsys.readouterr()

    messages = {m.pk: m for m in Message.objects.all()}
    kind_of = {pk: m.kind for pk, m in messages.items()}

    # Nothing was delivered twice, and every delivery is a message recorded as sent.
    refs = Counter(dl.reference for dl in channel.deliveries)
    assert [r for r, k in refs.items() if k > 1] == []
    assert sorted(dl.message_id for dl in channel.deliveries) == sorted(
        pk for pk, m in messages.items() if m.status == "sent"
    )
    assert OutboxItem.objects.exclude(state=OutboxState.DONE).count() == 0

    # A never pays: reminder, due today, overdue on SMS and email, in order, each once,
    # each at the first tick of its day.
    ladder = [("sms", "reminder"), ("email", "reminder"), ("sms", "due_today"), ("email", "due_today"),
              ("sms", "overdue"), ("email", "overdue")]
    assert dunning_sends(channel, a, kind_of) == ladder
    a_msgs = sorted(Message.objects.filter(subscriber=a, kind__in=DUNNING), key=lambda m: (m.sent_at, m.channel != "sms"))
    assert [(m.channel, m.kind, m.step, m.status, m.trigger) for m in a_msgs] == [
        (ch, kind, step, "sent", "auto") for (ch, kind), step in zip(ladder, ["-5", "-5", "+0", "+0", "+1", "+1"])
    ]
    assert [local(m.sent_at).replace(tzinfo=None).isoformat() for m in a_msgs[::2]] == [
        "2026-11-26T09:00:00", "2026-12-01T09:00:00", "2026-12-02T09:00:00",
    ]
    overdue_sms = next(m for m in a_msgs if m.kind == "overdue" and m.channel == "sms")
    overdue_email = next(m for m in a_msgs if m.kind == "overdue" and m.channel == "email")
    assert "05 Dec 2026" in overdue_sms.body
    assert "05 Dec 2026" in overdue_email.subject and "05 Dec 2026" in overdue_email.body
    # What the channel got is what the message row records.
    delivered = {dl.message_id: dl for dl in channel.deliveries}
    assert delivered[overdue_sms.pk].text == overdue_sms.body
    assert delivered[overdue_email.pk].subject == overdue_email.subject
    assert delivered[overdue_email.pk].html.startswith("<!doctype html>")

    # The date the overdue reminder named is the day A was suspended (first tick of 5 Dec),
    # with one "suspended" message on each channel; nothing else went to A.
    a.refresh_from_db()
    assert a.status == "suspended"
    suspended = list(Message.objects.filter(subscriber=a, kind="suspended").order_by("channel"))
    assert [(m.channel, m.status, local(m.sent_at).replace(tzinfo=None).isoformat()) for m in suspended] == [
        ("email", "sent", "2026-12-05T09:00:00"), ("sms", "sent", "2026-12-05T09:00:00"),
    ]
    assert sends(channel, a, kind_of, kinds=None) == ladder + [("sms", "suspended"), ("email", "suspended")]

    # A is Bangla: UCS-2 with a segment count; E is English: GSM-7.
    for m in (mm for mm in a_msgs if mm.channel == "sms"):
        assert m.language == "bn" and "প্রিয়" in m.body
        assert m.encoding == "UCS-2" and m.segments == ucs2_segments(m.body) and m.segments >= 2
    e_sms = list(Message.objects.filter(subscriber=e, channel="sms", kind__in=DUNNING).order_by("sent_at"))
    assert [m.kind for m in e_sms] == ["reminder", "due_today", "overdue"]
    for m in e_sms:
        assert m.language == "en" and m.body.startswith("Dear ")
        assert m.body.isascii() and m.encoding == "GSM-7"
        assert m.segments == (1 if len(m.body) <= 160 else -(-len(m.body) // 153))
    assert "05 Dec 2026" in e_sms[-1].body and "suspended on 05 Dec 2026" in e_sms[-1].body

    # B paid on 28 Nov: only the reminder (and the receipt for the payment).
    assert dunning_sends(channel, b, kind_of) == [("sms", "reminder"), ("email", "reminder")]
    assert set(Message.objects.filter(subscriber=b, kind__in=DUNNING).values_list("kind", flat=True)) == {"reminder"}
    assert sends(channel, b, kind_of, kinds=None) == [
        ("sms", "reminder"), ("email", "reminder"), ("sms", "receipt"), ("email", "receipt"),
    ]

    # C paid after the reminder was queued: cancelled, no reminder reached the channel
    # (only the receipt for the payment did).
    assert dunning_sends(channel, c, kind_of) == []
    assert sends(channel, c, kind_of, kinds=None) == [("sms", "receipt"), ("email", "receipt")]
    c_msgs = list(Message.objects.filter(subscriber=c, kind__in=DUNNING))
    assert sorted((m.kind, m.channel, m.status, m.error) for m in c_msgs) == [
        ("reminder", "email", "cancelled", "invoice paid before sending"),
        ("reminder", "sms", "cancelled", "invoice paid before sending"),
    ]
    assert all(m.sent_at is None and m.sending_at is None for m in c_msgs)

    # Disabled: nothing queued, nothing sent.
    assert not Message.objects.filter(subscriber=d).exists()
    assert channel.to(d.phone) == [] and channel.to(d.email) == []

    # never_suspend is about suspension, not reminders.
    assert dunning_sends(channel, n, kind_of) == [("sms", "reminder"), ("sms", "due_today"), ("sms", "overdue")]
    n.refresh_from_db()
    assert n.status == "active" and not Message.objects.filter(subscriber=n, kind="suspended").exists()
    # E (English, never pays) is suspended like A.
    assert sends(channel, e, kind_of, kinds=None)[-1] == ("sms", "suspended")


def test_quiet_hours_hold_sms_until_morning_email_goes_at_once(channel, package):
    a = make_subscriber(package, email="a@example.com")
    tick("2026-11-24T09:00")  # issues the December invoices; no step is due yet
    assert Message.objects.count() == 0

    # The first tick on the reminder day comes at 23:00 Dhaka (quiet hours 21:00-08:00).
    tick("2026-11-26T23:00")
    sms = Message.objects.get(subscriber=a, channel="sms")
    email = Message.objects.get(subscriber=a, channel="email")
    assert [(dl.channel, dl.message_id) for dl in channel.deliveries] == [("email", email.pk)]
    assert email.status == "sent" and email.sent_at == at(date(2026, 11, 26), 23)
    assert sms.status == "queued"
    item = OutboxItem.objects.get(dedupe_key=f"message:{sms.pk}")
    assert (item.state, item.attempts) == (OutboxState.PENDING, 0)
    assert item.next_attempt_at == at(date(2026, 11, 27), 8)

    tick("2026-11-27T07:59")  # still quiet; the reminder is not queued again
    assert channel.sms == []
    assert Message.objects.filter(subscriber=a).count() == 2

    result = outbox.drain(now=at(date(2026, 11, 27), 8))
    assert result.done == 1
    sms.refresh_from_db()
    item.refresh_from_db()
    assert sms.status == "sent" and sms.sent_at == at(date(2026, 11, 27), 8)
    assert [dl.message_id for dl in channel.sms] == [sms.pk]
    assert (item.state, item.attempts) == (OutboxState.DONE, 1)


def test_sms_decided_before_quiet_hours_is_held_without_using_attempts(channel, package, settings):
    """Queued at 20:30, dispatched at 23:00: the send handler holds the SMS until 08:00
    (RetryLater with count_attempt=False). Even with max_attempts=1 the hold does not
    use up the item: it is still sent in the morning."""
    settings.ISPBILL_OUTBOX_MAX_ATTEMPTS = 1
    a = make_subscriber(package, email="a@example.com")
    tick("2026-11-24T09:00")
    outcomes = scheduler.run_due_jobs(at(date(2026, 11, 26), 20, 30), force=True)  # decided, not dispatched
    assert all(o.ok for o in outcomes)
    sms = Message.objects.get(subscriber=a, channel="sms")
    item = OutboxItem.objects.get(dedupe_key=f"message:{sms.pk}")
    assert item.max_attempts == 1 and item.next_attempt_at == at(date(2026, 11, 26), 20, 30)

    result = outbox.drain(now=at(date(2026, 11, 26), 23))
    assert (result.done, result.retried, result.dead) == (1, 1, 0)  # the email went, the SMS waits
    assert [dl.channel for dl in channel.deliveries] == ["email"]
    item.refresh_from_db()
    sms.refresh_from_db()
    assert (item.state, item.attempts, item.max_attempts) == (OutboxState.PENDING, 0, 1)
    assert item.next_attempt_at == at(date(2026, 11, 27), 8)
    assert "quiet hours" in item.last_error
    assert sms.status == "queued" and sms.sending_at is None

    assert outbox.drain(now=at(date(2026, 11, 27), 3)).claimed == 0  # nothing ready in the night
    assert outbox.drain(now=at(date(2026, 11, 27), 8)).done == 1
    item.refresh_from_db()
    sms.refresh_from_db()
    assert (item.state, item.attempts) == (OutboxState.DONE, 1)
    assert sms.status == "sent" and [dl.message_id for dl in channel.sms] == [sms.pk]
