"""A worker dies while a reminder is with the provider: after the lease expires the
message is marked "uncertain" for staff, and the provider is not called again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ispbill.billing.services import run_billing
from ispbill.dunning.services import run_dunning
from ispbill.notifications.models import Message
from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

from .conftest import ISSUED_ON, at, make_subscriber

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands in for the process dying (SIGKILL, OOM) in the middle of a provider call:
    a BaseException, so nothing in the dispatcher records an outcome."""


def test_expired_lease_on_a_message_being_sent_makes_it_uncertain_without_resending(channel, package, settings):
    sub = make_subscriber(package, email="a@example.com")
    run_billing(today=ISSUED_ON, now=at(ISSUED_ON))
    now = at(date(2026, 11, 26), 10)
    assert run_dunning(now=now).queued == 2
    sms = Message.objects.get(subscriber=sub, channel="sms")
    email = Message.objects.get(subscriber=sub, channel="email")
    sms_item = OutboxItem.objects.get(dedupe_key=f"message:{sms.pk}")
    email_item = OutboxItem.objects.get(dedupe_key=f"message:{email.pk}")

    def die(kind: str) -> None:
        raise WorkerKilled

    channel.before = die
    with pytest.raises(WorkerKilled):
        outbox.dispatch(now=now, worker_id="worker-1")  # claims both, dies in the first send
    channel.before = None
    sms.refresh_from_db()
    email.refresh_from_db()
    sms_item.refresh_from_db()
    email_item.refresh_from_db()
    assert sms.status == "sending" and sms.sending_at == now
    assert email.status == "queued"  # claimed, never started
    for item in (sms_item, email_item):
        assert (item.state, item.locked_by, item.attempts) == (OutboxState.IN_FLIGHT, "worker-1", 1)
    assert channel.deliveries == []

    # While the lease runs, another worker leaves the rows alone.
    assert outbox.dispatch(now=now + timedelta(seconds=60), worker_id="worker-2").claimed == 0

    later = now + timedelta(seconds=settings.ISPBILL_OUTBOX_LEASE_SECONDS + 1)
    result = outbox.dispatch(now=later, worker_id="worker-2")
    assert (result.claimed, result.done) == (2, 2)
    sms.refresh_from_db()
    email.refresh_from_db()
    sms_item.refresh_from_db()
    # The SMS may have gone out: not resent, left for staff.
    assert sms.status == "uncertain" and "not resent" in sms.error and sms.sent_at is None
    assert (sms_item.state, sms_item.attempts, sms_item.locked_by) == (OutboxState.DONE, 2, "worker-2")
    # The email never reached the provider, so the reclaim simply sends it.
    assert email.status == "sent"
    assert [(d.channel, d.message_id) for d in channel.deliveries] == [("email", email.pk)]

    # Nothing is retried later either.
    assert outbox.drain(now=later + timedelta(days=1)).claimed == 0
    assert [d.message_id for d in channel.deliveries] == [email.pk]
