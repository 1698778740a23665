"""Periodic jobs: when Daily and Every are due (in the ISP's zone), and what
run_due_jobs records in JobRun."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ispbill.worker import scheduler
from ispbill.worker.models import JobRun
from ispbill.worker.scheduler import Daily, Every

DHAKA = ZoneInfo("Asia/Dhaka")


def dhaka(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant given as Dhaka wall time in 2026 (UTC+6), as the worker sees it: aware UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=DHAKA).astimezone(UTC)


@pytest.fixture(autouse=True)
def dhaka_zone(settings):
    settings.ISPBILL_TIME_ZONE = "Asia/Dhaka"


@pytest.fixture
def register_job():
    """Register test jobs for one test only."""
    names: list[str] = []

    def register(name: str, schedule, fn, *, order: int = 100):
        scheduler.job(name, schedule, order=order)(fn)
        names.append(name)
        return fn

    yield register
    for name in names:
        scheduler.unregister(name)


class Recorder:
    """A job that records the instants it ran as of, or fails while ``error`` is set."""

    def __init__(self, result: str = "ok", error: Exception | None = None):
        self.result = result
        self.error = error
        self.ran: list[datetime] = []

    def __call__(self, now: datetime) -> str:
        self.ran.append(now)
        if self.error is not None:
            raise self.error
        return self.result


# -- due rules --------------------------------------------------------------------------

DAILY = Daily(at=time(0, 5))


@pytest.mark.parametrize(
    "last_as_of, now, due",
    [
        # never ran: due from 00:05 local
        (None, dhaka(11, 30, 0, 4), False),
        (None, dhaka(11, 30, 0, 5), True),
        # ran at 00:05 today: not again today, even late in the evening
        (dhaka(11, 30, 0, 5), dhaka(11, 30, 23, 30), False),
        (dhaka(11, 30, 0, 5), dhaka(11, 30, 23, 59), False),
        # the next local day, but before 00:05: not yet
        (dhaka(11, 30, 0, 5), dhaka(12, 1, 0, 0), False),
        (dhaka(11, 30, 0, 5), dhaka(12, 1, 0, 4), False),
        (dhaka(11, 30, 0, 5), dhaka(12, 1, 0, 5), True),
        # ran late in the evening (a tick at 23:30): next day's run is still due at 00:05
        (dhaka(11, 30, 23, 30), dhaka(12, 1, 0, 5), True),
        # the worker was down for days: one run on start-up, whatever the hour
        (dhaka(11, 27, 0, 5), dhaka(11, 30, 10, 0), True),
        (dhaka(11, 27, 0, 5), dhaka(11, 30, 23, 59), True),
    ],
)
def test_daily_is_due_by_the_isp_calendar(last_as_of, now, due):
    assert DAILY.is_due(last_as_of, now) is due


def test_daily_uses_the_isp_zone_not_utc():
    # 2026-11-30 23:30 in Dhaka is 17:30 UTC on the 30th; the last run (00:05 Dhaka on
    # the 30th) was 18:05 UTC on the 29th. By UTC dates it would look like a new day.
    last, now = dhaka(11, 30, 0, 5), dhaka(11, 30, 23, 30)
    assert last.date() != now.date()
    assert DAILY.is_due(last, now) is False
    # and 00:05 in Dhaka on Dec 1 is still Nov 30 in UTC, yet a new ISP day
    assert dhaka(12, 1, 0, 5).date().day == 30
    assert DAILY.is_due(last, dhaka(12, 1, 0, 5)) is True


def test_every_is_due_after_its_interval():
    every = Every(seconds=300)
    t = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert every.is_due(None, t) is True
    assert every.is_due(t, t + timedelta(seconds=299)) is False
    assert every.is_due(t, t + timedelta(seconds=300)) is True


# -- run_due_jobs -----------------------------------------------------------------------

def only_test_jobs(outcomes):
    return [(o.name, o.ok, o.result) for o in outcomes if o.name.startswith("test.")]


@pytest.mark.django_db
def test_daily_job_runs_once_per_isp_day_and_catches_up_once(register_job):
    job = register_job("test.daily", DAILY, Recorder("billed"))

    for now, expect_run in [
        (dhaka(11, 30, 0, 4), False),
        (dhaka(11, 30, 0, 5), True),
        (dhaka(11, 30, 12, 0), False),
        (dhaka(11, 30, 23, 30), False),
        (dhaka(12, 1, 0, 4), False),
        (dhaka(12, 1, 0, 5), True),
        (dhaka(12, 1, 0, 6), False),
        # down from Dec 1 to Dec 4 (restarted at 09:00): the missed run happens once
        (dhaka(12, 4, 9, 0), True),
        (dhaka(12, 4, 9, 1), False),
    ]:
        outcomes = scheduler.run_due_jobs(now)
        assert only_test_jobs(outcomes) == ([("test.daily", True, "billed")] if expect_run else []), now

    assert job.ran == [dhaka(11, 30, 0, 5), dhaka(12, 1, 0, 5), dhaka(12, 4, 9, 0)]
    run = JobRun.objects.get(name="test.daily")
    assert run.runs == 3
    assert run.last_as_of == dhaka(12, 4, 9, 0)
    assert run.last_started_at == run.last_finished_at == dhaka(12, 4, 9, 0)
    assert run.last_result == "billed"
    assert run.last_error == ""


@pytest.mark.django_db
def test_run_due_jobs_records_runs_and_last_as_of(register_job):
    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    job = register_job("test.every", Every(seconds=60), Recorder("3 routers reconciled"))

    scheduler.run_due_jobs(t0)
    scheduler.run_due_jobs(t0 + timedelta(seconds=30))  # not due
    scheduler.run_due_jobs(t0 + timedelta(seconds=60))

    assert job.ran == [t0, t0 + timedelta(seconds=60)]
    run = JobRun.objects.get(name="test.every")
    assert (run.runs, run.last_as_of, run.last_result) == (2, t0 + timedelta(seconds=60), "3 routers reconciled")


@pytest.mark.django_db
def test_failing_job_records_its_error_and_the_others_still_run(register_job):
    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    broken = register_job("test.broken", Every(seconds=60), Recorder(error=RuntimeError("router unreachable")), order=1)
    after = register_job("test.after", Every(seconds=60), Recorder("fine"), order=2)

    outcomes = scheduler.run_due_jobs(t0)

    assert only_test_jobs(outcomes) == [
        ("test.broken", False, "RuntimeError: router unreachable"),
        ("test.after", True, "fine"),
    ]
    failed = JobRun.objects.get(name="test.broken")
    assert failed.last_error == "RuntimeError: router unreachable"
    assert (failed.runs, failed.last_as_of, failed.last_finished_at) == (0, None, None)
    assert failed.last_started_at == t0
    ok = JobRun.objects.get(name="test.after")
    assert (ok.runs, ok.last_as_of, ok.last_error) == (1, t0, "")

    # a failed job stays due but rests for FAILED_JOB_PAUSE instead of failing on every loop
    broken.error = None
    assert only_test_jobs(scheduler.run_due_jobs(t0 + timedelta(seconds=5))) == []
    assert len(broken.ran) == 1
    # after the pause it is tried again; once it succeeds its error is cleared
    t1 = t0 + scheduler.FAILED_JOB_PAUSE + timedelta(seconds=1)
    assert only_test_jobs(scheduler.run_due_jobs(t1)) == [("test.broken", True, "ok"), ("test.after", True, "fine")]
    fixed = JobRun.objects.get(name="test.broken")
    assert (fixed.runs, fixed.last_as_of, fixed.last_error) == (1, t1, "")
    assert len(broken.ran) == 2 and len(after.ran) == 2


@pytest.mark.django_db
def test_failure_after_success_keeps_the_last_good_run(register_job):
    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    job = register_job("test.flaky", Every(seconds=60), Recorder("good"))
    scheduler.run_due_jobs(t0)
    job.error = ConnectionError("sms provider down")

    scheduler.run_due_jobs(t0 + timedelta(seconds=60))

    run = JobRun.objects.get(name="test.flaky")
    assert (run.runs, run.last_as_of, run.last_result) == (1, t0, "good")
    assert run.last_error == "ConnectionError: sms provider down"
    assert run.last_started_at == t0 + timedelta(seconds=60)


@pytest.mark.django_db
def test_jobs_run_in_order_and_force_runs_every_job(register_job):
    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    calls = []
    register_job("test.second", Every(seconds=3600), lambda now: calls.append("second") or "", order=20)
    register_job("test.first", Every(seconds=3600), lambda now: calls.append("first") or "", order=5)

    scheduler.run_due_jobs(t0)
    scheduler.run_due_jobs(t0 + timedelta(seconds=1))  # neither due
    forced = scheduler.run_due_jobs(t0 + timedelta(seconds=2), force=True)

    assert calls == ["first", "second", "first", "second"]
    names = [o.name for o in forced]
    assert "billing_run" in names  # the real jobs are registered too
    assert names.index("test.first") < names.index("test.second")
