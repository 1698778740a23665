"""MikroTik RouterOS driver over the binary API (librouteros), with bulk pipelining.

Suspend = the PPP secret's profile becomes the suspended profile, the live session's
address goes on the suspended address list (comment = subscriber id) so the walled garden
applies at once, and the session is ended so the new profile applies on redial.
Restore = the package profile comes back, this subscriber's address-list entries go, and
a session that was still suspended is ended.

Secrets are looked up by name on every call: ``.id`` values change when a router reboots.
A session is only ended when this call (or an earlier attempt of it) changed something, so
repeating a call is harmless and does not disconnect anybody.

librouteros does the connecting, TLS wrapping, login and simple reads. What it does not
do, this module adds:

* **Values stay strings.** librouteros' ``parse_word`` turns ``"1001"`` into ``1001``
  and ``"yes"``/``"true"``/``"no"``/``"false"`` into booleans, which cannot be undone for
  a subscriber called "true". :class:`_Api` overrides ``readSentence`` to keep every
  value as the router sent it.
* **UTF-8 and exact bytes.** librouteros defaults to ASCII (Bangla user names fail to
  encode) and decodes with ``errors="ignore"`` (undecodable bytes silently vanish). We use
  UTF-8 with ``surrogateescape``.
* **Both login methods.** librouteros' ``plain`` login ignores the ``=ret=`` challenge a
  router older than 6.43 answers with, and its ``token`` login only takes ASCII passwords.
  :func:`_login` sends name+password and answers a challenge if one comes back.
* **Tags and pipelining.** librouteros sends no ``.tag`` and cannot parse replies that
  carry one (``parse_word`` fails on ``.tag=1``). Bulk writes go through :meth:`_Link.run`,
  which tags each sentence and keeps a window of them in flight on one connection.
* **Buffered reads.** librouteros reads the socket a few bytes at a time; a 50,000-row
  print is much faster through :class:`_BufferedTransport`.
* **Reconnect and retry.** A dropped connection or a timeout reconnects and retries, a
  bounded number of times; every step is idempotent, and state is read again after each
  reconnect so stale ``.id`` values are never written.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import librouteros
from librouteros.api import Api
from librouteros.connections import SocketTransport
from librouteros.exceptions import ConnectionClosed, FatalError, LibRouterosError, TrapError
from librouteros.protocol import ApiProtocol, decode_length, determine_length, encode_length
from librouteros.query import Key

from ispbill.network.drivers.base import (
    ActiveSession,
    AddressListEntry,
    BulkResult,
    RouterCommandError,
    RouterState,
    RouterUnavailable,
    SecretInfo,
    SecretNotFound,
    Target,
)

__all__ = ["RouterOSDriver"]

ENCODING = "utf-8"
ERRORS = "surrogateescape"
SECRET_PROPS = (".id", "name", "profile", "disabled", "comment")
ACTIVE_PROPS = (".id", "name", "address", "caller-id", "uptime", "session-id")
LIST_PROPS = (".id", "list", "address", "comment", "disabled")
# Up to this many targets, state is looked up per target; above, read whole tables once.
TARGETED_LOOKUP_MAX = 20
# Use another connection for a bulk operation only if each gets at least this many.
MIN_JOBS_PER_CONNECTION = 50

T = TypeVar("T")


# ---------------------------------------------------------------------------------------
# librouteros, adjusted
# ---------------------------------------------------------------------------------------


class _BufferedTransport(SocketTransport):
    """librouteros' transport, reading the socket in large chunks."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self._buf = bytearray()
        self._pos = 0

    def read(self, length: int) -> bytes:
        buf = self._buf
        while len(buf) - self._pos < length:
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionClosed("Connection unexpectedly closed.")
            buf += chunk
        start = self._pos
        self._pos += length
        return bytes(buf[start : self._pos])


class _Protocol(ApiProtocol):
    """librouteros' framing, decoding words losslessly."""

    def readWord(self) -> str:  # noqa: N802 (librouteros' name)
        transport = self.transport
        first = transport.read(1)
        if first == b"\x00":
            return ""
        header = first + transport.read(determine_length(first))
        return transport.read(decode_length(header)).decode(ENCODING, ERRORS)


def _attributes(words: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """Attribute words → dict of strings (split on the first two '=' only), and the tag."""
    attrs: dict[str, str] = {}
    tag = None
    for word in words:
        if word.startswith("="):
            key, _, value = word[1:].partition("=")
            attrs[key] = value
        elif word.startswith(".tag="):
            tag = word[5:]
    return attrs, tag


class _Api(Api):
    """librouteros' Api that keeps every value a string, over a buffered transport."""

    def __init__(self, protocol: ApiProtocol):
        buffered = _BufferedTransport(protocol.transport.sock)
        super().__init__(_Protocol(transport=buffered, encoding=protocol.encoding))

    def readSentence(self):  # noqa: N802
        reply_word, words = self.protocol.readSentence()
        return reply_word, _attributes(words)[0]

    def readResponse(self):  # noqa: N802
        rows: list[dict[str, str]] = []
        traps: list[dict[str, str]] = []
        reply_word = None
        while reply_word != "!done":
            reply_word, attrs = self.readSentence()
            if reply_word == "!trap":
                traps.append(attrs)
            elif reply_word in ("!re", "!done") and attrs:
                rows.append(attrs)
        if traps:
            first = traps[0]
            category = first.get("category")
            raise TrapError(
                message="; ".join(t.get("message", "") for t in traps),
                category=int(category) if category and category.isdigit() else None,
            )
        return rows


def _login(api: Api, username: str, password: str) -> None:
    """Log in the 6.43+ way; answer the challenge if the router is older."""
    rows = list(api("/login", name=username, password=password))
    challenge = next((row["ret"] for row in rows if "ret" in row), None)
    if challenge:
        digest = hashlib.md5(
            b"\x00" + password.encode(ENCODING) + bytes.fromhex(str(challenge)), usedforsecurity=False
        )
        list(api("/login", name=username, response="00" + digest.hexdigest()))


def _encode(words: Sequence[str], tag: str) -> bytes:
    out = bytearray()
    for word in (*words, f".tag={tag}"):
        raw = word.encode(ENCODING, ERRORS)
        out += encode_length(len(raw))
        out += raw
    out += b"\x00"
    return bytes(out)


@dataclass
class _Reply:
    rows: list[dict[str, str]] = field(default_factory=list)
    traps: list[dict[str, str]] = field(default_factory=list)
    done: dict[str, str] = field(default_factory=dict)

    @property
    def trap_message(self) -> str:
        return "; ".join(t.get("message", "") for t in self.traps)

    @property
    def trap_category(self) -> int | None:
        value = self.traps[0].get("category", "") if self.traps else ""
        return int(value) if value.isdigit() else None


class _Interrupted(Exception):
    """The connection failed during :meth:`_Link.run`. ``replies`` holds what completed,
    ``sent`` how many sentences were written (they may or may not have run)."""

    def __init__(self, cause: BaseException, replies: list[_Reply | None], sent: int):
        super().__init__(str(cause))
        self.cause = cause
        self.replies = replies
        self.sent = sent


# Failures that mean the connection is unusable.
_BROKEN = (OSError, LibRouterosError, ValueError, IndexError)


class _Link:
    """One logged-in API session. Used by one thread at a time (the pool sees to that)."""

    def __init__(self, api: _Api, window: int):
        self.api = api
        self.window = max(1, window)
        self._tags = itertools.count(1)

    def run(self, sentences: Sequence[Sequence[str]]) -> list[_Reply]:
        """Send every sentence tagged, keeping up to ``window`` in flight; return replies in
        order. Raises :class:`_Interrupted` if the connection fails."""
        count = len(sentences)
        replies: list[_Reply | None] = [None] * count
        pending: dict[str, tuple[int, _Reply]] = {}
        sent = completed = 0
        protocol = self.api.protocol
        try:
            while completed < count:
                if sent < count and len(pending) <= self.window // 2:
                    chunk = bytearray()
                    while sent < count and len(pending) < self.window:
                        tag = str(next(self._tags))
                        chunk += _encode(sentences[sent], tag)
                        pending[tag] = (sent, _Reply())
                        sent += 1
                    protocol.transport.write(bytes(chunk))
                reply_word, words = protocol.readSentence()
                attrs, tag = _attributes(words)
                if tag not in pending:
                    raise ConnectionClosed(f"reply {reply_word} with unknown tag {tag!r}")
                index, reply = pending[tag]
                if reply_word == "!re":
                    reply.rows.append(attrs)
                elif reply_word == "!trap":
                    reply.traps.append(attrs)
                elif reply_word == "!done":
                    reply.done = attrs
                    replies[index] = reply
                    del pending[tag]
                    completed += 1
                # "!empty" (7.18+) and any other reply word carry nothing we need.
        except _BROKEN as exc:
            self.close()
            raise _Interrupted(exc, replies, sent) from exc
        return replies  # type: ignore[return-value]  # all filled

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------
# Planning: what to write for one target, given what the router has
# ---------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    secrets: dict[str, SecretInfo] = field(default_factory=dict)
    sessions: dict[str, list[ActiveSession]] = field(default_factory=dict)
    entries: list[AddressListEntry] = field(default_factory=list)

    _by_address: dict[str, list[AddressListEntry]] | None = None
    _by_comment: dict[str, list[AddressListEntry]] | None = None

    def _index(self) -> None:
        self._by_address, self._by_comment = {}, {}
        for entry in self.entries:
            self._by_address.setdefault(entry.address, []).append(entry)
            self._by_comment.setdefault(entry.comment, []).append(entry)

    def listed(self, address: str) -> bool:
        if self._by_address is None:
            self._index()
        return address in self._by_address  # type: ignore[operator]

    def entries_for(self, subscriber_id: int, addresses: Iterable[str]) -> list[AddressListEntry]:
        """Entries this subscriber's restore must lift: by comment or by session address."""
        if self._by_address is None:
            self._index()
        found = {e.id: e for e in self._by_comment.get(str(subscriber_id), [])}  # type: ignore[union-attr]
        for address in addresses:
            found.update((e.id, e) for e in self._by_address.get(address, []))  # type: ignore[union-attr]
        return list(found.values())


@dataclass
class _Write:
    words: list[str]
    tolerate: str = ""  # a trap containing this means "already so"
    retry_on_missing: bool = False  # "no such item": the row went away, read again


@dataclass
class _Job:
    target: Target
    writes: list[_Write]
    sessions: list[str]  # active session ids to end if anything changed
    owed: bool  # an earlier attempt may have changed something: end sessions anyway
    changed: bool = False
    # "pending" (not yet judged) → "ok" | "failed" (a trap) | "retry" (read state again)
    status: str = "pending"
    message: str = ""
    command: str = ""
    category: int | None = None


@dataclass
class _Outcome:
    kind: str  # "ok" | "not_found" | "command" | "unavailable"
    message: str = ""
    command: str = ""
    category: int | None = None
    reason: str = ""


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------


class RouterOSDriver:
    """Driver for one RouterOS router (see the module docstring).

    ``connections``: how many API sessions a bulk operation may use in parallel.
    ``attempts``: tries per operation when the connection drops or times out.
    ``window``: tagged commands kept in flight on one connection.
    """

    def __init__(
        self,
        host: str,
        port: int = 8728,
        username: str = "admin",
        password: str = "",
        *,
        use_tls: bool = False,
        tls_verify: bool = True,
        tls_ca_file: str | None = None,
        timeout: float = 10.0,
        suspended_profile: str = "Suspended_Profile",
        address_list: str = "suspended",
        connections: int = 2,
        attempts: int = 3,
        backoff: float = 0.2,
        window: int = 256,
    ):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.timeout = timeout
        self.suspended_profile = suspended_profile
        self.address_list = address_list
        self.connections = max(1, connections)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.window = window
        self._tls_context: ssl.SSLContext | None = None
        if use_tls:
            ctx = ssl.create_default_context(cafile=tls_ca_file)
            if not tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls_context = ctx
        self._idle: list[_Link] = []
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RouterOSDriver {self.username}@{self.host}:{self.port}{' tls' if self.use_tls else ''}>"

    # --- connections -----------------------------------------------------------------

    def _wrap(self, sock: socket.socket) -> socket.socket:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls_context is not None:
            try:
                return self._tls_context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()  # librouteros only closes what it got back
                raise
        return sock

    def _connect(self) -> _Link:
        where = f"{self.host}:{self.port}"
        try:
            api = librouteros.connect(
                self.host,
                self.username,
                self.password,
                port=self.port,
                timeout=self.timeout,
                subclass=_Api,
                encoding=ENCODING,
                ssl_wrapper=self._wrap,
                login_method=_login,
            )
        except TrapError as exc:
            raise RouterUnavailable(
                f"login to {where} as {self.username!r} refused: {exc.message}", reason="auth"
            ) from exc
        except Exception as exc:
            raise _unavailable(exc, f"cannot connect to {where}") from exc
        return _Link(api, self.window)  # type: ignore[arg-type]  # subclass=_Api

    def _take(self) -> _Link:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give(self, link: _Link) -> None:
        with self._pool_lock:
            if len(self._idle) < self.connections:
                self._idle.append(link)
                return
        link.close()

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()

    def __enter__(self) -> RouterOSDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pause(self, attempt: int) -> None:
        if attempt:
            time.sleep(self.backoff * 2 ** (attempt - 1))

    def _retrying(self, what: str, fn: Callable[[_Link], T]) -> T:
        """Run ``fn`` on a link; reconnect and rerun it if the connection fails."""
        last: RouterUnavailable | None = None
        for attempt in range(self.attempts):
            self._pause(attempt)
            try:
                link = self._take()
            except RouterUnavailable as exc:
                if exc.reason == "auth":
                    raise
                last = exc
                continue
            try:
                result = fn(link)
            except TrapError as exc:
                self._give(link)
                raise RouterCommandError(f"{what}: {exc.message}", command=what, category=exc.category) from exc
            except _BROKEN as exc:
                link.close()
                last = _unavailable(exc, f"{what} on {self.host}:{self.port}")
                continue
            except _Interrupted as exc:
                last = _unavailable(exc.cause, f"{what} on {self.host}:{self.port}")
                continue
            self._give(link)
            return result
        assert last is not None
        raise RouterUnavailable(f"{last.message} (after {self.attempts} attempts)", reason=last.reason)

    # --- reads ------------------------------------------------------------------------

    def test(self) -> dict[str, str]:
        def read(link: _Link) -> dict[str, str]:
            identity = list(link.api.path("system", "identity"))
            resource = list(link.api.path("system", "resource"))
            return {
                "identity": identity[0].get("name", "") if identity else "",
                "version": resource[0].get("version", "") if resource else "",
            }

        return self._retrying("/system/resource/print", read)

    def read_state(self) -> RouterState:
        snapshot = self._retrying("read state", self._read_tables)
        return RouterState(
            secrets=snapshot.secrets,
            active={name: sessions[0] for name, sessions in snapshot.sessions.items()},
            suspended={entry.address: entry for entry in snapshot.entries},
        )

    def _read_tables(self, link: _Link) -> _Snapshot:
        """Whole tables, with .proplist, through librouteros' query API."""
        api = link.api
        secrets = api.path("ppp", "secret").select(*map(Key, SECRET_PROPS))
        active = api.path("ppp", "active").select(*map(Key, ACTIVE_PROPS))
        entries = (
            api.path("ip", "firewall", "address-list")
            .select(*map(Key, LIST_PROPS))
            .where(Key("list") == self.address_list)
        )
        snapshot = _Snapshot()
        for row in secrets:
            info = _secret(row)
            snapshot.secrets[info.name] = info
        for row in active:
            session = _session(row)
            snapshot.sessions.setdefault(session.name, []).append(session)
        snapshot.entries = [_entry(row) for row in entries]
        return snapshot

    def _lookup(self, link: _Link, targets: Sequence[Target], *, by_address: bool) -> _Snapshot:
        """Just what ``targets`` need, pipelined: one round trip (two when restoring an
        online subscriber, whose entries are also found by address)."""
        sentences: list[list[str]] = []
        secret_props = "=.proplist=" + ",".join(SECRET_PROPS)
        active_props = "=.proplist=" + ",".join(ACTIVE_PROPS)
        list_props = "=.proplist=" + ",".join(LIST_PROPS)
        for t in targets:
            sentences.append(["/ppp/secret/print", secret_props, f"?=name={t.username}"])
            sentences.append(["/ppp/active/print", active_props, f"?=name={t.username}"])
            sentences.append(
                [
                    "/ip/firewall/address-list/print",
                    list_props,
                    f"?=list={self.address_list}",
                    f"?=comment={t.subscriber_id}",
                ]
            )
        replies = link.run(sentences)
        _raise_traps(sentences, replies)
        snapshot = _Snapshot()
        seen: set[str] = set()
        for reply in replies[0::3]:
            for row in reply.rows:
                info = _secret(row)
                snapshot.secrets[info.name] = info
        for reply in replies[1::3]:
            for row in reply.rows:
                session = _session(row)
                snapshot.sessions.setdefault(session.name, []).append(session)
        for reply in replies[2::3]:
            for row in reply.rows:
                if row.get(".id") not in seen:
                    seen.add(row.get(".id", ""))
                    snapshot.entries.append(_entry(row))
        if by_address:
            listed = {e.address for e in snapshot.entries}
            addresses = sorted(
                {s.address for sessions in snapshot.sessions.values() for s in sessions if s.address} - listed
            )
            more = [
                ["/ip/firewall/address-list/print", list_props, f"?=list={self.address_list}", f"?=address={a}"]
                for a in addresses
            ]
            if more:
                more_replies = link.run(more)
                _raise_traps(more, more_replies)
                for reply in more_replies:
                    for row in reply.rows:
                        if row.get(".id") not in seen:
                            seen.add(row.get(".id", ""))
                            snapshot.entries.append(_entry(row))
        return snapshot

    # --- enforcement ------------------------------------------------------------------

    def suspend(self, target: Target) -> None:
        self._single("suspend", target)

    def restore(self, target: Target) -> None:
        self._single("restore", target)

    def bulk_suspend(self, targets: list[Target]) -> BulkResult:
        return self._bulk("suspend", targets)

    def bulk_restore(self, targets: list[Target]) -> BulkResult:
        return self._bulk("restore", targets)

    def _single(self, action: str, target: Target) -> None:
        outcome = self._enforce(action, [target])[target.subscriber_id]
        if outcome.kind == "ok":
            return
        if outcome.kind == "not_found":
            raise SecretNotFound(outcome.message, command=outcome.command)
        if outcome.kind == "command":
            raise RouterCommandError(outcome.message, command=outcome.command, category=outcome.category)
        raise RouterUnavailable(outcome.message, reason=outcome.reason or "connect")

    def _bulk(self, action: str, targets: list[Target]) -> BulkResult:
        outcomes = self._enforce(action, targets)
        result = BulkResult()
        for subscriber_id in dict.fromkeys(int(t.subscriber_id) for t in targets):  # input order
            outcome = outcomes[subscriber_id]
            if outcome.kind == "ok":
                result.ok.append(subscriber_id)
            else:
                result.failed[subscriber_id] = outcome.message
        return result

    def _plan(self, action: str, target: Target, snapshot: _Snapshot, owed: bool) -> _Job | _Outcome:
        secret = snapshot.secrets.get(target.username)
        if secret is None:
            return _Outcome(
                "not_found", f"no PPP secret named {target.username!r} on {self.host}", command="/ppp/secret/print"
            )
        sessions = snapshot.sessions.get(target.username, [])
        addresses = [s.address for s in sessions if s.address]
        writes: list[_Write] = []
        profile = self.suspended_profile if action == "suspend" else target.profile
        if secret.profile != profile:
            writes.append(
                _Write(["/ppp/secret/set", f"=.id={secret.id}", f"=profile={profile}"], retry_on_missing=True)
            )
        if action == "suspend":
            for address in dict.fromkeys(addresses):
                if not snapshot.listed(address):
                    writes.append(
                        _Write(
                            [
                                "/ip/firewall/address-list/add",
                                f"=list={self.address_list}",
                                f"=address={address}",
                                f"=comment={target.subscriber_id}",
                            ],
                            tolerate="already have such entry",
                        )
                    )
        else:
            for entry in snapshot.entries_for(target.subscriber_id, addresses):
                writes.append(
                    _Write(["/ip/firewall/address-list/remove", f"=.id={entry.id}"], tolerate="no such item")
                )
        return _Job(target=target, writes=writes, sessions=[s.id for s in sessions], owed=owed)

    def _enforce(self, action: str, targets: Sequence[Target]) -> dict[int, _Outcome]:
        """Bring every target to the state ``action`` asks for; one outcome per subscriber."""
        outcomes: dict[int, _Outcome] = {}
        remaining = list({t.subscriber_id: _clean(t) for t in targets}.values())
        owed: set[int] = set()
        retry_reasons: dict[int, str] = {}
        last: RouterUnavailable | None = None
        ever_connected = False
        for attempt in range(self.attempts):
            if not remaining:
                break
            self._pause(attempt)
            wanted = min(self.connections, max(1, len(remaining) // MIN_JOBS_PER_CONNECTION))
            links: list[_Link] = []
            try:
                # Every link this attempt writes on is open before state is read: a reboot
                # after the read drops them all, so stale .ids cannot reach the router.
                while len(links) < wanted:
                    links.append(self._take())
            except RouterUnavailable as exc:
                for link in links:
                    self._give(link)
                last = exc
                if exc.reason == "auth":
                    break
                continue
            try:
                if len(remaining) <= TARGETED_LOOKUP_MAX:
                    snapshot = self._lookup(links[0], remaining, by_address=action == "restore")
                else:
                    snapshot = self._read_tables(links[0])
            except RouterCommandError as exc:
                for link in links:
                    self._give(link)
                for t in remaining:
                    outcomes[t.subscriber_id] = _Outcome("command", exc.message, exc.command, exc.category)
                remaining = []
                break
            except (_Interrupted, *_BROKEN) as exc:
                cause = exc.cause if isinstance(exc, _Interrupted) else exc
                links[0].close()
                for link in links[1:]:
                    self._give(link)
                last = _unavailable(cause, f"reading state from {self.host}:{self.port}")
                continue
            ever_connected = True
            last = None

            jobs: list[_Job] = []
            for t in remaining:
                planned = self._plan(action, t, snapshot, t.subscriber_id in owed)
                if isinstance(planned, _Outcome):
                    outcomes[t.subscriber_id] = planned
                else:
                    jobs.append(planned)

            groups = [jobs[i :: len(links)] for i in range(len(links))]
            try:
                if len(links) == 1:
                    failures = [self._execute(links[0], groups[0])]
                else:
                    with ThreadPoolExecutor(max_workers=len(links)) as pool:
                        failures = list(pool.map(self._execute, links, groups))
            except BaseException:
                for link in links:
                    link.close()
                raise
            for link, failure in zip(links, failures, strict=True):
                if failure is None:
                    self._give(link)
                else:
                    last = _unavailable(failure, f"writing to {self.host}:{self.port}")

            remaining = []
            for job in jobs:
                sid = job.target.subscriber_id
                if job.status == "ok":
                    outcomes[sid] = _Outcome("ok")
                elif job.status == "failed":
                    outcomes[sid] = _Outcome("command", job.message, job.command, job.category)
                else:
                    remaining.append(job.target)
                    if job.changed:
                        owed.add(sid)
                    if job.message:
                        retry_reasons[sid] = job.message

        if remaining:
            if not ever_connected and last is not None and not outcomes:
                raise RouterUnavailable(
                    f"{last.message} (after {self.attempts} attempts)" if last.reason != "auth" else last.message,
                    reason=last.reason,
                )
            for t in remaining:
                if last is None:
                    message = retry_reasons.get(t.subscriber_id, "not finished")
                    outcomes[t.subscriber_id] = _Outcome("command", f"{message} (after {self.attempts} attempts)")
                else:
                    outcomes[t.subscriber_id] = _Outcome(
                        "unavailable",
                        f"router unavailable: {last.message} (after {self.attempts} attempts)",
                        reason=last.reason,
                    )
        return outcomes

    def _execute(self, link: _Link, jobs: list[_Job]) -> BaseException | None:
        """Write ``jobs`` on ``link``: phase 1 sets profiles and address-list entries,
        phase 2 ends the sessions of jobs whose phase 1 went through and changed something.
        Sets each job's status; returns the connection failure if one happened."""
        sentences: list[list[str]] = []
        owners: list[tuple[_Job, _Write]] = []
        for job in jobs:
            for write in job.writes:
                sentences.append(write.words)
                owners.append((job, write))
        failure: BaseException | None = None
        try:
            replies: Sequence[_Reply | None] = link.run(sentences)
            sent = len(sentences)
        except _Interrupted as exc:
            replies, sent, failure = exc.replies, exc.sent, exc.cause
        _judge(owners, replies, sent)
        if failure is not None:
            for job in jobs:
                if job.status == "pending":
                    # Every write confirmed; only a job with a session still owes a kick.
                    job.status = "retry" if job.sessions and (job.changed or job.owed) else "ok"
            return failure

        kicks: list[list[str]] = []
        kick_owners: list[_Job] = []
        for job in jobs:
            if job.status != "pending":
                continue
            if job.sessions and (job.changed or job.owed):
                for session_id in job.sessions:
                    kicks.append(["/ppp/active/remove", f"=.id={session_id}"])
                    kick_owners.append(job)
            else:
                job.status = "ok"
        try:
            kick_replies: Sequence[_Reply | None] = link.run(kicks)
        except _Interrupted as exc:
            kick_replies, failure = exc.replies, exc.cause
        for job, reply in zip(kick_owners, kick_replies, strict=True):
            if reply is None:
                job.status = "retry"
            elif reply.traps and "no such item" not in reply.trap_message and job.status == "pending":
                # "no such item": the session ended on its own, which is what we wanted.
                job.status = "failed"
                job.command = "/ppp/active/remove"
                job.message = f"/ppp/active/remove: {reply.trap_message}"
                job.category = reply.trap_category
        for job in kick_owners:
            if job.status == "pending":
                job.status = "ok"
        return failure


def _judge(owners: Sequence[tuple[_Job, _Write]], replies: Sequence[_Reply | None], sent: int) -> None:
    """Record what phase-1 replies mean for their jobs ("pending" → "failed"/"retry")."""
    for index, (job, write) in enumerate(owners):
        reply = replies[index]
        if reply is None:
            if index < sent:
                job.changed = True  # it may have run: end the session on the retry to be sure
            if job.status == "pending":
                job.status = "retry"
            continue
        if not reply.traps:
            job.changed = True
            continue
        message = reply.trap_message
        if write.tolerate and write.tolerate in message:
            continue
        if write.retry_on_missing and "no such item" in message:
            if job.status == "pending":
                job.status = "retry"
                job.message = f"{write.words[0]}: the secret changed while being updated"
            continue
        if job.status != "failed":
            job.status = "failed"
            job.command = write.words[0]
            job.message = f"{write.words[0]}: {message}"
            job.category = reply.trap_category


def _clean(target: Target) -> Target:
    return Target(int(target.subscriber_id), str(target.username), str(target.profile))


def _secret(row: dict[str, str]) -> SecretInfo:
    return SecretInfo(
        id=row.get(".id", ""),
        name=row.get("name", ""),
        profile=row.get("profile", ""),
        disabled=row.get("disabled", "false").lower() in ("true", "yes"),
        comment=row.get("comment", ""),
    )


def _session(row: dict[str, str]) -> ActiveSession:
    return ActiveSession(
        id=row.get(".id", ""),
        name=row.get("name", ""),
        address=row.get("address", ""),
        caller_id=row.get("caller-id", ""),
        uptime=row.get("uptime", ""),
        session_id=row.get("session-id", ""),
    )


def _entry(row: dict[str, str]) -> AddressListEntry:
    return AddressListEntry(
        id=row.get(".id", ""),
        list=row.get("list", ""),
        address=row.get("address", ""),
        comment=row.get("comment", ""),
        disabled=row.get("disabled", "false").lower() in ("true", "yes"),
    )


def _raise_traps(sentences: Sequence[Sequence[str]], replies: Sequence[_Reply]) -> None:
    for words, reply in zip(sentences, replies, strict=True):
        if reply.traps:
            raise RouterCommandError(
                f"{words[0]}: {reply.trap_message}", command=words[0], category=reply.trap_category
            )


def _unavailable(exc: BaseException, context: str) -> RouterUnavailable:
    if isinstance(exc, RouterUnavailable):
        return exc
    if isinstance(exc, ssl.SSLError):
        reason = "tls"
    elif isinstance(exc, TimeoutError | socket.timeout):
        reason = "timeout"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connect"
    elif isinstance(exc, ConnectionClosed | FatalError | ConnectionError):
        reason = "closed"
    else:
        reason = "connect"
    detail = str(exc) or type(exc).__name__
    if reason == "timeout":
        detail = f"no answer within the timeout ({detail})"
    return RouterUnavailable(f"{context}: {detail}", reason=reason)
