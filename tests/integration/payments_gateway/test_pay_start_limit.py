"""The limit on starting payments from a payment link: POST /pay/<token>/start against
the bKash simulator, with the clock moved by the test (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from ispbill.payments import gateway_services
from ispbill.payments.models import InboundWebhook, PaymentAttempt
from ispbill.portal import limits

from ..billing.billing_support import bill
from .conftest import NOV_1
from .pay_support import page_text, start

pytestmark = pytest.mark.django_db

WAIT = "Please wait a little"
STILL_OPEN = "If the bKash payment page you opened a moment ago is still open, you can finish paying there."


def post_start(client, token: str, gateway: str = "bkash"):
    return client.post(f"/pay/{token}/start", {"gateway": gateway})


def start_times(client, token: str, clock, n: int, every: timedelta) -> None:
    """``n`` starts that succeed, ``every`` apart (the clock ends ``every`` after the last)."""
    for _ in range(n):
        start(client, token, "bkash")
        clock.advance(every)


def assert_refused(response, retry_after: int):
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert response["Retry-After"] == str(retry_after)
    assert response["Referrer-Policy"] == "no-referrer" and response["X-Robots-Tag"] == "noindex"
    assert "no-store" in response["Cache-Control"]
    assert WAIT in page_text(response)


def test_the_sixth_start_in_ten_minutes_is_refused_until_the_first_leaves_the_window(
    client, world, bkash, fixed_clock, caplog,
):
    token = world.token()
    t0 = fixed_clock.now()
    start_times(client, token, fixed_clock, 5, timedelta(minutes=1))  # t0 … t0+4m; now t0+5m
    gateway_calls, sessions = len(bkash.requests), len(bkash.payments)
    caplog.set_level(logging.INFO, logger="ispbill.portal")

    response = post_start(client, token)

    assert_refused(response, retry_after=300)  # the t0 attempt leaves at t0+10m
    assert "Please try again in 5 minutes." in page_text(response)
    assert f'href="/pay/{token}"' in page_text(response)
    # Nothing stored, nothing asked of the gateway.
    assert PaymentAttempt.objects.count() == 5 and not InboundWebhook.objects.exists()
    assert (len(bkash.requests), len(bkash.payments)) == (gateway_calls, sessions)
    # Operators see the refusal, with the subscriber and never the token.
    (record,) = [r for r in caplog.records if r.name == "ispbill.portal"]
    assert record.levelno == logging.INFO
    assert f"subscriber {world.sub.pk}:" in record.getMessage() and "limit 5/10m" in record.getMessage()
    assert not [r for r in caplog.records if r.name.startswith("ispbill") and token in r.getMessage()]

    # The payment page itself still opens.
    assert client.get(f"/pay/{token}").status_code == 200

    fixed_clock.set(t0 + timedelta(minutes=10) - timedelta(seconds=1))
    assert_refused(post_start(client, token), retry_after=1)
    fixed_clock.set(t0 + timedelta(minutes=10))  # the first attempt has left the window
    start(client, token, "bkash")
    assert PaymentAttempt.objects.count() == 6 and len(bkash.payments) == sessions + 1
    # Full again: now the t0+1m attempt has to leave first.
    assert_refused(post_start(client, token), retry_after=60)
    assert "Please try again in 1 minute." in page_text(post_start(client, token))


def test_the_start_is_refused_inside_the_transaction_that_would_store_it(world, bkash, fixed_clock, settings):
    settings.ISPBILL_PAY_START_LIMIT = "3/10m"
    now = fixed_clock.now()

    def start_at_the_gateway():
        admit = functools.partial(limits.admit_start, subscriber_id=world.sub.pk, gateway="bkash", now=now)
        return gateway_services.start_gateway_payment(subscriber_id=world.sub.pk, gateway="bkash", now=now, admit=admit)

    for _ in range(3):
        start_at_the_gateway()
    sessions = len(bkash.payments)

    with pytest.raises(limits.TooManyStarts) as refused:
        start_at_the_gateway()

    assert (refused.value.status, refused.value.code) == (429, "too_many_starts")
    assert (refused.value.refused.retry_after, str(refused.value.refused.limit)) == (600, "3/10m")
    assert PaymentAttempt.objects.count() == 3 and len(bkash.payments) == sessions


def test_twenty_starts_a_day(client, world, bkash, fixed_clock):
    token = world.token()
    t0 = fixed_clock.now()
    start_times(client, token, fixed_clock, 20, timedelta(minutes=3))  # never 5 within 10 minutes
    assert PaymentAttempt.objects.count() == 20
    sessions = len(bkash.payments)

    fixed_clock.set(t0 + timedelta(hours=3))
    response = post_start(client, token)
    assert_refused(response, retry_after=21 * 3600)
    assert "Please try again in about 21 hours." in page_text(response)

    fixed_clock.set(t0 + timedelta(days=1) - timedelta(minutes=1))
    response = post_start(client, token)
    assert_refused(response, retry_after=60)
    fixed_clock.set(t0 + timedelta(days=1))
    start(client, token, "bkash")
    assert len(bkash.payments) == sessions + 1
    assert PaymentAttempt.objects.count() == 21


def test_starts_of_every_outcome_count_and_an_open_one_is_pointed_to(client, world, bkash, fixed_clock):
    token = world.token()
    start_times(client, token, fixed_clock, 5, timedelta(seconds=10))

    # The customer's bKash pages may still be open: say so (their address is not stored).
    response = post_start(client, token)
    assert_refused(response, retry_after=600 - 50)
    assert STILL_OPEN in page_text(response)
    assert "bkash.com" not in page_text(response) and bkash.base_url not in page_text(response)

    # Another method: nothing of it is open.
    assert STILL_OPEN not in page_text(post_start(client, token, "nagad"))
    assert "bKash" not in page_text(post_start(client, token, "nagad"))

    # Failed and cancelled starts opened gateway sessions too: they still count.
    PaymentAttempt.objects.update(status="failed")
    response = post_start(client, token)
    assert_refused(response, retry_after=600 - 50)
    assert STILL_OPEN not in page_text(response)


def test_the_limit_is_per_subscriber(client, world, bkash, fixed_clock):
    start_times(client, world.token(), fixed_clock, 5, timedelta(seconds=1))
    assert post_start(client, world.token()).status_code == 429

    other = world.subscriber()
    bill(NOV_1)
    start(client, world.token(other), "bkash")
    assert PaymentAttempt.objects.filter(subscriber=other).count() == 1


def test_the_limits_are_configurable(client, world, bkash, fixed_clock, settings):
    settings.ISPBILL_PAY_START_LIMIT = "2/1h"
    token = world.token()
    start_times(client, token, fixed_clock, 2, timedelta(minutes=20))  # now t0+40m
    assert_refused(post_start(client, token), retry_after=20 * 60)

    settings.ISPBILL_PAY_START_LIMIT = " 3/1h , 10/30d "
    start(client, token, "bkash")
    assert_refused(post_start(client, token), retry_after=20 * 60)


def test_the_page_in_bangla(client, world, bkash, fixed_clock, settings):
    settings.ISPBILL_PAY_START_LIMIT = "1/1h"
    token = world.token()
    start(client, token, "bkash")

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "bn"
    response = post_start(client, token)
    html = page_text(response)
    assert response.status_code == 429 and response["Retry-After"] == "3600"
    assert '<html lang="bn">' in html
    for bangla in (
        "একটু অপেক্ষা করুন",
        "অনুগ্রহ করে 60 মিনিট পরে আবার চেষ্টা করুন।",
        "একটু আগে খোলা bKash পেমেন্ট পেজটি যদি এখনও খোলা থাকে, সেখানেই পেমেন্ট শেষ করতে পারেন।",
        "আপনার বিলে ফিরে যান",
    ):
        assert bangla in html
    for english in (WAIT, "Please try again", "If you have already paid", "Back to your bill"):
        assert english not in html

    # The browser's language decides when there is no cookie; English by default.
    del client.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert "একটু অপেক্ষা করুন" in page_text(client.post(f"/pay/{token}/start", {"gateway": "bkash"},
                                                          headers={"accept-language": "bn"}))
    english = page_text(post_start(client, token))
    assert '<html lang="en">' in english and WAIT in english and "একটু" not in english


def test_the_other_portal_pages_still_say_english(client, world, fixed_clock):
    assert '<html lang="en">' in page_text(client.get(f"/pay/{world.token()}", headers={"accept-language": "bn"}))


def test_a_bad_limit_is_refused_naming_the_variable(client, world, bkash, fixed_clock, settings):
    settings.ISPBILL_PAY_START_LIMIT = "5/10x"
    with pytest.raises(ImproperlyConfigured, match=r"ISPBILL_PAY_START_LIMIT='5/10x': '5/10x' is not <starts>/<window>"):
        post_start(client, world.token())
    assert not PaymentAttempt.objects.exists() and not bkash.payments


def test_a_bad_limit_stops_the_application_starting():
    env = {**os.environ, "ISPBILL_PAY_START_LIMIT": "0/10m", "DJANGO_SETTINGS_MODULE": "ispbill.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "django.core.exceptions.ImproperlyConfigured: "
        "ISPBILL_PAY_START_LIMIT='0/10m': '0/10m': the number of starts must be at least 1"
    ), last


def test_the_default_is_used_when_the_variable_is_blank(client, world, bkash, fixed_clock, settings):
    settings.ISPBILL_PAY_START_LIMIT = "  "
    token = world.token()
    start_times(client, token, fixed_clock, 5, timedelta(0))
    assert_refused(post_start(client, token), retry_after=600)
