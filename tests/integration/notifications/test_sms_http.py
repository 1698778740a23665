"""The HTTP SMS provider against a real HTTP server on a local port: request shapes
(form, query string, JSON), URL-encoding, the auth header, success detection and how
each failure is classified (temporary: retry; permanent: give up)."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ispbill.notifications import channels
from ispbill.notifications.channels import PermanentSendError, TemporarySendError
from ispbill.notifications.channels.sms_http import HttpSmsProvider

from .conftest import free_port

BANGLA = "প্রিয় গ্রাহক, আপনার বিল ১,০০০.০০ টাকা & বকেয়া=৫০০; 100% + more?"
PHONE = "+8801712345678"
SECRET = "s3cr3t-token-value"


@pytest.fixture
def provider(monkeypatch, sms_server):
    """``provider(**env)`` builds an HttpSmsProvider from the real environment variables;
    every provider is closed after the test."""
    made: list[HttpSmsProvider] = []

    def make(**env) -> HttpSmsProvider:
        for name in [n for n in os.environ if n.startswith("SMS_")]:
            monkeypatch.delenv(name)
        env.setdefault("SMS_HTTP_URL", sms_server.url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        p = HttpSmsProvider.from_env()
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_post_sends_the_template_form_encoded_with_the_auth_header(provider, sms_server):
    sms = provider(SMS_SENDER_ID="MyISP", SMS_HTTP_AUTH_HEADER=f"Authorization: Bearer {SECRET}")

    result = sms.send_sms(to=PHONE, text=BANGLA, reference="ispbill-7")

    assert result.provider_reference == "m-1"
    (req,) = sms_server.requests
    assert req.method == "POST"
    assert req.path == "/api/sms/send"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.headers["authorization"] == f"Bearer {SECRET}"
    # '&', '=', '%', '+' and Bangla in the text survive the encoding intact.
    assert req.form == {"to": [PHONE], "text": [BANGLA], "sender": ["MyISP"]}


def test_get_puts_the_template_in_the_query_string(provider, sms_server):
    sms = provider(
        SMS_HTTP_URL=sms_server.url + "?user=isp1",
        SMS_HTTP_METHOD="get",
        SMS_HTTP_PARAMS="api_key=k%26y+1&msisdn={to}&sms={text}&csms_id={reference}&from={sender}",
        SMS_SENDER_ID="8809617000000",
        SMS_HTTP_AUTH_HEADER=f"X-API-Key: {SECRET}",
    )

    sms.send_sms(to=PHONE, text=BANGLA, reference="ispbill-8")

    (req,) = sms_server.requests
    assert req.method == "GET"
    assert req.body == b""
    assert req.headers["x-api-key"] == SECRET
    assert req.query == {
        "user": ["isp1"], "api_key": ["k&y 1"], "msisdn": [PHONE], "sms": [BANGLA], "csms_id": ["ispbill-8"],
        "from": ["8809617000000"],
    }


def test_json_format_sends_the_template_fields_as_an_object(provider, sms_server):
    sms_server.reply(200, '{"status": "ok", "data": [], "sms_id": 98765}')
    sms = provider(
        SMS_HTTP_FORMAT="json",
        SMS_HTTP_PARAMS="api_token=tok%20en&msisdn={to}&sms={text}&sid={sender}&csms_id={reference}&note=ref+{reference}",
        SMS_SENDER_ID="MyISP",
    )

    result = sms.send_sms(to=PHONE, text=BANGLA, reference="ispbill-9")

    assert result.provider_reference == "98765"
    (req,) = sms_server.requests
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/json"
    assert req.json == {
        "api_token": "tok en", "msisdn": PHONE, "sms": BANGLA, "sid": "MyISP", "csms_id": "ispbill-9",
        "note": "ref ispbill-9",
    }


@pytest.mark.parametrize(
    "body, reference",
    [
        ('{"messageId": "abc-1"}', "abc-1"),
        ('{"id": 5, "message_id": "preferred"}', "preferred"),
        ('{"status": "sent"}', ""),
        ("1701|SMS queued", ""),  # not JSON
        ('[{"id": 1}]', ""),
    ],
)
def test_provider_reference_comes_from_a_json_message_id(provider, sms_server, body, reference):
    sms_server.reply(200, body)
    assert provider().send_sms(to=PHONE, text="hi", reference="r").provider_reference == reference


def test_success_pattern_must_match_a_2xx_body(provider, sms_server):
    sms = provider(SMS_HTTP_SUCCESS_PATTERN=r'"response_code"\s*:\s*202')
    sms_server.reply(200, '{"response_code": 202, "message_id": 44}')
    assert sms.send_sms(to=PHONE, text="hi", reference="r1").provider_reference == "44"

    sms_server.reply(200, '{"response_code": 1007,\n   "error_message": "Balance Insufficient"}')
    with pytest.raises(PermanentSendError) as err:
        sms.send_sms(to=PHONE, text="hi", reference="r2")
    assert "HTTP 200" in str(err.value)
    assert '{"response_code": 1007, "error_message": "Balance Insufficient"}' in str(err.value)  # quoted, on one line
    assert len(sms_server.requests) == 2


def test_a_long_error_body_is_trimmed(provider, sms_server):
    sms_server.reply(400, "<html>" + "x" * 5000 + "</html>", content_type="text/html")
    with pytest.raises(PermanentSendError) as err:
        provider().send_sms(to=PHONE, text="hi", reference="r")
    assert "HTTP 400" in str(err.value)
    assert len(str(err.value)) < 400


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_and_throttling_are_temporary(provider, sms_server, status):
    sms_server.reply(status, "Service Unavailable")
    with pytest.raises(TemporarySendError) as err:
        provider().send_sms(to=PHONE, text="hi", reference="r")
    assert f"HTTP {status}" in str(err.value)
    assert "Service Unavailable" in str(err.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_permanent_and_quote_the_body(provider, sms_server, status):
    sms_server.reply(status, '{"error": "Invalid mobile number"}')
    with pytest.raises(PermanentSendError) as err:
        provider().send_sms(to=PHONE, text="hi", reference="r")
    assert f"HTTP {status}" in str(err.value)
    assert "Invalid mobile number" in str(err.value)


def test_a_provider_that_is_not_listening_is_temporary(provider):
    sms = provider(SMS_HTTP_URL=f"http://127.0.0.1:{free_port()}/send")
    with pytest.raises(TemporarySendError) as err:
        sms.send_sms(to=PHONE, text="hi", reference="r")
    assert "unreachable" in str(err.value)


def test_a_slow_provider_times_out_as_temporary(provider, sms_server):
    sms_server.reply(200, delay=5)
    sms = provider(SMS_HTTP_TIMEOUT="0.3")

    started = time.monotonic()
    with pytest.raises(TemporarySendError) as err:
        sms.send_sms(to=PHONE, text="hi", reference="r")

    assert time.monotonic() - started < 2
    assert "timed out" in str(err.value)
    assert len(sms_server.requests) == 1  # it did arrive: the at-least-once window


def test_the_connection_is_kept_alive_and_shared_by_threads(provider, sms_server):
    sms = provider()
    sms.send_sms(to=PHONE, text="one", reference="r1")
    sms.send_sms(to=PHONE, text="two", reference="r2")
    assert sms_server.requests[0].client == sms_server.requests[1].client  # same connection

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: sms.send_sms(to=PHONE, text=f"msg {i}", reference=f"t{i}"), range(16)))
    assert [r.provider_reference for r in results] == ["m-1"] * 16
    assert sorted(r.form["text"][0] for r in sms_server.requests[2:]) == sorted(f"msg {i}" for i in range(16))


def test_the_auth_header_never_shows_in_errors_or_logs(provider, sms_server, caplog):
    caplog.set_level(logging.DEBUG)
    sms = provider(SMS_HTTP_AUTH_HEADER=f"Authorization: Bearer {SECRET}")
    sms.send_sms(to=PHONE, text="hi", reference="r1")
    sms_server.reply(500, "boom")
    with pytest.raises(TemporarySendError) as err:
        sms.send_sms(to=PHONE, text="hi", reference="r2")

    assert SECRET not in str(err.value)
    assert SECRET not in repr(sms)
    assert SECRET not in caplog.text


def test_sms_provider_http_selects_this_provider_from_the_environment(monkeypatch, sms_server, clean_channels):
    monkeypatch.setenv("SMS_PROVIDER", "http")
    monkeypatch.setenv("SMS_HTTP_URL", sms_server.url)
    sms = channels.sms_channel()
    try:
        assert isinstance(sms, HttpSmsProvider)
        assert sms is channels.sms_channel()  # one client for the process
        assert sms.send_sms(to=PHONE, text="hi", reference="r").provider_reference == "m-1"
    finally:
        sms.close()


def test_missing_url_is_a_clear_error(monkeypatch, clean_channels):
    monkeypatch.setenv("SMS_PROVIDER", "http")
    monkeypatch.delenv("SMS_HTTP_URL", raising=False)
    with pytest.raises(RuntimeError, match="SMS_HTTP_URL"):
        channels.sms_channel()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SMS_HTTP_METHOD": "PUT"}, "SMS_HTTP_METHOD"),
        ({"SMS_HTTP_FORMAT": "xml"}, "SMS_HTTP_FORMAT"),
        ({"SMS_HTTP_FORMAT": "json", "SMS_HTTP_METHOD": "GET"}, "SMS_HTTP_FORMAT=json"),
        ({"SMS_HTTP_PARAMS": "to={phone}&text={text}"}, r"\{phone\}"),
        ({"SMS_HTTP_PARAMS": "to={to}&text"}, "key=value"),
        ({"SMS_HTTP_TIMEOUT": "soon"}, "SMS_HTTP_TIMEOUT"),
        ({"SMS_HTTP_SUCCESS_PATTERN": "(unclosed"}, "SMS_HTTP_SUCCESS_PATTERN"),
        ({"SMS_HTTP_URL": "ftp://example.com/"}, "SMS_HTTP_URL"),
    ],
)
def test_bad_configuration_is_refused_at_start(provider, env, message):
    with pytest.raises(RuntimeError, match=message):
        provider(**env)


def test_a_malformed_auth_header_is_refused_without_echoing_it(provider):
    with pytest.raises(RuntimeError, match="SMS_HTTP_AUTH_HEADER") as err:
        provider(SMS_HTTP_AUTH_HEADER=f"Bearer {SECRET}")
    assert SECRET not in str(err.value)
