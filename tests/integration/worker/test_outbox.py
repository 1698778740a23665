"""The outbox on the test database (SQLite and PostgreSQL): enqueue, dispatch, retries,
dead rows, lease reclaim and the stale-worker guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from ispbill.worker import outbox
from ispbill.worker.models import OutboxItem, OutboxState

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)


@pytest.fixture(autouse=True)
def outbox_settings(settings):
    settings.ISPBILL_OUTBOX_LEASE_SECONDS = 120
    settings.ISPBILL_OUTBOX_MAX_ATTEMPTS = 8
    settings.ISPBILL_OUTBOX_BACKOFF_BASE = 30
    settings.ISPBILL_OUTBOX_BACKOFF_MAX = 3600
    return settings


def put(topic: str, key: str, payload: dict | None = None, **options) -> OutboxItem:
    """Enqueue one item in its own transaction and return the row."""
    with transaction.atomic():
        assert outbox.enqueue(topic=topic, dedupe_key=key, payload=payload or {}, now=options.pop("now", NOW), **options)
    return OutboxItem.objects.get(dedupe_key=key)


def reload(item: OutboxItem) -> OutboxItem:
    return OutboxItem.objects.get(pk=item.pk)


# -- enqueue ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_enqueue_is_idempotent_by_dedupe_key():
    with transaction.atomic():
        first = outbox.enqueue(topic="test.sms", dedupe_key="inv-1:reminder:sms", payload={"n": 1}, now=NOW)
        second = outbox.enqueue(topic="test.sms", dedupe_key="inv-1:reminder:sms", payload={"n": 2}, now=NOW)
        # the duplicate did not break the surrounding transaction
        assert OutboxItem.objects.count() == 1
    assert (first, second) == (True, False)
    row = OutboxItem.objects.get()
    assert row.payload == {"n": 1}
    assert row.state == OutboxState.PENDING
    assert row.attempts == 0
    assert row.next_attempt_at == NOW


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_a_transaction_raises():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        outbox.enqueue(topic="test.sms", dedupe_key="k", payload={}, now=NOW)
    assert not OutboxItem.objects.exists()


@pytest.mark.django_db
def test_rolled_back_transaction_leaves_no_intent():
    with pytest.raises(ZeroDivisionError):
        with transaction.atomic():
            outbox.enqueue(topic="test.sms", dedupe_key="k", payload={}, now=NOW)
            1 / 0
    assert not OutboxItem.objects.exists()


# -- success ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_registered_handler_runs_once_and_row_becomes_done(recording_handler):
    sms = recording_handler("test.sms")
    item = put("test.sms", "k1", {"to": "+8801711000000"})

    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.done, result.retried, result.dead) == (1, 1, 0, 0)
    assert len(sms.calls) == 1
    call = sms.calls[0]
    assert call.item_id == item.pk
    assert call.payload == {"to": "+8801711000000"}
    assert (call.attempt.number, call.attempt.reclaimed, call.attempt.worker_id, call.attempt.now) == (1, False, "w1", NOW)
    row = reload(item)
    assert row.state == OutboxState.DONE
    assert row.attempts == 1
    assert row.finished_at == NOW
    assert row.locked_until is None
    assert row.last_error == ""

    # nothing is ready any more, even much later
    assert outbox.dispatch(now=NOW + timedelta(days=1), worker_id="w1").claimed == 0
    assert len(sms.calls) == 1


@pytest.mark.django_db
def test_item_waits_until_available_at(recording_handler):
    sms = recording_handler("test.sms")
    put("test.sms", "k1", available_at=NOW + timedelta(minutes=10))

    assert outbox.dispatch(now=NOW + timedelta(minutes=9, seconds=59), worker_id="w1").claimed == 0
    assert outbox.dispatch(now=NOW + timedelta(minutes=10), worker_id="w1").done == 1
    assert len(sms.calls) == 1


@pytest.mark.django_db
def test_dispatch_only_takes_the_requested_topics_and_ids(recording_handler):
    sms = recording_handler("test.sms")
    mail = recording_handler("test.mail")
    a = put("test.sms", "a")
    b = put("test.sms", "b")
    c = put("test.mail", "c")

    assert outbox.dispatch(now=NOW, worker_id="w1", topics=["test.mail"]).done == 1
    assert mail.item_ids == [c.pk] and sms.calls == []
    assert outbox.dispatch(now=NOW, worker_id="w1", ids=[b.pk]).done == 1
    assert sms.item_ids == [b.pk]
    assert reload(a).state == OutboxState.PENDING


@pytest.mark.django_db
def test_dispatch_after_commit_performs_the_items_once_committed(recording_handler, django_capture_on_commit_callbacks):
    sms = recording_handler("test.sms")
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            outbox.enqueue(topic="test.sms", dedupe_key="k1", payload={}, now=NOW)
            item = OutboxItem.objects.get(dedupe_key="k1")
            outbox.dispatch_after_commit([item.pk], now_fn=lambda: NOW)
            assert sms.calls == []  # not before the commit
    assert sms.item_ids == [item.pk]
    assert reload(item).state == OutboxState.DONE


# -- temporary failures -----------------------------------------------------------------

@pytest.mark.django_db
def test_failure_is_retried_with_exponential_backoff(recording_handler, outbox_settings):
    outbox_settings.ISPBILL_OUTBOX_BACKOFF_MAX = 200
    sms = recording_handler("test.sms", default=ConnectionError("sms provider unreachable"))
    item = put("test.sms", "k1", max_attempts=10)

    at = NOW
    delays = []
    for attempt in range(1, 6):
        # not ready a second early
        assert outbox.dispatch(now=at - timedelta(seconds=1), worker_id="w1").claimed == 0
        result = outbox.dispatch(now=at, worker_id="w1")
        assert (result.claimed, result.retried) == (1, 1)
        row = reload(item)
        assert row.state == OutboxState.PENDING
        assert row.attempts == attempt
        assert row.locked_until is None
        assert row.finished_at is None
        assert row.last_error == "ConnectionError: sms provider unreachable"
        delay = (row.next_attempt_at - at).total_seconds()
        assert delay > 0
        delays.append(delay)
        at = row.next_attempt_at

    assert len(sms.calls) == 5
    assert [c.attempt.number for c in sms.calls] == [1, 2, 3, 4, 5]
    # 30 s doubling per attempt, capped at 200 s, each within ±10 % jitter
    for delay, nominal in zip(delays, [30, 60, 120, 200, 200]):
        assert nominal * 0.9 - 1 <= delay <= nominal * 1.1, (delays, nominal)
    assert delays[0] < delays[1] < delays[2]


@pytest.mark.django_db
def test_after_max_attempts_the_row_is_dead_with_the_reason(recording_handler):
    sms = recording_handler("test.sms", default=TimeoutError("provider timed out"))
    item = put("test.sms", "k1", max_attempts=3)

    at = NOW
    states = []
    for _ in range(3):
        outbox.dispatch(now=at, worker_id="w1")
        row = reload(item)
        states.append(row.state)
        at = row.next_attempt_at

    assert states == [OutboxState.PENDING, OutboxState.PENDING, OutboxState.DEAD]
    assert row.attempts == 3
    assert row.last_error == "gave up after 3 attempts: TimeoutError: provider timed out"
    assert row.finished_at is not None
    assert row.locked_until is None
    assert outbox.dispatch(now=at + timedelta(days=30), worker_id="w1").claimed == 0
    assert len(sms.calls) == 3


@pytest.mark.django_db
def test_max_attempts_defaults_to_the_setting(recording_handler, outbox_settings):
    outbox_settings.ISPBILL_OUTBOX_MAX_ATTEMPTS = 2
    recording_handler("test.sms", default=OSError("down"))
    item = put("test.sms", "k1")
    assert item.max_attempts == 2
    outbox.dispatch(now=NOW, worker_id="w1")
    result = outbox.dispatch(now=reload(item).next_attempt_at, worker_id="w1")
    assert result.dead == 1
    assert reload(item).state == OutboxState.DEAD


@pytest.mark.django_db
def test_permanent_failure_is_dead_at_once(recording_handler):
    sms = recording_handler("test.sms", default=outbox.PermanentFailure("+8801 is not a mobile number"))
    item = put("test.sms", "k1")

    result = outbox.dispatch(now=NOW, worker_id="w1")

    assert (result.claimed, result.dead) == (1, 1)
    row = reload(item)
    assert row.state == OutboxState.DEAD
    assert row.attempts == 1
    assert row.last_error == "+8801 is not a mobile number"
    assert row.finished_at == NOW
    assert outbox.dispatch(now=NOW + timedelta(days=1), worker_id="w1").claimed == 0
    assert len(sms.calls) == 1


@pytest.mark.django_db
def test_item_without_a_handler_is_dead_with_the_reason():
    item = put("test.nobody-handles-this", "k1")
    assert outbox.dispatch(now=NOW, worker_id="w1").dead == 1
    row = reload(item)
    assert row.state == OutboxState.DEAD
    assert "no handler registered for topic 'test.nobody-handles-this'" in row.last_error


@pytest.mark.django_db
def test_retry_later_after_seconds_is_respected(recording_handler):
    sms = recording_handler("test.sms", outcomes=[outbox.RetryLater("quiet hours", after_seconds=900), None])
    item = put("test.sms", "k1")

    assert outbox.dispatch(now=NOW, worker_id="w1").retried == 1
    row = reload(item)
    assert row.state == OutboxState.PENDING
    assert row.next_attempt_at == NOW + timedelta(seconds=900)
    assert row.last_error == "RetryLater: quiet hours"

    assert outbox.dispatch(now=NOW + timedelta(seconds=899), worker_id="w1").claimed == 0
    assert outbox.dispatch(now=NOW + timedelta(seconds=900), worker_id="w1").done == 1
    assert reload(item).state == OutboxState.DONE
    assert [c.attempt.number for c in sms.calls] == [1, 2]


@pytest.mark.django_db
def test_a_deliberate_hold_does_not_count_against_max_attempts(recording_handler):
    hold = outbox.RetryLater("quiet hours", after_seconds=3600, count_attempt=False)
    sms = recording_handler("test.sms", outcomes=[hold, hold, hold, None])
    item = put("test.sms", "k1", max_attempts=1)

    at = NOW
    for _ in range(3):
        assert outbox.dispatch(now=at, worker_id="w1").retried == 1
        row = reload(item)
        assert (row.state, row.attempts) == (OutboxState.PENDING, 0)
        assert row.next_attempt_at == at + timedelta(seconds=3600)
        at = row.next_attempt_at

    assert outbox.dispatch(now=at, worker_id="w1").done == 1
    assert reload(item).state == OutboxState.DONE
    assert [c.attempt.number for c in sms.calls] == [1, 1, 1, 1]


# -- crashed workers --------------------------------------------------------------------

@pytest.mark.django_db
def test_row_of_a_dead_worker_is_reclaimed_after_its_lease(recording_handler):
    sms = recording_handler("test.sms")
    item = put("test.sms", "k1")
    # worker "crashed" claims the row and dies before recording any outcome
    [(claimed, reclaimed)] = outbox.claim(now=NOW, worker_id="crashed")
    assert (claimed.pk, reclaimed) == (item.pk, False)
    row = reload(item)
    assert (row.state, row.locked_by, row.locked_until) == (OutboxState.IN_FLIGHT, "crashed", NOW + LEASE)

    # while the lease lasts nobody else takes it
    assert outbox.dispatch(now=NOW + LEASE, worker_id="w2").claimed == 0
    assert sms.calls == []

    result = outbox.dispatch(now=NOW + LEASE + timedelta(seconds=1), worker_id="w2")

    assert result.done == 1
    [call] = sms.calls
    assert call.attempt.reclaimed is True
    assert call.attempt.number == 2
    assert call.attempt.worker_id == "w2"
    row = reload(item)
    assert (row.state, row.locked_by, row.attempts) == (OutboxState.DONE, "w2", 2)


@pytest.mark.django_db
def test_an_item_whose_every_attempt_killed_its_worker_is_dead_without_another_run(recording_handler):
    sms = recording_handler("test.sms")
    item = put("test.sms", "poison", max_attempts=2)
    # two workers in turn claim it and die before recording anything
    outbox.claim(now=NOW, worker_id="crashed-1")
    outbox.claim(now=NOW + LEASE + timedelta(seconds=1), worker_id="crashed-2")

    later = NOW + 2 * LEASE + timedelta(seconds=2)
    result = outbox.dispatch(now=later, worker_id="w3")

    assert (result.claimed, result.dead) == (1, 1)
    assert sms.calls == []
    row = reload(item)
    assert row.state == OutboxState.DEAD
    assert row.last_error == "gave up after 2 attempts: the last one stopped without recording an outcome"
    assert row.finished_at == later


@pytest.mark.django_db
def test_stale_worker_cannot_overwrite_the_outcome_after_reclaim(recording_handler):
    sms = recording_handler("test.sms", outcomes=[None, ConnectionError("late failure")])
    item = put("test.sms", "k1")
    [(stale_copy, _)] = outbox.claim(now=NOW, worker_id="slow")

    # the lease runs out; another worker reclaims the row and succeeds
    later = NOW + LEASE + timedelta(seconds=1)
    assert outbox.dispatch(now=later, worker_id="fast").done == 1

    # the slow worker finally finishes its (failed) attempt: it must not record it
    state = outbox.perform(stale_copy, reclaimed=False, now=later + timedelta(seconds=5), worker_id="slow")

    assert state == outbox.STALE
    row = reload(item)
    assert row.state == OutboxState.DONE
    assert row.locked_by == "fast"
    assert row.last_error == ""
    assert row.finished_at == later
    assert row.attempts == 2
    assert len(sms.calls) == 2


@pytest.mark.django_db
def test_stale_worker_cannot_finish_a_row_another_worker_holds(recording_handler):
    sms = recording_handler("test.sms", outcomes=[None, None])
    item = put("test.sms", "k1")
    [(stale_copy, _)] = outbox.claim(now=NOW, worker_id="slow")
    later = NOW + LEASE + timedelta(seconds=1)
    [(fresh_copy, reclaimed)] = outbox.claim(now=later, worker_id="fast")
    assert reclaimed is True

    # the slow worker succeeds while "fast" holds the lease: the row stays fast's
    assert outbox.perform(stale_copy, reclaimed=False, now=later, worker_id="slow") == outbox.STALE
    row = reload(item)
    assert (row.state, row.locked_by, row.locked_until) == (OutboxState.IN_FLIGHT, "fast", later + LEASE)

    assert outbox.perform(fresh_copy, reclaimed=True, now=later, worker_id="fast") == OutboxState.DONE
    row = reload(item)
    assert (row.state, row.locked_by, row.attempts) == (OutboxState.DONE, "fast", 2)
    assert len(sms.calls) == 2


@pytest.mark.django_db
def test_dispatch_counts_a_stale_outcome_apart(recording_handler):
    """A worker whose batch outlived its lease reports the lost outcome as stale,
    not as done (the row belongs to whoever reclaimed it)."""
    item = put("test.sms", "k1")

    def reclaim_meanwhile(call):
        # while this worker performs, its lease expires and "fast" reclaims the row
        if call.attempt.worker_id == "slow":
            outbox.claim(now=NOW + LEASE + timedelta(seconds=1), worker_id="fast")

    recording_handler("test.sms", before=reclaim_meanwhile)
    result = outbox.dispatch(now=NOW, worker_id="slow")

    assert (result.claimed, result.done, result.stale) == (1, 0, 1)
    row = reload(item)
    assert (row.state, row.locked_by) == (OutboxState.IN_FLIGHT, "fast")


# -- drain ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_drain_stops_when_only_future_retries_remain(recording_handler):
    ok = recording_handler("test.ok")
    failing = recording_handler("test.failing", default=ConnectionError("down"))
    for i in range(3):
        put("test.ok", f"ok-{i}")
    bad = put("test.failing", "bad")

    result = outbox.drain(now=NOW, worker_id="w1")

    assert (result.claimed, result.done, result.retried, result.dead) == (4, 3, 1, 0)
    assert len(ok.calls) == 3
    assert len(failing.calls) == 1  # tried once, not spun on
    row = reload(bad)
    assert row.state == OutboxState.PENDING and row.next_attempt_at > NOW


@pytest.mark.django_db
def test_drain_tries_every_ready_row_even_when_a_whole_batch_fails(recording_handler):
    failing = recording_handler("test.failing", default=ConnectionError("down"))
    with transaction.atomic():
        for i in range(250):  # more than one dispatch batch (200)
            outbox.enqueue(topic="test.failing", dedupe_key=f"k{i}", payload={}, now=NOW)

    result = outbox.drain(now=NOW, worker_id="w1")

    assert (result.claimed, result.retried) == (250, 250)
    assert len(failing.calls) == 250
    assert len(set(failing.item_ids)) == 250
    assert not OutboxItem.objects.filter(next_attempt_at__lte=NOW).exists()


@pytest.mark.django_db
def test_drain_with_nothing_ready_claims_nothing():
    put("test.sms", "later", available_at=NOW + timedelta(hours=1))
    result = outbox.drain(now=NOW, worker_id="w1")
    assert result.claimed == 0


def test_backoff_grows_exponentially_within_jitter(settings):
    settings.ISPBILL_OUTBOX_BACKOFF_BASE = 30
    settings.ISPBILL_OUTBOX_BACKOFF_MAX = 3600
    for attempts, nominal in [(1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (20, 3600)]:
        for _ in range(50):
            assert nominal * 0.9 - 1 <= outbox.backoff_seconds(attempts) <= nominal * 1.1
