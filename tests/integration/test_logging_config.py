"""settings.LOGGING: the payment-link filter changes the token in what Django and ispbill
log, and nothing else: the same messages and tracebacks reach the same handlers, in the
same form, as with Django's own logging defaults and ispbill's console without the filter.
Each configuration runs in a fresh process (configuring logging is global)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from urllib.parse import quote, quote_plus

import pytest
from django.test import Client, override_settings
from django.urls import path
from django.utils.log import AdminEmailHandler

from ispbill.core.logs import RedactingFilter

TOKEN = "WzcsNDJd:1xWO6X:yboRaVUQQG3hXDcGW_gvRk59RpYXwb_eu1Hb_LBfvhU"

# (logger, level, message, args, status code[, message of the exception being handled])
# as Django's request handling, CSRF middleware and runserver log them, and as an ispbill
# module might.
RECORDS = [
    ("django.request", "WARNING", "%s: %s", ["Not Found", f"/pay/{TOKEN}"], 404),
    ("django.request", "WARNING", "%s: %s", ["Too Many Requests", f"/pay/{TOKEN}/start"], 429),
    ("django.request", "WARNING", "%s: %s", ["Not Found", "/office/nothing"], 404),
    ("django.request", "WARNING", "%s (%s): %s", ["Method Not Allowed", "GET", "/pay/sslcommerz/success"], 405),
    ("django.security.csrf", "WARNING", "Forbidden (%s): %s", ["CSRF cookie not set.", f"/pay/{TOKEN}/start"], 403),
    ("django.server", "INFO", '"%s" %s %s', [f"GET /pay/{TOKEN} HTTP/1.1", "200", "5120"], 200),
    ("django.server", "WARNING", '"%s" %s %s', ["GET /pay/bkash/callback?paymentID=TR0011 HTTP/1.1", "400", "90"], 400),
    ("django.server", "DEBUG", '"%s" %s %s', [f"GET /pay/{TOKEN} HTTP/1.1", "200", "5120"], 200),
    ("ispbill.portal", "INFO", "opened %s", [f"https://isp.example.com/pay/{TOKEN}"], None),
    ("ispbill.portal", "DEBUG", "opened %s", [f"https://isp.example.com/pay/{TOKEN}"], None),
    ("ispbill.payments", "WARNING", "bkash start failed for attempt %s: %s", ["A7X2", "gateway_timeout"], None),
    ("django.request", "ERROR", "%s: %s", ["Internal Server Error", f"/pay/{TOKEN}/start"], 500,
     f"gateway refused callback_url=https%3A%2F%2Fisp.example.com%2Fpay%2F{TOKEN}%2Fstart"),
    ("django.security.SuspiciousOperation", "ERROR", "%s", [f"tampered form posted to /pay/{TOKEN}/start"], 400),
    ("ispbill.outbox", "WARNING", "outbox %s %s dead: %s",
     ["sms", "reminder:7", f'HTTP 400: \'{{"text": "Pay: https:\\\\/\\\\/isp.example.com\\\\/pay\\\\/{TOKEN}"}}\''], None),
    ("ispbill.worker", "ERROR", "worker loop error; retrying", [], None, f"sending https://isp.example.com/pay/{TOKEN} failed"),
]

EMIT = """
import copy, json, logging, sys
import django
from django.conf import settings

logging.Formatter.formatTime = lambda self, record, datefmt=None: "T"
if sys.argv[1] == "without":
    # ispbill's own entries without the filter; Django's loggers left to Django's defaults
    config = copy.deepcopy(settings.LOGGING)
    config.pop("filters", None)
    for section in ("formatters", "handlers", "loggers"):
        config[section] = {k: v for k, v in config[section].items() if not k.startswith("django")}
        for entry in config[section].values():
            entry.pop("filters", None)
    if not settings.DEBUG:  # Django's errors printed as ispbill prints them, unmasked
        config["handlers"]["errors"] = {"class": "logging.StreamHandler", "level": "ERROR", "formatter": "plain"}
        config["loggers"] |= {name: {"handlers": ["errors"]} for name in ("django.request", "django.security")}
    settings.LOGGING = config
django.setup()
for name, level, msg, args, status, *raised in json.loads(sys.argv[2]):
    extra = {"server_time": "T"} | ({"status_code": status} if status else {})
    try:
        if raised:
            raise RuntimeError(*raised)
        logging.getLogger(name).log(getattr(logging, level), msg, *args, extra=extra)
    except RuntimeError:
        logging.getLogger(name).log(getattr(logging, level), msg, *args, extra=extra, exc_info=True)
"""


def logged(filters: str, debug: str, data_dir) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ISPBILL_REQUIRE_DB"}}
    env.update(DJANGO_SETTINGS_MODULE="ispbill.settings", ISPBILL_MODE="development", ISPBILL_DEBUG=debug,
               ISPBILL_DATA_DIR=str(data_dir), ISPBILL_LOG_LEVEL="INFO")
    done = subprocess.run([sys.executable, "-c", EMIT, filters, json.dumps(RECORDS)], env=env, cwd=data_dir,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_only_the_token_changes(debug, tmp_path):
    before = logged("without", debug, tmp_path)
    after = logged("with", debug, tmp_path)

    assert TOKEN in before
    assert TOKEN not in after
    assert after == before.replace(TOKEN, "[token]")


def test_what_reaches_the_console_with_debug_on(tmp_path):
    lines = logged("with", "1", tmp_path).splitlines()

    assert lines == [
        "Not Found: /pay/[token]",
        "Too Many Requests: /pay/[token]/start",
        "Not Found: /office/nothing",
        "Method Not Allowed (GET): /pay/sslcommerz/success",
        "Forbidden (CSRF cookie not set.): /pay/[token]/start",
        '[T] "GET /pay/[token] HTTP/1.1" 200 5120',
        '[T] "GET /pay/bkash/callback?paymentID=TR0011 HTTP/1.1" 400 90',
        "T INFO ispbill.portal: opened https://isp.example.com/pay/[token]",
        "T WARNING ispbill.payments: bkash start failed for attempt A7X2: gateway_timeout",
        "Internal Server Error: /pay/[token]/start",
        "Traceback (most recent call last):",
        '  File "<string>", line 24, in <module>',
        "RuntimeError: gateway refused callback_url=https%3A%2F%2Fisp.example.com%2Fpay%2F[token]%2Fstart",
        "tampered form posted to /pay/[token]/start",
        'T WARNING ispbill.outbox: outbox sms reminder:7 dead: HTTP 400: \'{"text": "Pay: https:\\\\/\\\\/isp.example.com\\\\/pay\\\\/[token]"}\'',
        "T ERROR ispbill.worker: worker loop error; retrying",
        "Traceback (most recent call last):",
        '  File "<string>", line 24, in <module>',
        "RuntimeError: sending https://isp.example.com/pay/[token] failed",
    ]


@pytest.mark.django_db
def test_django_request_warnings_carry_no_token(client, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")

    assert client.get(f"/pay/{TOKEN}").status_code == 404
    assert client.get("/pay/sslcommerz/success").status_code == 405

    messages = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert messages == ["Not Found: /pay/[token]", "Method Not Allowed (GET): /pay/sslcommerz/success"]


# -- through the real configuration, in this process ---------------------------------------

def _fail_to_start(request, token):
    """A payment start failing as a gateway might: the link in the exception's message,
    percent-encoded as a callback URL and in a JSON body."""
    link = request.build_absolute_uri()
    raise RuntimeError(f"gateway refused callback_url={quote(link, safe='')}: {json.dumps({'redirect_url': link})}")


urlpatterns = [path("pay/<str:token>/start", _fail_to_start)]


def _printed_by(name: str):
    handler = next(h for h in logging.getLogger("django").handlers if h.name == name)
    printed = io.StringIO()
    previous = handler.setStream(printed)
    try:
        yield printed
    finally:
        handler.setStream(previous)


@pytest.fixture
def django_console():
    """What Django's console handler, as settings.LOGGING declares it, prints (DEBUG on)."""
    yield from _printed_by("django.console")


@pytest.fixture
def django_errors():
    """What the console prints of Django's errors with DEBUG off (production)."""
    yield from _printed_by("django.errors")


@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
def test_a_request_failing_under_a_payment_link_logs_its_traceback_without_the_token(django_console):
    response = Client(raise_request_exception=False).post(f"/pay/{TOKEN}/start", {"gateway": "bkash"})

    assert response.status_code == 500
    printed = django_console.getvalue()
    assert TOKEN not in printed and quote(TOKEN, safe="") not in printed, printed
    lines = printed.splitlines()
    assert lines[:2] == ["Internal Server Error: /pay/[token]/start", "Traceback (most recent call last):"]
    assert any(line.endswith(", in _fail_to_start") for line in lines), printed
    assert lines[-1] == (
        "RuntimeError: gateway refused callback_url=http%3A%2F%2Ftestserver%2Fpay%2F[token]%2Fstart: "
        '{"redirect_url": "http://testserver/pay/[token]/start"}'
    )


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_with_debug_off_a_server_error_is_printed_with_its_traceback_once(django_errors, django_console):
    response = Client(raise_request_exception=False).post(f"/pay/{TOKEN}/start", {"gateway": "bkash"})

    assert response.status_code == 500
    printed = django_errors.getvalue()
    lines = printed.splitlines()
    assert lines[0].endswith(" ERROR django.request: Internal Server Error: /pay/[token]/start"), printed
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].startswith("RuntimeError: gateway refused callback_url=") and TOKEN not in printed
    assert django_console.getvalue() == ""  # DEBUG's handler stays quiet: printed once


@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
def test_with_debug_on_the_error_handler_leaves_it_to_djangos_console(django_errors):
    Client(raise_request_exception=False).post(f"/pay/{TOKEN}/start", {"gateway": "bkash"})

    assert django_errors.getvalue() == ""


# Loggers whose records may hold a payment link: Django's request handling and any other
# django.* logger, runserver's, ispbill's (the web's and the worker's), and httpx's request
# URLs (an SMS provider's query holds a reminder's text).
LOGGERS = [
    "django.request", "django.security.csrf", "django.security.SuspiciousOperation", "django.server",
    "django.template", "ispbill.portal", "ispbill.outbox", "ispbill.worker", "httpx",
]


def _redacts(filterer: logging.Filterer) -> bool:
    return any(isinstance(f, RedactingFilter) for f in filterer.filters)


def _handlers_reached(logger: logging.Logger):
    """The handlers settings.LOGGING gives ``logger`` and the loggers above it that its
    records reach (the root's are a test runner's, if any; AdminEmailHandler sends mail)."""
    current = logger
    while current is not None and current is not logging.root:
        yield from (h for h in current.handlers if not isinstance(h, AdminEmailHandler))
        if not current.propagate:
            return
        current = current.parent


@pytest.mark.parametrize("name", LOGGERS)
def test_whatever_prints_such_a_logger_masks_tokens(name):
    logger = logging.getLogger(name)
    handlers = list(_handlers_reached(logger))

    assert _redacts(logger) or (handlers and all(_redacts(h) for h in handlers)), (name, handlers)


def test_an_sms_providers_request_url_is_logged_without_the_link(caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    text = quote_plus(f"Your bill is due: https://isp.example.com/pay/{TOKEN}")

    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s %d %s"', "GET", f"https://sms.example.com/send?to=8801700000000&text={text}",
        "HTTP/1.1", 200, "OK",
    )

    [message] = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert TOKEN not in message and quote(TOKEN, safe="") not in message
    assert "text=Your+bill+is+due%3A+https%3A%2F%2Fisp.example.com%2Fpay%2F[token] " in message
