"""Plumbing shared by the HTTP simulators (bKash, Nagad, SSLCommerz).

* :class:`SimApp`: a framework-free WSGI application base with a route table, a log of
  the requests it received, and :class:`Faults` (the switches tests flip: the next
  matching call times out or fails with a 5xx, or the whole gateway is down).
* :func:`serve_in_thread`: serve any WSGI app on ``127.0.0.1`` from a thread
  (wsgiref + ``ThreadingHTTPServer``-style threads), optionally over TLS with a freshly
  generated self-signed certificate; returns a :class:`SimServer` with ``base_url`` and
  ``stop()``.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_STOPPING = "ispbill.sim.stopping"
_REASONS = {
    200: "OK", 201: "Created", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


# -- requests and responses ------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    stopping: threading.Event = field(repr=False, compare=False, default_factory=threading.Event)

    @classmethod
    def from_environ(cls, environ: dict) -> Request:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        raw_path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        return cls(
            method=environ["REQUEST_METHOD"].upper(),
            path=raw_path,
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            headers=headers,
            body=body,
            stopping=environ.get(_STOPPING) or threading.Event(),
        )

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


def html_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode("utf-8"), "text/html; charset=utf-8")


def redirect(url: str, status: int = 302) -> Response:
    return Response(status, b"", "text/plain", [("Location", url)])


def page(title: str, body_html: str) -> str:
    """A minimal hosted page."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head>"
        "<body><h1>" + html.escape(title) + "</h1>" + body_html + "</body></html>"
    )


def hidden(name: str, value: str) -> str:
    return f"<input type='hidden' name='{html.escape(name)}' value='{html.escape(str(value))}'>"


def auto_post_form(action: str, fields: dict[str, str], title: str = "Returning to the merchant") -> str:
    """An HTML page whose form POSTs ``fields`` to ``action`` by itself (as gateways do)."""
    inputs = "".join(hidden(k, v) for k, v in fields.items())
    return page(title, (
        f"<form id='back' method='post' action='{html.escape(action)}'>{inputs}"
        "<noscript><button type='submit'>Continue</button></noscript></form>"
        "<script>document.getElementById('back').submit();</script>"
    ))


# -- fault switches --------------------------------------------------------------------------

@dataclass
class _Fault:
    kind: str  # "timeout" | "error"
    path: str | None
    seconds: float = 0.0
    status: int = 500
    process: bool = True


class Faults:
    """Test switches. ``timeout_next`` makes the next matching call answer only after
    ``seconds`` (by default the call still takes effect first, like a lost answer);
    ``fail_next`` answers the next matching call with a 5xx without doing anything;
    ``down`` answers every call with 503. ``path`` matches as a substring of the path."""

    def __init__(self):
        self._pending: list[_Fault] = []
        self._lock = threading.Lock()
        self.down = False

    def timeout_next(self, seconds: float = 5.0, *, path: str | None = None, process: bool = True) -> None:
        with self._lock:
            self._pending.append(_Fault("timeout", path, seconds=seconds, process=process))

    def fail_next(self, status: int = 500, *, path: str | None = None) -> None:
        with self._lock:
            self._pending.append(_Fault("error", path, status=status))

    def set_down(self, down: bool = True) -> None:
        self.down = down

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
        self.down = False

    def take(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._pending):
                if fault.path is None or fault.path in path:
                    return self._pending.pop(i)
        return None


# -- the WSGI base ---------------------------------------------------------------------------

Handler = Callable[..., Response]


class SimApp:
    """Base class of the simulators. Subclasses list ``routes`` as
    ``(method, path regex, handler method name)``; named groups become keyword arguments."""

    routes: list[tuple[str, str, str]] = []

    def __init__(self):
        self.faults = Faults()
        self.requests: list[Request] = []
        self.base_url = ""  # set by serve_in_thread (plain HTTP)
        self.tls_base_url = ""  # set by serve_in_thread(tls=True)
        self._lock = threading.RLock()
        self._compiled = [(m, re.compile(p + r"\Z"), h) for m, p, h in self.routes]

    def bind(self, base_url: str, *, tls: bool) -> None:
        if tls:
            self.tls_base_url = self.tls_base_url or base_url
        else:
            self.base_url = self.base_url or base_url

    def calls(self, path_part: str) -> list[Request]:
        """Requests received whose path contains ``path_part``."""
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        with self._lock:
            self.requests.append(request)
        fault = self.faults.take(request.path)
        if self.faults.down:
            response = Response(503, b"Service Unavailable")
        elif fault is not None and fault.kind == "error":
            response = json_response({"message": "Internal Server Error"}, fault.status)
        else:
            if fault is not None and not fault.process:
                request.stopping.wait(fault.seconds)
            response = self.dispatch(request)
            if fault is not None and fault.process:
                request.stopping.wait(fault.seconds)
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))), *response.headers]
        start_response(f"{response.status} {_REASONS.get(response.status, 'Status')}", headers)
        return [response.body]

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for method, pattern, name in self._compiled:
            match = pattern.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
                continue
            return getattr(self, name)(request, **match.groupdict())
        return Response(405 if allowed else 404, b"Method Not Allowed" if allowed else b"Not Found")


# -- serving ---------------------------------------------------------------------------------

class _KeepAliveServerHandler(ServerHandler):
    http_version = "1.1"

    keep_alive = False

    def cleanup_headers(self):
        super().cleanup_headers()
        if "Content-Length" not in self.headers:  # the body's end is the connection's end
            self.headers["Connection"] = "close"

    def close(self):
        # Decided before the base class forgets the response's headers.
        self.keep_alive = bool(self.headers_sent and self.headers is not None
                               and self.headers.get("Connection") != "close")
        super().close()


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 with keep-alive, as the real gateways' APIs answer: a client's pooled
    connection is served by one thread until the client closes it or stays idle for
    ``timeout`` seconds. A response without a Content-Length closes the connection."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def handle(self):
        self.close_connection = True
        self._handle_one()
        while not self.close_connection:
            self._handle_one()

    def _handle_one(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():  # an error was sent; parse_request closes when it must
            return
        handler = _KeepAliveServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                                          multithread=False)
        handler.request_handler = self
        handler.run(self.server.get_app())
        if not handler.keep_alive:
            self.close_connection = True

    def log_message(self, format, *args):  # keep test output clean
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._connections: set = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request, client_address):
        # wsgiref writes the status line, headers and body separately: without this a kept
        # alive connection waits for the client's delayed ACK on every response.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Cut the kept-alive connections too: a stopped simulator answers nobody."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        # The TLS handshake runs in the request's thread, not the accept loop.
        request.settimeout(10)
        wrapped = self.ssl_context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request, client_address):  # a client that hung up is not news
        pass


@dataclass
class SimServer:
    base_url: str
    server: _ThreadingWSGIServer = field(repr=False)
    thread: threading.Thread = field(repr=False)
    stopping: threading.Event = field(repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this (TLS) server's self-signed certificate."""
        if self.ca_pem is None:
            raise ValueError("this server does not use TLS")
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))

    def stop(self) -> None:
        self.stopping.set()  # wakes simulated timeouts so threads end promptly
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_in_thread(wsgi_app, *, host: str = "127.0.0.1", port: int = 0, tls: bool = False) -> SimServer:
    """Serve ``wsgi_app`` from a background thread (one thread per request).

    With ``tls=True`` the server presents a new self-signed certificate for 127.0.0.1 and
    ``localhost``; ``SimServer.client_ssl_context()`` trusts it. If the app has
    ``bind(base_url, tls=...)`` it is told its URL.
    """
    server = _ThreadingWSGIServer((host, port), _QuietHandler)
    server.set_app(wsgi_app)
    stopping = threading.Event()
    server.base_environ[_STOPPING] = stopping
    ca_pem = None
    if tls:
        cert_pem, key_pem = self_signed_tls_certificate()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            context.load_cert_chain(cert_file, key_file)
        server.ssl_context = context
        server.base_environ["HTTPS"] = "on"
        ca_pem = cert_pem
    actual_host, actual_port = server.server_address[:2]
    base_url = f"{'https' if tls else 'http'}://{actual_host}:{actual_port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True, name=f"sim-{actual_port}",
    )
    thread.start()
    if hasattr(wsgi_app, "bind"):
        wsgi_app.bind(base_url, tls=tls)
    return SimServer(base_url=base_url, server=server, thread=thread, stopping=stopping, ca_pem=ca_pem)


def self_signed_tls_certificate() -> tuple[bytes, bytes]:
    """A one-day TLS certificate (EC P-256) for 127.0.0.1/localhost: ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def free_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
