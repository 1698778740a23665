"""Servers the channel tests talk to over real sockets.

``sms_server``: an HTTP server in a thread that records every request and answers as
the test scripts it (status, body, delay). ``smtp_sink``: an SMTP server in a separate
process (``smtp_sink.py``) that saves every message it receives.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ispbill.notifications import channels


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the SMS provider -----------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = '{"status": "SUCCESS", "message_id": "m-1"}'
    delay: float = 0.0  # seconds to wait before answering
    content_type: str = "application/json"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: tuple[str, int]
    status: int  # what the server answered

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True, strict_parsing=True)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class SmsServer:
    """The recording provider; ``reply(...)`` sets the answer for the following requests."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    _reply: Reply = field(default_factory=Reply)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def reply(self, status: int = 200, body: str | None = None, delay: float = 0.0, content_type: str = "application/json") -> None:
        with self._lock:
            self._reply = Reply(status, Reply.body if body is None else body, delay, content_type)

    def current_reply(self) -> Reply:
        with self._lock:
            return self._reply

    def record(self, r: Recorded) -> None:
        with self._lock:
            self.requests.append(r)


def _handler_for(state: SmsServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = state.current_reply()
            state.record(Recorded(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                self.client_address, reply.status,
            ))
            if reply.delay and state._stop.wait(reply.delay):
                return  # the test is over: leave without answering
            data = reply.body.encode("utf-8")
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format, *args):  # keep test output clean
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hung up is not news
        pass


@pytest.fixture
def sms_server():
    state = SmsServer()
    server = _QuietServer(("127.0.0.1", 0), _handler_for(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/sms/send"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state._stop.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def clean_channels():
    """Channels installed by the test are forgotten afterwards."""
    channels.reset_channels()
    yield
    channels.reset_channels()


# -- the SMTP server ------------------------------------------------------------------------

REJECTED = "nobody@example.net"
DEFERRED = "greylisted@example.net"


@dataclass
class SmtpSink:
    host: str
    port: int
    directory: Path

    def messages(self) -> list[email.message.EmailMessage]:
        files = sorted(self.directory.glob("*.eml"), key=lambda p: int(p.stem))
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]

    def message_with_reference(self, reference: str) -> email.message.EmailMessage:
        found = [m for m in self.messages() if m["X-Ispbill-Reference"] == reference]
        assert len(found) == 1, f"expected one message with reference {reference}, got {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory):
    directory = tmp_path_factory.mktemp("smtp-sink")
    script = Path(__file__).with_name("smtp_sink.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--dir", str(directory), "--reject", REJECTED, "--defer", DEFERRED],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"SMTP sink did not start (exit {proc.poll()}): {line!r}"
        yield SmtpSink("127.0.0.1", int(line.split()[1]), directory)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
