"""The gateway is down while a payment is being confirmed: the attempt stays pending,
the worker's payment_requery job asks again, and the payment completes when the gateway
is back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ispbill.billing import ledger
from ispbill.notifications.models import Message
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt
from ispbill.worker import scheduler
from ispbill.worker.models import JobRun
from ispbill.worker.scheduler import Every

from .conftest import forward
from .pay_support import CONFIRMING, assert_paid_once, ipn, page_text, press, returned, start

pytestmark = pytest.mark.django_db


def run_requery(now) -> str:
    (job,) = [j for j in scheduler.jobs() if j.name == "payment_requery"]
    outcome = scheduler.run_job(job, now)
    assert outcome.ok, outcome.result
    return outcome.result


def test_the_job_is_registered_every_minute():
    (job,) = [j for j in scheduler.jobs() if j.name == "payment_requery"]
    assert job.schedule == Every(seconds=60)


def test_sslcommerz_down_during_ipn_and_return_then_back(client, world, sslcommerz, receiver, browser, fixed_clock):
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    sslcommerz.faults.set_down()

    by_ipn = forward(client, ipn(receiver))
    by_browser = returned(client, receiver, "/pay/sslcommerz/success")

    assert by_ipn.status_code == 503 and by_ipn.json()["outcome"] == "error"
    assert by_browser.status_code == 200 and CONFIRMING in page_text(by_browser)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "pending" and attempt.next_check_at <= fixed_clock.now()
    assert not Payment.objects.exists()

    # Still down at the next run: asked, not settled, asked again later.
    assert run_requery(fixed_clock.now()) == "1 re-queried: 1 still pending"
    attempt.refresh_from_db()
    assert attempt.status == "pending" and attempt.checks == 1
    assert attempt.next_check_at == fixed_clock.now() + timedelta(minutes=2)
    fixed_clock.advance(timedelta(minutes=1))
    assert run_requery(fixed_clock.now()) == "no attempts to re-query"  # not due yet

    sslcommerz.faults.set_down(False)
    fixed_clock.advance(timedelta(minutes=1))
    result = run_requery(fixed_clock.now())

    assert result == "1 re-queried: 1 completed"
    assert_paid_once(world.sub, gateway="sslcommerz")
    assert sorted(InboundWebhook.objects.values_list("outcome", flat=True)) == ["accepted", "duplicate"]
    assert JobRun.objects.get(name="payment_requery").last_result == result
    # Nothing left to do; another run changes nothing.
    assert run_requery(fixed_clock.now() + timedelta(minutes=5)) == "no attempts to re-query"
    assert Payment.objects.count() == 1


def test_bkash_down_when_the_customer_returns_then_back(client, world, bkash, receiver, browser, fixed_clock):
    url = start(client, world.token(), "bkash")
    press(browser, url, "Pay")
    bkash.faults.set_down()

    response = returned(client, receiver, "/pay/bkash/callback")

    assert CONFIRMING in page_text(response)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "pending" and "gateway_http_error" in attempt.last_error

    bkash.faults.set_down(False)
    assert run_requery(fixed_clock.now()) == "1 re-queried: 1 completed"

    # The stored "success" return was processed again: bKash executed the payment.
    payment = assert_paid_once(world.sub, gateway="bkash")
    assert bkash.payment(payment.gateway_reference)["transactionStatus"] == "Completed"
    assert InboundWebhook.objects.get().outcome == "accepted"


def test_pending_without_a_stored_return_is_queried(client, world, sslcommerz, receiver, browser, fixed_clock):
    """The IPN was lost and the browser never came back: once the attempt is pending,
    the query API (by tran_id) finds the payment."""
    url = start(client, world.token(), "sslcommerz")
    press(browser, url, "Pay")
    PaymentAttempt.objects.update(status="pending", next_check_at=fixed_clock.now())

    assert run_requery(fixed_clock.now()) == "1 re-queried: 1 completed"
    assert_paid_once(world.sub, gateway="sslcommerz")
    assert sslcommerz.calls("merchantTransIDvalidationAPI")
    assert not InboundWebhook.objects.exists()


def test_asking_stops_after_three_days(client, world, sslcommerz, receiver, fixed_clock):
    start(client, world.token(), "sslcommerz")  # never paid
    PaymentAttempt.objects.update(status="pending", next_check_at=fixed_clock.now())

    assert run_requery(fixed_clock.now()) == "1 re-queried: 1 still pending"
    fixed_clock.advance(timedelta(days=3))
    run_requery(fixed_clock.now())

    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "pending" and attempt.next_check_at is None
    assert attempt.last_error.startswith("stopped asking after 3 days")
    assert run_requery(fixed_clock.now() + timedelta(days=1)) == "no attempts to re-query"
    assert not Message.objects.filter(kind="receipt").exists()
    assert ledger.ledger_discrepancies() == []
