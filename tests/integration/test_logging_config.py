"""settings.LOGGING: the payment-link filter changes the token in what Django and ispbill
log, and nothing else: the same messages reach the same handlers, in the same form, as
with Django's own logging defaults and ispbill's console without the filter. Each
configuration runs in a fresh process (configuring logging is global)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

TOKEN = "WzcsNDJd:1xWO6X:yboRaVUQQG3hXDcGW_gvRk59RpYXwb_eu1Hb_LBfvhU"

# (logger, level, message, args, status code) as Django's request handling, CSRF
# middleware and runserver log them, and as an ispbill module might.
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
    settings.LOGGING = config
django.setup()
for name, level, msg, args, status in json.loads(sys.argv[2]):
    extra = {"server_time": "T"} | ({"status_code": status} if status else {})
    logging.getLogger(name).log(getattr(logging, level), msg, *args, extra=extra)
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
    ]


@pytest.mark.django_db
def test_django_request_warnings_carry_no_token(client, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")

    assert client.get(f"/pay/{TOKEN}").status_code == 404
    assert client.get("/pay/sslcommerz/success").status_code == 405

    messages = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert messages == ["Not Found: /pay/[token]", "Method Not Allowed (GET): /pay/sslcommerz/success"]
