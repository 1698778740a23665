"""Fixtures for the RADIUS driver: a FreeRADIUS database (SQLite, or PostgreSQL in the
PostgreSQL pass), a fake NAS that answers Disconnect-Requests, and a real FreeRADIUS
server (the Debian ``freeradius`` package) running from a scratch copy of its config.

FreeRADIUS from ``/etc/freeradius/3.0`` is changed only where a test needs it:

* the ``sql`` module is enabled with ``rlm_sql_sqlite`` on a file the test created with
  :mod:`ispbill.network.radius_schema` (the file the driver writes through
  ``sqlite:///…``);
* the ``default`` site listens on 127.0.0.1 only, on free UDP ports (auth, acct); its
  IPv6 listeners, which would take the standard ports 1812/1813, are removed; the
  ``inner-tunnel`` site moves off its fixed port 18120, so that two servers (two test
  runs) can run at once;
* the ``user``/``group`` lines go: started as root the server would otherwise drop to
  ``freerad``, which cannot read pytest's temp dir; it keeps the caller's identity;
* logs and the pid file go to the temp dir instead of /var/log and /var/run;
* ``reject_delay = 0``: an Access-Reject comes at once instead of after a second.

``freeradius -X`` runs in the foreground, single-threaded, and logs every request; the log
is printed when a test fails to start it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from pyrad import packet as radius_packet

from ispbill.network.drivers.radius import RadiusDatabase, RadiusDriver, radius_dictionary
from ispbill.network.radius_schema import ensure_schema

SYSTEM_CONFIG = Path("/etc/freeradius/3.0")
READY = "Ready to process requests"
START_TIMEOUT = 20.0
CLIENT_SECRET = b"testing123"  # the Debian config's "localhost" client
COA_SECRET = "coa-s3cret"
NAS_IP = "127.0.0.1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# The FreeRADIUS database
# ---------------------------------------------------------------------------------------


class RadiusDb:
    """A FreeRADIUS database for one test: its URL, and plain SQL for seeding/asserting."""

    def __init__(self, url: str):
        self.url = url
        self.db = RadiusDatabase(url)
        self.conn = self.db.connect()

    def run(self, sql: str, *params) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(self.db.sql(sql), params)
        rows = cur.fetchall() if cur.description else []
        cur.close()
        return rows

    def user(self, name: str, password: str = "pw", *groups: tuple[str, int]) -> None:
        self.run("INSERT INTO radcheck (username, attribute, op, value) VALUES (?, 'Cleartext-Password', ':=', ?)", name, password)
        for group, priority in groups:
            self.member(name, group, priority)

    def member(self, name: str, group: str, priority: int) -> None:
        self.run("INSERT INTO radusergroup (username, groupname, priority) VALUES (?, ?, ?)", name, group, priority)

    def group_reply(self, group: str, attribute: str, value: str, op: str = ":=") -> None:
        self.run("INSERT INTO radgroupreply (groupname, attribute, op, value) VALUES (?, ?, ?, ?)", group, attribute, op, value)

    def session(self, name: str, session_id: str, address: str, *, nas: str = NAS_IP, stopped: bool = False, started: int = 1_790_000_000) -> None:
        stop = "CURRENT_TIMESTAMP" if stopped else "NULL"
        start = "CURRENT_TIMESTAMP" if self.db.dialect == "postgresql" else str(started)
        self.run(
            "INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, framedipaddress, "
            f"acctstarttime, acctstoptime, callingstationid) VALUES (?, ?, ?, {self.db.ip_param()}, {self.db.ip_param()}, {start}, {stop}, ?)",
            session_id, uuid.uuid4().hex, name, nas, address, "AA:BB:CC:00:00:01",
        )

    def groups(self, name: str) -> list[tuple[str, int]]:
        return [(g, int(p)) for g, p in self.run("SELECT groupname, priority FROM radusergroup WHERE username = ? ORDER BY priority, id", name)]

    def replies(self, group: str) -> dict[str, tuple[str, str]]:
        rows = self.run("SELECT attribute, op, value FROM radgroupreply WHERE groupname = ? ORDER BY id", group)
        out: dict[str, tuple[str, str]] = {}
        for attribute, op, value in rows:
            assert attribute not in out, f"duplicate {attribute} in {group}'s radgroupreply"
            out[attribute] = (op, value)
        return out

    def close(self) -> None:
        self.conn.close()


def _postgres_server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.fail("the PostgreSQL flavour of the RADIUS tests runs in the PostgreSQL pass (DATABASE_URL=postgresql://…)")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres_only)])
def radius_db(request, tmp_path):
    """An empty FreeRADIUS schema: a SQLite file, or a throwaway PostgreSQL schema
    (selected with ``options=-csearch_path=…`` in the URL the driver gets)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'radius.sqlite3'}"
        ensure_schema(url)
        db = RadiusDb(url)
        yield db
        db.close()
        return
    server = _postgres_server_url()
    schema = f"radius_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = server + ("&" if "?" in server else "?") + "options=" + quote(f"-csearch_path={schema}")
    try:
        ensure_schema(url)
        db = RadiusDb(url)
        yield db
        db.close()
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


# ---------------------------------------------------------------------------------------
# A NAS that answers Disconnect-Requests
# ---------------------------------------------------------------------------------------


@dataclass
class Received:
    raw: bytes
    packet: radius_packet.CoAPacket
    at: float

    def attr(self, name: str):
        values = self.packet.get(name)
        return values[0] if values else None

    def authenticator_valid(self, secret: bytes) -> bool:
        """RFC 5176 3.3: MD5(Code + Identifier + Length + 16 zero octets + attributes + secret)."""
        expected = hashlib.md5(self.raw[:4] + bytes(16) + self.raw[20:] + secret).digest()
        return self.raw[4:20] == expected


class FakeNas:
    """Listens for Disconnect-Requests on 127.0.0.1 and answers per user name:
    ``"ack"``, ``"nak-503"`` (Session-Context-Not-Found), ``"nak-<cause>"``, ``"nak"``
    (no Error-Cause) or ``"silent"`` (never answers). ``delay`` holds every answer that
    long (the requests stay outstanding: ``max_outstanding`` counts them)."""

    def __init__(self, secret: str = COA_SECRET):
        self.secret = secret.encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.answers: dict[str, str] = {}
        self.default = "ack"
        self.delay = 0.0
        self.received: list[Received] = []
        self.outstanding = 0
        self.max_outstanding = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, name="fake-nas", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            request = radius_packet.CoAPacket(packet=data, secret=self.secret, dict=radius_dictionary())
            with self._lock:
                self.received.append(Received(data, request, time.monotonic()))
            user = (request.get("User-Name") or [""])[0]
            answer = self.answers.get(user, self.default)
            if answer == "silent":
                continue
            reply = request.CreateReply()
            if answer.startswith("nak"):
                reply.code = radius_packet.DisconnectNAK
                cause = answer.partition("-")[2]
                if cause:
                    reply[101] = [struct.pack("!I", int(cause))]
            raw = reply.ReplyPacket()
            if self.delay:
                with self._lock:
                    self.outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, self.outstanding)
                timer = threading.Timer(self.delay, self._send_later, (raw, peer))
                self._timers.append(timer)
                timer.start()
            else:
                self.sock.sendto(raw, peer)

    def _send_later(self, raw: bytes, peer) -> None:
        with self._lock:
            self.outstanding -= 1
        try:
            self.sock.sendto(raw, peer)
        except OSError:
            pass

    def for_user(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.attr("User-Name") == name]

    def close(self) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def nas():
    fake = FakeNas()
    yield fake
    fake.close()


def make_driver(db_url: str, nas: FakeNas, **options) -> RadiusDriver:
    options.setdefault("timeout", 1.0)
    options.setdefault("retries", 0)
    return RadiusDriver(db_url, NAS_IP, nas.port, COA_SECRET, **options)


# ---------------------------------------------------------------------------------------
# A real FreeRADIUS server
# ---------------------------------------------------------------------------------------


def freeradius_binary() -> str | None:
    """``freeradius`` lives in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin:/sbin")


def _listen_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each top-level ``listen { … }`` block of a site file."""
    blocks = []
    for match in re.finditer(r"(?m)^listen\s*\{", text):
        depth, i = 0, match.start()
        while i < len(text):
            ch = text[i]
            if ch == "#":  # comments may hold braces
                i = text.find("\n", i)
                if i < 0:
                    break
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    blocks.append((match.start(), i + 1))
                    break
            i += 1
    return blocks


def _rewrite_listeners(text: str, ports: dict[str, int]) -> str:
    """IPv4 listeners → 127.0.0.1:ports[type]; IPv6 listeners removed."""
    out, last, seen = [], 0, set()
    for start, end in _listen_blocks(text):
        block = text[start:end]
        out.append(text[last:start])
        last = end
        if re.search(r"(?m)^\s*ipv6addr\s*=", block):
            continue
        kind = re.search(r"(?m)^\s*type\s*=\s*(\w+)", block).group(1)
        block = re.sub(r"(?m)^(\s*)ipaddr\s*=.*$", r"\1ipaddr = 127.0.0.1", block, count=1)
        block, count = re.subn(r"(?m)^(\s*)port\s*=.*$", rf"\g<1>port = {ports[kind]}", block, count=1)
        assert count == 1, f"no port line in a listen section:\n{block}"
        seen.add(kind)
        out.append(block)
    out.append(text[last:])
    assert seen == set(ports), f"listen sections found: {sorted(seen)} (FreeRADIUS config layout changed?)"
    return "".join(out)


def _edit(path: Path, pattern: str, repl: str, *, count: int = 0) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=count, flags=re.M)
    if n == 0:
        raise AssertionError(f"{path}: no line matches {pattern!r} (FreeRADIUS config layout changed?)")
    path.write_text(new)


@dataclass
class FreeRadius:
    root: Path
    db_path: Path
    auth_port: int = field(default_factory=free_udp_port)
    acct_port: int = field(default_factory=free_udp_port)
    process: subprocess.Popen | None = None

    @property
    def confdir(self) -> Path:
        return self.root / "raddb"

    @property
    def log(self) -> Path:
        return self.root / "freeradius.log"

    def configure(self) -> None:
        if freeradius_binary() is None or not (SYSTEM_CONFIG / "radiusd.conf").exists():
            pytest.fail(
                "FreeRADIUS is not installed: the RADIUS tests need the Debian packages freeradius and "
                "freeradius-utils (`apt-get install freeradius freeradius-utils`; .ci/run installs them)",
                pytrace=False,
            )
        conf = self.confdir
        try:
            shutil.copytree(SYSTEM_CONFIG, conf, symlinks=True)
        except PermissionError as exc:
            pytest.fail(f"cannot copy {SYSTEM_CONFIG} (run the RADIUS tests as root or as freerad): {exc}", pytrace=False)
        for sub in ("log/radacct", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

        radiusd = conf / "radiusd.conf"
        _edit(radiusd, r"^(\s*)logdir\s*=.*$", rf"\g<1>logdir = {self.root / 'log'}", count=1)
        _edit(radiusd, r"^(\s*)run_dir\s*=.*$", rf"\g<1>run_dir = {self.root / 'run'}", count=1)
        _edit(radiusd, r"^(\s*)(user|group)\s*=.*$", r"\1# \2: removed by the test, the server keeps the caller's identity")
        _edit(radiusd, r"^(\s*)reject_delay\s*=.*$", r"\g<1>reject_delay = 0", count=1)  # a wrong password answers at once

        site = conf / "sites-available" / "default"
        site.write_text(_rewrite_listeners(site.read_text(), {"auth": self.auth_port, "acct": self.acct_port}))
        _edit(conf / "sites-available" / "inner-tunnel", r"^(\s*)port\s*=\s*18120\s*$", rf"\g<1>port = {free_udp_port()}")

        sql = conf / "mods-available" / "sql"
        _edit(sql, r'^(\s*)driver\s*=\s*"rlm_sql_null"', r'\1driver = "rlm_sql_sqlite"', count=1)
        _edit(sql, r"^(\s*)filename\s*=.*$", rf'\g<1>filename = "{self.db_path}"', count=1)
        _edit(sql, r"^(\s*)busy_timeout\s*=.*$", r"\g<1>busy_timeout = 5000", count=1)
        _edit(sql, r"^(\s*)bootstrap\s*=.*$", r"\1# bootstrap: removed by the test, which created the schema", count=1)
        link = conf / "mods-enabled" / "sql"
        if not link.exists():
            link.symlink_to("../mods-available/sql")

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [freeradius_binary(), "-X", "-d", str(self.confdir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if READY in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                pytest.fail(f"freeradius -X exited with {self.process.returncode}:\n{self.tail()}", pytrace=False)
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"freeradius not ready after {START_TIMEOUT:.0f} s:\n{self.tail()}", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture(scope="module")
def freeradius(tmp_path_factory):
    """A FreeRADIUS server on a fresh SQLite database; ``.db_path`` is the database."""
    root = tmp_path_factory.mktemp("freeradius")
    db_path = root / "radius.sqlite3"
    ensure_schema(f"sqlite:///{db_path}")
    server = FreeRadius(root, db_path)
    server.configure()
    server.start()
    yield server
    server.stop()
