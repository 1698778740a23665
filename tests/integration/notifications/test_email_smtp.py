"""Email through Django's SMTP backend to a real SMTP server process: what arrives
(headers, both parts, UTF-8 Bangla), and how refusals and outages are classified."""

from __future__ import annotations

import socket
import threading

import pytest
from django.test import override_settings

from ispbill.notifications.channels import PermanentSendError, TemporarySendError
from ispbill.notifications.channels.email import DjangoEmail

from .conftest import DEFERRED, REJECTED, free_port

SUBJECT = "আপনার ইন্টারনেট বিল ১,০০০.০০ টাকা, শেষ তারিখ ০১ Dec 2026"
TEXT = "প্রিয় রহিম,\n\nআপনার ইন্টারনেট বিল INV-2026-000001: ১,০০০.০০ টাকা।\n\nপরিশোধ করুন: https://isp.example/pay/abc"
HTML = "<p>প্রিয় রহিম,</p><p>আপনার ইন্টারনেট বিল <b>১,০০০.০০ টাকা</b>।</p>"
FROM = "রূপসা নেট <billing@rupsha.example>"


def smtp_settings(host: str, port: int, **extra):
    return override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST=host, EMAIL_PORT=port,
        EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="", EMAIL_USE_TLS=False, EMAIL_USE_SSL=False,
        EMAIL_TIMEOUT=extra.pop("EMAIL_TIMEOUT", 5), DEFAULT_FROM_EMAIL=FROM, **extra,
    )


def test_a_message_arrives_with_both_parts_in_utf8_and_the_reference(smtp_sink):
    with smtp_settings(smtp_sink.host, smtp_sink.port):
        result = DjangoEmail().send_email(to="rahim@example.com", subject=SUBJECT, text=TEXT, html=HTML, reference="ispbill-41")

    msg = smtp_sink.message_with_reference("ispbill-41")
    assert msg["X-Sink-Rcpt-To"] == "rahim@example.com"
    assert msg["X-Sink-Mail-From"] == "billing@rupsha.example"
    # Django folds the encoded subject onto the next line; Python's parser keeps the
    # folding space in front (mail readers drop it), hence the strip.
    assert msg["Subject"].strip() == SUBJECT
    assert msg["From"] == FROM
    assert msg["To"] == "rahim@example.com"
    assert msg["Message-ID"] == result.provider_reference
    assert result.provider_reference.endswith("@rupsha.example>")
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT
    assert html.get_content().rstrip("\n") == HTML


def test_a_message_without_html_is_plain_text(smtp_sink):
    with smtp_settings(smtp_sink.host, smtp_sink.port):
        DjangoEmail().send_email(to="karim@example.com", subject="Receipt", text="Paid, thanks.", html="", reference="ispbill-42")

    msg = smtp_sink.message_with_reference("ispbill-42")
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Paid, thanks."


def test_a_rejected_recipient_is_permanent(smtp_sink):
    with smtp_settings(smtp_sink.host, smtp_sink.port), pytest.raises(PermanentSendError) as err:
        DjangoEmail().send_email(to=REJECTED, subject="s", text="t", html="", reference="ispbill-43")
    assert "550" in str(err.value)
    assert "User unknown" in str(err.value)


def test_a_deferred_recipient_is_temporary(smtp_sink):
    with smtp_settings(smtp_sink.host, smtp_sink.port), pytest.raises(TemporarySendError) as err:
        DjangoEmail().send_email(to=DEFERRED, subject="s", text="t", html="", reference="ispbill-44")
    assert "450" in str(err.value)


def test_a_server_that_is_down_is_temporary():
    with smtp_settings("127.0.0.1", free_port()), pytest.raises(TemporarySendError) as err:
        DjangoEmail().send_email(to="rahim@example.com", subject="s", text="t", html="", reference="ispbill-45")
    assert "ConnectionRefusedError" in str(err.value)


@pytest.fixture
def mute_server():
    """``(port, hang_up)``: a TCP server that never greets (hang_up=False) or closes every
    connection at once (hang_up=True)."""
    servers = []

    def start(hang_up: bool) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        servers.append(sock)
        if hang_up:
            def serve():
                try:
                    while True:
                        conn, _ = sock.accept()
                        conn.close()
                except OSError:
                    return
            threading.Thread(target=serve, daemon=True).start()
        return sock.getsockname()[1]

    yield start
    for s in servers:
        s.close()


def test_a_server_that_hangs_up_is_temporary(mute_server):
    with smtp_settings("127.0.0.1", mute_server(hang_up=True)), pytest.raises(TemporarySendError) as err:
        DjangoEmail().send_email(to="rahim@example.com", subject="s", text="t", html="", reference="ispbill-46")
    assert "SMTPServerDisconnected" in str(err.value)


def test_a_server_that_never_answers_times_out_as_temporary(mute_server):
    with smtp_settings("127.0.0.1", mute_server(hang_up=False), EMAIL_TIMEOUT=0.3), pytest.raises(TemporarySendError):
        DjangoEmail().send_email(to="rahim@example.com", subject="s", text="t", html="", reference="ispbill-47")


def test_a_newline_in_the_subject_is_permanent(smtp_sink):
    with smtp_settings(smtp_sink.host, smtp_sink.port), pytest.raises(PermanentSendError):
        DjangoEmail().send_email(to="rahim@example.com", subject="a\nBcc: x@example.com", text="t", html="", reference="ispbill-48")
