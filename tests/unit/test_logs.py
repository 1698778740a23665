"""core/logs.py: payment-link tokens are replaced by ``[token]`` in log text (as they are,
percent-encoded or JSON-escaped), in log records (their tracebacks and stacks too) and in
gunicorn's access and error logs; the gateways' return paths are not."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from gunicorn.config import Config
from hypothesis import given
from hypothesis import strategies as st

from ispbill import cli
from ispbill.core.logs import GunicornLogger, RedactPaymentLinks, redact_payment_links
from ispbill.payments.gateways.base import RedactSecrets

# The shape links.token_for makes: signing.dumps([link id, subscriber id]).
TOKEN = "WzcsNDJd:1xWO6X:yboRaVUQQG3hXDcGW_gvRk59RpYXwb_eu1Hb_LBfvhU"
# The token as a payment link percent-encoded in a query value carries it.
ENCODED = quote(TOKEN, safe="")

GATEWAY_RETURNS = [
    "/pay/bkash/callback",
    "/pay/bkash/callback?paymentID=TR0011ABCD&status=success&signature=1a2b3c",
    "/pay/nagad/callback",
    "/pay/nagad/callback?merchant=683002007104225&order_id=A7X2&payment_ref_id=MDEyMz&status=Success",
    "/pay/sslcommerz/success",
    "/pay/sslcommerz/fail",
    "/pay/sslcommerz/cancel",
    "https://isp.example.com/pay/sslcommerz/success",
    '"POST /pay/sslcommerz/success HTTP/1.1" 200 1830',
    "Method Not Allowed (GET): /pay/sslcommerz/success",
    "Bad Request: /pay/bkash/callback",
    # percent-encoded in a gateway's request parameters, JSON-escaped in its answers
    "success_url=https%3A%2F%2Fisp.example.com%2Fpay%2Fsslcommerz%2Fsuccess&fail_url=https%3A%2F%2Fisp.example.com%2Fpay%2Fsslcommerz%2Ffail",
    "next=%252Fpay%252Fnagad%252Fcallback%253Fstatus%253DSuccess",
    '{"callbackURL":"https:\\/\\/isp.example.com\\/pay\\/bkash\\/callback","amount":"500"}',
]


# -- the redaction -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/pay/{TOKEN}", "/pay/[token]"),
        (f"/pay/{TOKEN}/start", "/pay/[token]/start"),
        (f"GET /pay/{TOKEN} HTTP/1.1", "GET /pay/[token] HTTP/1.1"),
        (f"POST /pay/{TOKEN}/start HTTP/1.1", "POST /pay/[token]/start HTTP/1.1"),
        (f"https://isp.example.com/pay/{TOKEN}", "https://isp.example.com/pay/[token]"),
        (f"Not Found: /pay/{TOKEN}", "Not Found: /pay/[token]"),
        (f"Too Many Requests: /pay/{TOKEN}/start", "Too Many Requests: /pay/[token]/start"),
        (f"Forbidden (CSRF cookie not set.): /pay/{TOKEN}/start", "Forbidden (CSRF cookie not set.): /pay/[token]/start"),
        (f'"GET /pay/{TOKEN} HTTP/1.1" 404 1290', '"GET /pay/[token] HTTP/1.1" 404 1290'),
        # a token as a link may arrive: ':' percent-encoded, a trailing slash, other case
        (f"/pay/{TOKEN.replace(':', '%3A')}", "/pay/[token]"),
        (f"/pay/{TOKEN}/", "/pay/[token]/"),
        (f"/PAY/{TOKEN}", "/PAY/[token]"),
        # two links in one message
        (f"/pay/{TOKEN} then /pay/{TOKEN}/start", "/pay/[token] then /pay/[token]/start"),
    ],
)
def test_payment_link_tokens_are_redacted(text, expected):
    assert redact_payment_links(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the query string of a payment link is kept, only the token goes
        (f"/pay/{TOKEN}?lang=bn", "/pay/[token]?lang=bn"),
        (f"GET /pay/{TOKEN}/start?gateway=bkash HTTP/1.1", "GET /pay/[token]/start?gateway=bkash HTTP/1.1"),
        (f"/pay/{TOKEN}#due", "/pay/[token]#due"),
        # a payment link inside a query value
        (f"next=/pay/{TOKEN}&lang=bn", "next=/pay/[token]&lang=bn"),
        (f"/i18n/setlang/?next=/pay/{TOKEN}", "/i18n/setlang/?next=/pay/[token]"),
        # queries without one are untouched
        ("lang=bn&page=2", "lang=bn&page=2"),
        ("", ""),
    ],
)
def test_query_strings_keep_everything_but_the_token(text, expected):
    assert redact_payment_links(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a payment link percent-encoded in a query value, in either case, once or twice
        (f"/i18n/setlang/?next=%2Fpay%2F{ENCODED}", "/i18n/setlang/?next=%2Fpay%2F[token]"),
        (f"next=%2fpay%2f{ENCODED}%2fstart&lang=bn", "next=%2fpay%2f[token]%2fstart&lang=bn"),
        (
            f"redirect_url=https%3A%2F%2Fisp.example.com%2Fpay%2F{ENCODED}%3Flang%3Dbn&amount=500",
            "redirect_url=https%3A%2F%2Fisp.example.com%2Fpay%2F[token]%3Flang%3Dbn&amount=500",
        ),
        (
            f"GET /login?next=%2Fi18n%2F%3Fnext%3D%252Fpay%252F{quote(ENCODED, safe='')}%252Fstart HTTP/1.1",
            "GET /login?next=%2Fi18n%2F%3Fnext%3D%252Fpay%252F[token]%252Fstart HTTP/1.1",
        ),
        # a gateway's callback URL logged as a parameter, its ":" left as it is
        (
            f"callback=https%3A%2F%2Fisp.example.com%2Fpay%2F{TOKEN}%2Fstart status=failed",
            "callback=https%3A%2F%2Fisp.example.com%2Fpay%2F[token]%2Fstart status=failed",
        ),
        # full URLs in JSON, slashes escaped or not, and in the repr of such JSON
        (
            f'{{"redirect_url": "https://isp.example.com/pay/{TOKEN}", "amount": 500}}',
            '{"redirect_url": "https://isp.example.com/pay/[token]", "amount": 500}',
        ),
        (
            f'{{"callbackURL":"https:\\/\\/isp.example.com\\/pay\\/{TOKEN}\\/start"}}',
            '{"callbackURL":"https:\\/\\/isp.example.com\\/pay\\/[token]\\/start"}',
        ),
        (
            repr(f'{{"url":"https:\\/\\/isp.example.com\\/pay\\/{TOKEN}"}}'),
            repr('{"url":"https:\\/\\/isp.example.com\\/pay\\/[token]"}'),
        ),
        (
            f'{{"url":"https:\\u002F\\u002Fisp.example.com\\u002Fpay\\u002F{TOKEN}"}}',
            '{"url":"https:\\u002F\\u002Fisp.example.com\\u002Fpay\\u002F[token]"}',
        ),
    ],
)
def test_disguised_payment_links_are_redacted(text, expected):
    assert redact_payment_links(text) == expected


@pytest.mark.parametrize("text", GATEWAY_RETURNS)
def test_gateway_return_paths_stay_readable(text):
    assert redact_payment_links(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "/pay/",
        "/healthz",
        "/office/payments/12/refund",
        "/api/v1/payments/12/match",
        "/webhooks/sslcommerz/ipn",
        "/webhooks/bkash",
        "/repay/abc",
        "GET /portal HTTP/1.1",
        "next=%2Frepay%2Fabc",
        "/office/login/?next=%2Foffice%2Fpayments%2F12%2Frefund",
        '{"url": "https:\\/\\/isp.example.com\\/office\\/payments\\/12"}',
        "payment 1234 of subscriber 55 allocated to invoice INV-2026-11-0042",
    ],
)
def test_other_paths_are_untouched(text):
    assert redact_payment_links(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # anything else under /pay/ is taken for a token: only the exact return paths are not
        ("/pay/bkash", "/pay/[token]"),
        ("/pay/bkashx/callback", "/pay/[token]/callback"),
        ("/pay/nagad/callbacks", "/pay/[token]/callbacks"),
        ("/pay/sslcommerz/ipn", "/pay/[token]/ipn"),
    ],
)
def test_near_misses_of_the_return_paths_are_redacted(text, expected):
    assert redact_payment_links(text) == expected


signed_tokens = st.from_regex(r"[A-Za-z0-9_-]{4,40}:[A-Za-z0-9_-]{6}:[A-Za-z0-9_-]{20,60}", fullmatch=True)


@given(signed_tokens, st.sampled_from(["", "/start", "?lang=bn", "/start?x=1"]))
def test_no_signed_token_survives(token, tail):
    redacted = redact_payment_links(f"GET https://isp.example.com/pay/{token}{tail} HTTP/1.1")
    assert token not in redacted
    assert redacted == f"GET https://isp.example.com/pay/[token]{tail} HTTP/1.1"


@given(signed_tokens, st.integers(min_value=1, max_value=3), st.sampled_from(["", "/start", "?lang=bn"]))
def test_no_percent_encoded_signed_token_survives(token, times, tail):
    value = f"https://isp.example.com/pay/{token}{tail}"
    for _ in range(times):
        value = quote(value, safe="")

    redacted = redact_payment_links(f"GET /i18n/setlang/?next={value}&lang=bn HTTP/1.1")

    assert token.rsplit(":", 1)[1] not in redacted  # the signature, which no encoding changes
    assert redacted.endswith("&lang=bn HTTP/1.1")


@pytest.mark.parametrize(
    "text",
    [
        "\\" * 50_000 + "pay/x",  # a backslash run: each one might start an escaped "/"
        "/pay" + "\\" * 50_000 + "x",
        "%" + "25" * 50_000 + "2Fpay/x",
        "/pay/" + "%" * 50_000,
        "%2Fpay" * 20_000,
    ],
)
def test_redaction_takes_time_linear_in_the_texts_length(text):
    started = time.perf_counter()
    redact_payment_links(text)
    assert time.perf_counter() - started < 1  # milliseconds; quadratic would be many seconds


# -- the log filter ----------------------------------------------------------------------------

def record(msg, *args, name="django.request", level=logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_filter_redacts_the_formatted_message_and_keeps_the_record():
    rec = record("%s: %s", "Not Found", f"/pay/{TOKEN}")

    assert RedactPaymentLinks().filter(rec) is True
    assert rec.getMessage() == "Not Found: /pay/[token]"
    assert TOKEN not in str(rec.msg) and not rec.args


def test_filter_leaves_records_without_a_token_as_they_are():
    args = ("Not Found", "/pay/bkash/callback")
    rec = record("%s: %s", *args)

    assert RedactPaymentLinks().filter(rec) is True
    assert rec.msg == "%s: %s" and rec.args == args


def test_filter_passes_a_record_it_cannot_format():
    rec = record("%s: %s", "only one")

    assert RedactPaymentLinks().filter(rec) is True
    assert rec.msg == "%s: %s" and rec.args == ("only one",)


def start_payment(token: str) -> None:
    """Fails as a gateway might while a payment starts from a link: the link in the
    exception's message, percent-encoded in the cause's and in a JSON body."""
    link = f"https://isp.example.com/pay/{token}/start"
    try:
        raise ConnectionError(f"callback_url={quote(link, safe='')} unreachable")
    except ConnectionError as exc:
        raise RuntimeError(f"gateway refused {json.dumps({'redirect_url': link})}") from exc


def failed_start(msg="%s: %s", *args) -> logging.LogRecord:
    """The record ``log.exception`` makes of :func:`start_payment`'s exception."""
    try:
        start_payment(TOKEN)
    except RuntimeError:
        return logging.LogRecord("django.request", logging.ERROR, __file__, 1, msg, args, sys.exc_info())


FORMAT = "%(levelname)s %(name)s: %(message)s"


def test_filter_redacts_the_traceback_and_keeps_every_line_of_it():
    unfiltered = logging.Formatter(FORMAT).format(failed_start("%s: %s", "Internal Server Error", f"/pay/{TOKEN}/start"))
    rec = failed_start("%s: %s", "Internal Server Error", f"/pay/{TOKEN}/start")

    assert RedactPaymentLinks().filter(rec) is True
    text = logging.Formatter(FORMAT).format(rec)

    assert TOKEN not in text and ENCODED not in text
    assert text == unfiltered.replace(ENCODED, "[token]").replace(TOKEN, "[token]")
    lines = text.splitlines()
    assert lines[:2] == ["ERROR django.request: Internal Server Error: /pay/[token]/start", "Traceback (most recent call last):"]
    assert f'  File "{__file__}", line' in text and ", in start_payment" in text
    assert "ConnectionError: callback_url=https%3A%2F%2Fisp.example.com%2Fpay%2F[token]%2Fstart unreachable" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert lines[-1] == 'RuntimeError: gateway refused {"redirect_url": "https://isp.example.com/pay/[token]/start"}'


def test_no_handler_can_format_the_unmasked_traceback_again():
    rec = failed_start("Internal Server Error")

    RedactPaymentLinks().filter(rec)

    assert rec.exc_info is None  # what a formatter would show unmasked
    assert rec.exc_text.startswith("Traceback (most recent call last):") and TOKEN not in rec.exc_text
    # a second filter (the handler's, after the logger's) finds nothing left to do
    masked = rec.exc_text
    assert RedactPaymentLinks().filter(rec) is True
    assert rec.exc_text == masked


def test_filter_redacts_a_traceback_a_formatter_has_already_shown():
    rec = failed_start("Internal Server Error")
    logging.Formatter(FORMAT).format(rec)  # caches the unmasked exc_text, as a first handler does

    RedactPaymentLinks().filter(rec)

    assert TOKEN not in logging.Formatter(FORMAT).format(rec)


def test_filter_redacts_the_stack():
    rec = record("slow start of a payment")
    rec.stack_info = (
        'Stack (most recent call last):\n  File "portal/views.py", line 52, in start_payment\n'
        f"    log.warning('slow start', extra={{'url': '/pay/{TOKEN}/start'}}, stack_info=True)"
    )

    RedactPaymentLinks().filter(rec)

    text = logging.Formatter(FORMAT).format(rec)
    assert TOKEN not in text
    assert text.endswith("line 52, in start_payment\n    log.warning('slow start', extra={'url': '/pay/[token]/start'}, stack_info=True)")


def test_a_traceback_without_a_token_is_left_to_the_formatters():
    try:
        start_payment("bkash/callback")
    except RuntimeError:
        rec = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), sys.exc_info())
    exc_info = rec.exc_info

    assert RedactPaymentLinks().filter(rec) is True
    assert rec.exc_info is exc_info and rec.exc_text is None


def test_a_record_that_cannot_be_formatted_still_has_its_traceback_redacted():
    rec = failed_start("%s: %s", "only one")

    assert RedactPaymentLinks().filter(rec) is True
    assert rec.msg == "%s: %s" and rec.args == ("only one",)
    assert "Traceback (most recent call last):" in rec.exc_text and TOKEN not in rec.exc_text


SSLCOMMERZ_VALIDATION = (
    'HTTP Request: GET https://sandbox.sslcommerz.com/validator/api/validationserverAPI.php'
    '?val_id=2301011234&store_id=isp01&store_passwd=hunter2&format=json "HTTP/1.1 200 OK"'
)


@pytest.mark.parametrize("order", ["secrets first", "links first"])
def test_gateway_secrets_stay_redacted_whichever_filter_runs_first(order):
    filters = [RedactSecrets(), RedactPaymentLinks()]
    if order == "links first":
        filters.reverse()
    plain = record("%s", SSLCOMMERZ_VALIDATION, name="httpx", level=logging.INFO)
    both = record("%s (from %s)", SSLCOMMERZ_VALIDATION, f"/pay/{TOKEN}/start", name="httpx", level=logging.INFO)

    for rec in (plain, both):
        assert all(f.filter(rec) for f in filters)

    assert plain.getMessage() == SSLCOMMERZ_VALIDATION.replace("hunter2", "[redacted]")
    assert both.getMessage() == SSLCOMMERZ_VALIDATION.replace("hunter2", "[redacted]") + " (from /pay/[token]/start)"


def test_gateway_secrets_are_masked_in_tracebacks_too():
    try:
        raise ConnectionError(f"validation failed: {SSLCOMMERZ_VALIDATION}")
    except ConnectionError:
        rec = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "validation failed", (), sys.exc_info())

    RedactSecrets().filter(rec)

    assert "hunter2" not in rec.exc_text and "store_passwd=[redacted]" in rec.exc_text
    assert rec.exc_text.startswith("Traceback (most recent call last):")


def test_filter_leaves_the_gateway_secret_patterns_alone():
    text = "POST https://tokenized.sandbox.bka.sh/v1.2.0-beta/tokenized/checkout/token/grant app_key=[redacted]"
    rec = record("%s", text, name="httpx")

    RedactPaymentLinks().filter(rec)

    assert rec.getMessage() == text


# -- gunicorn's logger -------------------------------------------------------------------------

@pytest.fixture
def gunicorn_logs():
    """Undoes what constructing a gunicorn logger does to the process-wide loggers."""
    yield
    for name in ("gunicorn.access", "gunicorn.error"):
        log = logging.getLogger(name)
        for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
            log.removeHandler(handler)
            handler.close()
        for f in [f for f in log.filters if isinstance(f, RedactPaymentLinks)]:
            log.removeFilter(f)


def web_config(**settings) -> Config:
    """gunicorn's configuration as ``ispbill web`` gives it (gunicorn's own option parser
    reading ``_gunicorn_argv``), then ``settings``."""
    argv = cli._gunicorn_argv("127.0.0.1", 8000)
    assert argv[1:3] == ["-m", "gunicorn"]
    cfg = Config()
    parsed = cfg.parser().parse_args(argv[3:])
    for key, value in vars(parsed).items():
        if value is not None and key != "args":
            cfg.set(key.lower(), value)
    for key, value in settings.items():
        cfg.set(key, value)
    return cfg


def exchange(method, raw_uri, *, status="404 Not Found", referer=None, location=None):
    """gunicorn's (response, request, environ) for one request, as ``Logger.access`` gets them."""
    path, _, query = raw_uri.partition("?")
    headers = [("HOST", "isp.example.com"), ("USER-AGENT", "Mozilla/5.0")]
    environ = {
        "REQUEST_METHOD": method, "RAW_URI": raw_uri, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Mozilla/5.0",
    }
    if referer:
        headers.append(("REFERER", referer))
        environ["HTTP_REFERER"] = referer
    response_headers = [("Content-Type", "text/html; charset=utf-8"), ("Referrer-Policy", "no-referrer")]
    if location:
        response_headers.append(("Location", location))
    response = SimpleNamespace(status=status, sent=1290, headers=response_headers)
    return response, SimpleNamespace(headers=headers), environ


def test_ispbill_web_runs_gunicorn_with_the_redacting_logger():
    assert web_config().logger_class is GunicornLogger


def test_access_line_has_no_token(gunicorn_logs, capsys):
    cfg = web_config()  # --access-logfile -: standard output
    logger = cfg.logger_class(cfg)
    response, request, environ = exchange(
        "POST", f"/pay/{TOKEN}/start?gateway=bkash", status="429 Too Many Requests",
        referer=f"https://isp.example.com/pay/{TOKEN}",
    )

    logger.access(response, request, environ, timedelta(milliseconds=12))

    line = capsys.readouterr().out
    assert TOKEN not in line
    assert '"POST /pay/[token]/start?gateway=bkash HTTP/1.1" 429 1290' in line
    assert '"https://isp.example.com/pay/[token]" "Mozilla/5.0"' in line
    assert line.startswith("203.0.113.7 - - [")


def test_access_line_keeps_gateway_return_paths(gunicorn_logs, capsys):
    logger = GunicornLogger(web_config())
    response, request, environ = exchange(
        "GET", "/pay/bkash/callback?paymentID=TR0011ABCD&status=success", status="200 OK",
    )

    logger.access(response, request, environ, timedelta(milliseconds=40))

    assert '"GET /pay/bkash/callback?paymentID=TR0011ABCD&status=success HTTP/1.1" 200 1290' in capsys.readouterr().out


def test_every_atom_a_custom_format_may_use_is_redacted(gunicorn_logs, tmp_path):
    access_log = tmp_path / "access.log"
    fmt = '%(m)s %(U)s ?%(q)s ref=%(f)s hdr=%({referer}i)s loc=%({location}o)s raw=%({raw_uri}e)s'
    logger = GunicornLogger(web_config(accesslog=str(access_log), access_log_format=fmt))
    response, request, environ = exchange(
        "GET", f"/pay/{TOKEN}?next=/pay/{TOKEN}/start", status="302 Found",
        referer=f"https://isp.example.com/pay/{TOKEN}", location=f"/pay/{TOKEN}",
    )

    logger.access(response, request, environ, timedelta(milliseconds=3))

    line = access_log.read_text()
    assert TOKEN not in line
    assert line == (
        "GET /pay/[token] ?next=/pay/[token]/start ref=https://isp.example.com/pay/[token] "
        "hdr=https://isp.example.com/pay/[token] loc=/pay/[token] raw=/pay/[token]?next=/pay/[token]/start\n"
    )


def test_error_log_is_redacted(gunicorn_logs, tmp_path):
    error_log = tmp_path / "error.log"
    logger = GunicornLogger(web_config(errorlog=str(error_log)))

    logger.error("Error handling request %s", f"/pay/{TOKEN}/start")
    logger.setup(logger.cfg)  # gunicorn sets up again on reload: still one filter
    logger.warning("Invalid request from ip=%s: %s", "203.0.113.7", "/pay/sslcommerz/fail")

    text = error_log.read_text()
    assert TOKEN not in text
    assert "[ERROR] Error handling request /pay/[token]/start" in text
    assert "Invalid request from ip=203.0.113.7: /pay/sslcommerz/fail" in text
    assert sum(isinstance(f, RedactPaymentLinks) for f in logger.error_log.filters) == 1


def test_error_log_tracebacks_are_redacted(gunicorn_logs, tmp_path):
    error_log = tmp_path / "error.log"
    logger = GunicornLogger(web_config(errorlog=str(error_log)))

    try:
        start_payment(TOKEN)
    except RuntimeError:
        logger.exception("Error handling request %s", f"/pay/{TOKEN}/start")

    text = error_log.read_text()
    assert TOKEN not in text and ENCODED not in text
    assert "[ERROR] Error handling request /pay/[token]/start\nTraceback (most recent call last):\n" in text
    assert "ConnectionError: callback_url=https%3A%2F%2Fisp.example.com%2Fpay%2F[token]%2Fstart unreachable" in text
    assert text.endswith('RuntimeError: gateway refused {"redirect_url": "https://isp.example.com/pay/[token]/start"}\n')


def test_gunicorn_logger_needs_no_django():
    code = (
        "import sys, ispbill.core.logs; "
        "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
