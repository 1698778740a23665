"""``ispbill tick --at``: every job once as of an instant, then the outbox."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from ispbill import cli
from ispbill.billing.models import Invoice
from ispbill.core import clock
from ispbill.plans import services as plan_services
from ispbill.subscribers import services as subscriber_services
from ispbill.worker.models import JobRun


@pytest.fixture(autouse=True)
def dhaka_zone(settings):
    settings.ISPBILL_TIME_ZONE = "Asia/Dhaka"


@pytest.fixture
def subscriber(db):
    package = plan_services.create_package(name="Home 20 Mbps", price=Decimal("1000"), rate_limit="20M/20M")
    return subscriber_services.create_subscriber(
        today=date(2026, 11, 1), name="Rahim Uddin", phone="01711000000", pppoe_username="rahim", package_id=package.pk,
    )


def tick(capsys, at: str) -> tuple[int, list[str], str]:
    code = cli.main(["tick", "--at", at])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def line(lines: list[str], prefix: str) -> str:
    [found] = [ln for ln in lines if ln.startswith(prefix)]
    return found


@pytest.mark.django_db
def test_tick_issues_the_december_invoice(subscriber, capsys):
    code, lines, _ = tick(capsys, "2026-11-01T00:10")
    assert code == 0
    assert line(lines, "billing_run:") == "billing_run: ok 2026-11-01: issued 1 invoices, applied 0 package changes"

    # 00:10 on Dec 1 in Dhaka is still Nov 30 in UTC: the ISP's date decides
    code, lines, _ = tick(capsys, "2026-12-01T00:10")

    assert code == 0
    assert line(lines, "billing_run:") == "billing_run: ok 2026-12-01: issued 1 invoices, applied 0 package changes"
    job_lines = [ln for ln in lines if not ln.startswith("outbox:")]
    assert job_lines and all(": ok " in ln for ln in job_lines), lines
    assert line(lines, "outbox:").startswith("outbox: ")
    december = Invoice.objects.get(subscriber=subscriber, period_start=date(2026, 12, 1))
    assert december.period_end == date(2026, 12, 31)
    assert december.issued_on == date(2026, 12, 1)
    assert december.issued_at == datetime(2026, 11, 30, 18, 10, tzinfo=UTC)
    assert december.total_paisa == 100000
    assert Invoice.objects.filter(subscriber=subscriber).count() == 2
    run = JobRun.objects.get(name="billing_run")
    assert (run.runs, run.last_as_of, run.last_error) == (2, datetime(2026, 11, 30, 18, 10, tzinfo=UTC), "")


@pytest.mark.django_db
def test_tick_twice_at_the_same_instant_issues_nothing_more(subscriber, capsys):
    tick(capsys, "2026-12-01T00:10+06:00")
    before = Invoice.objects.count()

    code, lines, _ = tick(capsys, "2026-12-01T00:10+06:00")

    assert code == 0
    assert line(lines, "billing_run:") == "billing_run: ok 2026-12-01: issued 0 invoices, applied 0 package changes"
    assert Invoice.objects.count() == before == 2  # November and December


@pytest.mark.django_db
def test_tick_leaves_the_process_clock_as_it_was(subscriber, capsys):
    before = clock.get_clock()
    tick(capsys, "2026-12-01T00:10")
    assert clock.get_clock() is before


@pytest.mark.django_db
def test_tick_with_a_bad_instant_exits_2_with_a_clear_message(subscriber, capsys):
    code, lines, err = tick(capsys, "garbage")

    assert code == 2
    assert lines == []
    assert "error: --at 'garbage' is not an ISO-8601 date-time" in err
    assert not JobRun.objects.exists()
    assert not Invoice.objects.exists()
