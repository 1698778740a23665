"""A MikroTik RouterOS API server for tests and the demo.

It speaks the real binary API (TCP, optionally TLS): length-prefixed words, sentences,
``.tag`` pipelining, ``=.proplist=``, the query stack, ``!re``/``!done``/``!trap``/
``!fatal``/``!empty`` replies and both login methods. Menus hold in-memory state:
``/ppp/secret``, ``/ppp/active``, ``/ppp/profile``, ``/ip/firewall/address-list``,
``/system/identity``, ``/system/resource``.

No code is shared with the driver (``ispbill.network.drivers.routeros``), which talks to it
through librouteros: the two sides are written independently so that tests catch a
misreading of the protocol on either side.

    with RouterOSSimulator(users={"admin": "secret"}, latency=0.005) as sim:
        sim.add_secret("1001", profile="home-10M")
        sim.add_active("1001", address="10.1.1.5")
        ...  # connect to ("127.0.0.1", sim.port)

    python -m ispbill.sim.routeros --host 127.0.0.1 --port 8728 --user admin:admin --latency-ms 0
    python -m ispbill.sim.routeros --from-database demo-router   # what ``serve --demo-router`` runs

Latency is a delay line, as on a distant router: each command's reply leaves ``latency``
seconds after the command arrived. Commands on one connection are still executed in
order, but pipelined commands do not wait for one another, and other connections never
wait at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import secrets as _secrets
import signal
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ProtocolViolation",
    "QueryError",
    "RouterOSSimulator",
    "SentenceDecoder",
    "decode_length",
    "encode_length",
    "encode_sentence",
    "evaluate_query",
    "length_width",
    "split_attribute",
]

# ---------------------------------------------------------------------------------------
# Wire codec
# ---------------------------------------------------------------------------------------

MAX_ENCODABLE = 0xFFFFFFFF
# A sentence longer than this is treated as hostile; RouterOS has a limit too.
DEFAULT_MAX_WORD = 64 * 1024 * 1024
WORD_ENCODING = "utf-8"
# surrogateescape keeps bytes that are not UTF-8 byte-exact through decode/encode.
WORD_ERRORS = "surrogateescape"


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid API stream (the router answers !fatal)."""


class QueryError(Exception):
    """A query stack that cannot be evaluated (e.g. ``?#&`` on fewer than two values)."""


def encode_length(length: int) -> bytes:
    """Encode a word length in 1–5 bytes, big-endian, as the API does."""
    if length < 0:
        raise ValueError(f"negative length {length}")
    if length < 0x80:
        return bytes((length,))
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    if length <= MAX_ENCODABLE:
        return b"\xf0" + length.to_bytes(4, "big")
    raise ValueError(f"length {length} does not fit the API's 5-byte encoding")


def length_width(first_byte: int) -> int:
    """How many bytes the length starting with ``first_byte`` takes (1–5)."""
    if first_byte < 0x80:
        return 1
    if first_byte < 0xC0:
        return 2
    if first_byte < 0xE0:
        return 3
    if first_byte < 0xF0:
        return 4
    if first_byte < 0xF8:
        return 5
    raise ProtocolViolation(f"reserved control byte 0x{first_byte:02X}")


_LENGTH_MASKS = {2: 0x3FFF, 3: 0x1FFFFF, 4: 0x0FFFFFFF}


def decode_length(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """Decode the length at ``data[offset]``: ``(length, offset after it)``, or None if
    ``data`` does not yet hold the whole length. Raises ProtocolViolation on control bytes."""
    first = data[offset]
    width = length_width(first)
    if len(data) - offset < width:
        return None
    if width == 1:
        return first, offset + 1
    if width == 5:
        if first != 0xF0:
            raise ProtocolViolation(f"length marker 0x{first:02X} exceeds 32 bits")
        return int.from_bytes(data[offset + 1 : offset + 5], "big"), offset + 5
    value = int.from_bytes(data[offset : offset + width], "big") & _LENGTH_MASKS[width]
    return value, offset + width


def encode_word(word: str | bytes) -> bytes:
    raw = word if isinstance(word, bytes) else word.encode(WORD_ENCODING, WORD_ERRORS)
    return encode_length(len(raw)) + raw


def encode_sentence(words: Iterable[str | bytes]) -> bytes:
    """Encode words followed by the zero-length word that ends a sentence."""
    return b"".join(encode_word(w) for w in words) + b"\x00"


class SentenceDecoder:
    """Incremental decoder: feed whatever TCP delivered, get back complete sentences.

    Words may be split across reads at any byte, including inside a length prefix.
    """

    def __init__(self, *, max_word: int = DEFAULT_MAX_WORD):
        self._buf = bytearray()
        self._words: list[bytes] = []
        self._max_word = max_word

    def feed(self, data: bytes) -> list[list[bytes]]:
        buf = self._buf
        buf += data
        pos = 0
        sentences: list[list[bytes]] = []
        end_of_data = len(buf)
        while pos < end_of_data:
            header = decode_length(buf, pos)
            if header is None:
                break
            length, start = header
            if length == 0:
                sentences.append(self._words)
                self._words = []
                pos = start
                continue
            if length > self._max_word:
                raise ProtocolViolation(f"word of {length} bytes is too long")
            end = start + length
            if end > end_of_data:
                break
            self._words.append(bytes(buf[start:end]))
            pos = end
        del buf[:pos]
        return sentences

    @property
    def pending(self) -> bool:
        """True if a sentence has started but not ended."""
        return bool(self._buf or self._words)


def split_attribute(word: str) -> tuple[str, str]:
    """``=name=value`` → (name, value). Only the first two ``=`` split: the value may
    contain ``=`` or be empty; ``=name`` (no second ``=``, as RouterOS-api sends empty
    values) is (name, "")."""
    name, _, value = word[1:].partition("=")
    return name, value


# ---------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------

_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}


def _normalise(name: str, value: str, bool_fields: frozenset[str]) -> str:
    if name in bool_fields:
        low = value.lower()
        if low in _TRUE:
            return "true"
        if low in _FALSE:
            return "false"
    return value


def _sort_key(value: str) -> tuple[int, object]:
    """Numbers compare as numbers, ``*1F`` ids as hex numbers, the rest as text."""
    try:
        return (0, int(value))
    except ValueError:
        pass
    if value.startswith("*"):
        try:
            return (0, int(value[1:], 16))
        except ValueError:
            pass
    return (1, value)


def evaluate_query(
    words: Sequence[str], row: Mapping[str, str], *, bool_fields: frozenset[str] = frozenset()
) -> bool:
    """Evaluate RouterOS query words (each starting with ``?``) against one row.

    Each word pushes a boolean; ``?#`` applies operators to the stack; the result is the
    AND of what remains (an empty stack is true).
    """
    stack: list[bool] = []
    for word in words:
        body = word[1:]
        if body.startswith("#"):
            _apply_operators(stack, body[1:])
            continue
        if body.startswith("-"):
            stack.append(body[1:] not in row)
            continue
        op = "="
        if body[:1] in ("<", ">", "="):
            op, body = body[0], body[1:]
        name, eq, value = body.partition("=")
        if not eq:
            if op != "=":
                raise QueryError(f"comparison without a value: {word!r}")
            stack.append(name in row)
            continue
        if name not in row:
            stack.append(False)
            continue
        have = _normalise(name, row[name], bool_fields)
        want = _normalise(name, value, bool_fields)
        if op == "=":
            stack.append(have == want)
        elif op == "<":
            stack.append(_sort_key(have) < _sort_key(want))
        else:
            stack.append(_sort_key(have) > _sort_key(want))
    return all(stack)


def _apply_operators(stack: list[bool], ops: str) -> None:
    digits = ""

    def at(index_text: str) -> bool:
        index = int(index_text)
        if index >= len(stack):
            raise QueryError(f"stack index {index} out of range")
        return stack[-1 - index]

    for ch in ops:
        if ch.isdigit():
            digits += ch
            continue
        if digits:
            stack.append(at(digits))
            digits = ""
        if ch == "!":
            if not stack:
                raise QueryError("'!' on an empty stack")
            stack[-1] = not stack[-1]
        elif ch in "&|":
            if len(stack) < 2:
                raise QueryError(f"{ch!r} needs two values")
            right, left = stack.pop(), stack.pop()
            stack.append((left and right) if ch == "&" else (left or right))
        elif ch == ".":
            if not stack:
                raise QueryError("'.' on an empty stack")
            stack.append(stack[-1])
        else:
            raise QueryError(f"unknown query operator {ch!r}")
    if digits:
        # An index that ends the word replaces the whole stack with that value.
        value = at(digits)
        stack[:] = [value]


# ---------------------------------------------------------------------------------------
# Menus (in-memory tables)
# ---------------------------------------------------------------------------------------


class _Trap(Exception):
    def __init__(self, message: str, category: int | None = None):
        super().__init__(message)
        self.message = message
        self.category = category


@dataclass
class _Table:
    """Rows keyed by ``.id``; ``fields`` are writable, ``required`` must be given on add."""

    id_start: int
    fields: tuple[str, ...]
    required: tuple[str, ...] = ()
    defaults: Mapping[str, str] = field(default_factory=dict)
    bool_fields: frozenset[str] = frozenset()
    named: bool = False  # items can be addressed by name in =numbers=
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    next_id: int = 0
    by_name: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_id = self.id_start

    def new_id(self) -> str:
        ident = f"*{self.next_id:X}"
        self.next_id += 1
        return ident

    def insert(self, values: Mapping[str, str]) -> str:
        ident = self.new_id()
        # Columns in the menu's order, as RouterOS prints them.
        row = {".id": ident, **{k: values[k] for k in self.fields if k in values}, **values}
        self.rows[ident] = row
        if self.named:
            self.by_name[row["name"]] = ident
        return ident

    def delete(self, ident: str) -> dict[str, str]:
        row = self.rows.pop(ident)
        if self.named and self.by_name.get(row.get("name", "")) == ident:
            del self.by_name[row["name"]]
        return row

    def resolve(self, spec: str) -> list[str]:
        """``*1,*2`` or names (for named menus) → ids; raises 'no such item'."""
        idents = []
        for item in filter(None, (s.strip() for s in spec.split(","))):
            if item in self.rows:
                idents.append(item)
            elif self.named and item in self.by_name:
                idents.append(self.by_name[item])
            else:
                raise _Trap("no such item")
        if not idents:
            raise _Trap("no such item")
        return idents

    def renumber(self, order: Iterable[str]) -> None:
        old = self.rows
        self.rows = {}
        self.by_name = {}
        self.next_id = self.id_start
        for ident in order:
            row = old[ident]
            row[".id"] = self.new_id()
            self.rows[row[".id"]] = row
            if self.named:
                self.by_name[row["name"]] = row[".id"]


@contextlib.contextmanager
def _as_value_error() -> Iterator[None]:
    """Test helpers report what the router would have trapped as ValueError."""
    try:
        yield
    except _Trap as exc:
        raise ValueError(exc.message) from None


def _now() -> float:
    return time.monotonic()


def _format_duration(seconds: float) -> str:
    """RouterOS style: 1w2d3h4m5s (zero parts left out; 0s for nothing)."""
    total = int(seconds)
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """``1d2h``, ``5m``, ``00:05:00``, ``1d00:00:10`` or plain seconds → seconds."""
    text = text.strip()
    days = 0
    if "d" in text and ":" in text:
        day_part, text = text.split("d", 1)
        days = int(day_part)
    if ":" in text:
        h, m, s = (text.split(":") + ["0", "0"])[:3]
        return days * 86400 + int(h) * 3600 + int(m) * 60 + float(s)
    if text.isdigit():
        return float(text)
    pos = 0
    seconds = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            raise ValueError(text)
        seconds += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(text)
    return float(seconds)


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------

_RESTART_NOW = object()


@dataclass
class _Command:
    arrival: float
    words: list[str]
    tag: str | None
    cancelled: bool = False


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.logged_in = False
        self.challenge: bytes | None = None
        self.queue: deque[_Command] = deque()
        self.wakeup = asyncio.Event()
        self.processor: asyncio.Task | None = None
        self.eof = False  # the client will send nothing more
        self.closed = False

    def kill(self) -> None:
        """Drop the connection at once, unsent replies included (as a reboot does)."""
        if self.closed:
            return
        self.closed = True
        transport = self.writer.transport
        if transport is not None:
            transport.abort()
        if self.processor is not None and self.processor is not asyncio.current_task():
            self.processor.cancel()


SECRET_FIELDS = (
    "name",
    "password",
    "profile",
    "service",
    "caller-id",
    "local-address",
    "remote-address",
    "routes",
    "limit-bytes-in",
    "limit-bytes-out",
    "disabled",
    "comment",
)
ACTIVE_FIELDS = ("name", "service", "caller-id", "address", "encoding", "session-id", "radius")
ADDRESS_LIST_FIELDS = ("list", "address", "comment", "disabled", "timeout")
PROFILE_FIELDS = ("name", "local-address", "remote-address", "rate-limit", "address-list", "comment")
PRINT_ARGS = {".proplist", "count-only", "detail", "without-paging", "terse"}
OPTIONAL_EMPTY_MEANS_UNSET = {"comment", "local-address", "remote-address", "routes", "caller-id"}


class RouterOSSimulator:
    """A threaded RouterOS API server with in-memory state; see the module docstring.

    ``users`` maps user name → password. ``latency`` (seconds) delays every reply.
    ``ssl_context`` (a server-side context) turns on TLS. ``legacy_login`` emulates
    RouterOS before 6.43 (challenge/response login only). ``emit_empty`` emulates
    RouterOS 7.18+, which answers a print that matched nothing with ``!empty``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str] | None = None,
        latency: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        legacy_login: bool = False,
        emit_empty: bool = False,
        identity: str = "MikroTik",
        version: str = "7.16.2",
        profiles: Iterable[str] = ("default", "default-encryption", "Suspended_Profile"),
    ):
        self.host = host
        self._requested_port = port
        self.port = 0
        self.users = dict(users if users is not None else {"admin": ""})
        self.latency = latency
        self.ssl_context = ssl_context
        self.legacy_login = legacy_login
        self.emit_empty = emit_empty
        self.identity = identity
        self.version = version

        self._lock = threading.RLock()
        self._secrets = _Table(
            id_start=1,
            fields=SECRET_FIELDS,
            required=("name",),
            defaults={"service": "any", "profile": "default", "password": "", "caller-id": "", "disabled": "false"},
            bool_fields=frozenset({"disabled"}),
            named=True,
        )
        self._active = _Table(id_start=0x8000000A, fields=ACTIVE_FIELDS, bool_fields=frozenset({"radius"}))
        self._address_list = _Table(
            id_start=1,
            fields=ADDRESS_LIST_FIELDS,
            required=("list", "address"),
            defaults={"disabled": "false", "dynamic": "false"},
            bool_fields=frozenset({"disabled", "dynamic"}),
        )
        self._profiles = _Table(id_start=0, fields=PROFILE_FIELDS, required=("name",), named=True)
        self._list_index: dict[tuple[str, str], str] = {}
        self._session_ids = itertools.count(0x81000001)
        for name in profiles:
            self._insert_profile(name)

        self._command_counts: Counter[str] = Counter()
        self._traps_to_inject: list[tuple[str, str, int | None]] = []
        self._restart_after: tuple[int, bool, float] | None = None
        self._down_until = 0.0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._connections_total = 0

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> RouterOSSimulator:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self._requested_port, ssl=self.ssl_context)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="routeros-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for conn in list(self._connections):
                conn.kill()
            await self._server.wait_closed()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(timeout=5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> RouterOSSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # --- helpers for tests and the demo ---------------------------------------------

    def add_secret(
        self,
        name: str,
        password: str = "",
        *,
        profile: str = "default",
        service: str = "pppoe",
        disabled: bool = False,
        comment: str | None = None,
        **extra: str,
    ) -> str:
        """Create a PPP secret directly (no API round trip); returns its ``.id``."""
        values = {"name": name, "password": password, "profile": profile, "service": service}
        values["disabled"] = "true" if disabled else "false"
        if comment:
            values["comment"] = comment
        values.update({k.replace("_", "-"): v for k, v in extra.items()})
        with self._lock, _as_value_error():
            return self._add_secret(values)

    def add_secrets(self, names: Iterable[str], *, profile: str = "default", service: str = "pppoe") -> None:
        """Create many secrets at once (benchmarks)."""
        with self._lock, _as_value_error():
            for name in names:
                self._add_secret({"name": name, "password": "", "profile": profile, "service": service})

    def add_active(self, name: str, address: str, *, service: str = "pppoe", caller_id: str = "") -> str:
        """Bring a PPP session up for ``name``; returns its ``.id`` (``*8000000A``…)."""
        with self._lock:
            return self._active.insert(
                {
                    "name": name,
                    "service": service,
                    "caller-id": caller_id,
                    "address": address,
                    "encoding": "",
                    "session-id": f"0x{next(self._session_ids):X}",
                    "radius": "false",
                    "_started": str(_now()),
                }
            )

    def add_address_list_entry(
        self, list_name: str, address: str, *, comment: str | None = None, timeout: str | None = None
    ) -> str:
        values = {"list": list_name, "address": address}
        if comment:
            values["comment"] = comment
        if timeout:
            values["timeout"] = timeout
        with self._lock, _as_value_error():
            return self._add_list_entry(values)

    def add_profile(self, name: str) -> str:
        with self._lock:
            return self._insert_profile(name)

    def drop_session(self, name: str) -> int:
        """End every active session of ``name``; returns how many ended."""
        with self._lock:
            idents = [i for i, r in self._active.rows.items() if r["name"] == name]
            for ident in idents:
                self._active.delete(ident)
            return len(idents)

    def secret(self, name: str) -> dict[str, str] | None:
        with self._lock:
            ident = self._secrets.by_name.get(name)
            return self._public(self._secrets.rows[ident]) if ident else None

    def secrets(self) -> list[dict[str, str]]:
        with self._lock:
            return [self._public(r) for r in self._secrets.rows.values()]

    def active(self) -> list[dict[str, str]]:
        with self._lock:
            return [self._public(r) for r in self._active.rows.values()]

    def address_list(self, list_name: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            self._expire_list_entries()
            return [
                self._public(r)
                for r in self._address_list.rows.values()
                if list_name is None or r["list"] == list_name
            ]

    def state(self) -> dict[str, list[dict[str, str]]]:
        """Everything, for assertions and debugging."""
        return {"secrets": self.secrets(), "active": self.active(), "address_list": self.address_list()}

    @property
    def command_counts(self) -> Counter[str]:
        """Commands executed so far, by command word (``/ppp/secret/set``: 3, …)."""
        with self._lock:
            return Counter(self._command_counts)

    @property
    def connection_count(self) -> int:
        """Connections open now."""
        return len(self._connections)

    @property
    def connections_total(self) -> int:
        """Connections accepted since start."""
        return self._connections_total

    def inject_trap(self, command: str, message: str, *, category: int | None = None, times: int = 1) -> None:
        """Make the next ``times`` executions of ``command`` (e.g. ``/ppp/secret/set``)
        answer ``!trap`` with ``message`` instead of running."""
        with self._lock:
            self._traps_to_inject.extend([(command, message, category)] * times)

    def restart(self, *, drop_sessions: bool = False, down_for: float = 0.0) -> None:
        """Reboot: drop every connection and renumber every ``.id`` (rows keep their
        contents; address-list entries with a timeout live in RAM and are lost). A stale
        ``.id`` now names another row or none. ``drop_sessions`` also ends PPP sessions;
        ``down_for`` refuses new connections for that many seconds."""
        if self._loop is None or threading.current_thread() is self._thread:
            self._restart(drop_sessions, down_for)
            return
        done = threading.Event()

        def do() -> None:
            try:
                self._restart(drop_sessions, down_for)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(do)
        done.wait(timeout=5)

    def schedule_restart(self, after_commands: int, *, drop_sessions: bool = False, down_for: float = 0.0) -> None:
        """Reboot right after the ``after_commands``-th command from now has been
        executed, before its reply is sent (the client never learns it was applied)."""
        with self._lock:
            self._restart_after = (after_commands, drop_sessions, down_for)

    # --- state operations (call with the lock held) -----------------------------------

    @staticmethod
    def _public(row: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    def _insert_profile(self, name: str) -> str:
        if name in self._profiles.by_name:
            return self._profiles.by_name[name]
        return self._profiles.insert({"name": name})

    def _add_secret(self, values: dict[str, str]) -> str:
        name = values.get("name", "")
        if not name:
            raise _Trap("missing value(s) of argument(s) name")
        if name in self._secrets.by_name:
            raise _Trap("failure: secret with the same name already exists")
        self._check_profile(values.get("profile"))
        row = dict(self._secrets.defaults)
        row.update(values)
        return self._secrets.insert(row)

    def _check_profile(self, profile: str | None) -> None:
        if profile is not None and profile not in self._profiles.by_name:
            raise _Trap("input does not match any value of profile", 1)

    def _add_list_entry(self, values: dict[str, str]) -> str:
        for name in ("list", "address"):
            if not values.get(name):
                raise _Trap(f"missing value(s) of argument(s) {name}")
        self._expire_list_entries()
        key = (values["list"], values["address"])
        if key in self._list_index:
            raise _Trap("failure: already have such entry")
        row = dict(self._address_list.defaults)
        row.update(values)
        row["creation-time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if row.get("timeout"):
            try:
                row["_expires"] = str(_now() + parse_duration(row["timeout"]))
            except ValueError:
                raise _Trap("value of timeout out of range", 1) from None
            row["dynamic"] = "true"
        ident = self._address_list.insert(row)
        self._list_index[key] = ident
        return ident

    def _delete_list_entry(self, ident: str) -> None:
        row = self._address_list.delete(ident)
        self._list_index.pop((row["list"], row["address"]), None)

    def _expire_list_entries(self) -> None:
        now = _now()
        expired = [i for i, r in self._address_list.rows.items() if "_expires" in r and float(r["_expires"]) <= now]
        for ident in expired:
            self._delete_list_entry(ident)

    def _restart(self, drop_sessions: bool, down_for: float) -> None:
        with self._lock:
            # Reverse order: after the reboot *1 names what was the last row, so a client
            # that trusts old ids changes the wrong row, visibly.
            self._secrets.renumber(reversed(list(self._secrets.rows)))
            volatile = [i for i, r in self._address_list.rows.items() if "_expires" in r]
            for ident in volatile:
                self._delete_list_entry(ident)
            self._address_list.renumber(reversed(list(self._address_list.rows)))
            self._list_index = {(r["list"], r["address"]): i for i, r in self._address_list.rows.items()}
            if drop_sessions:
                self._active.rows.clear()
            else:
                # Sessions come back (subscribers redial) with new ids.
                self._active.id_start += 0x100
                self._active.renumber(list(self._active.rows))
            if down_for > 0:
                self._down_until = _now() + down_for
        for conn in list(self._connections):
            conn.kill()

    # --- connection handling (event loop thread) --------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if _now() < self._down_until:
            writer.transport.abort()
            return
        conn = _Connection(writer)
        self._connections.add(conn)
        self._connections_total += 1
        conn.processor = asyncio.create_task(self._process(conn))
        decoder = SentenceDecoder()
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                arrival = asyncio.get_running_loop().time()
                try:
                    sentences = decoder.feed(data)
                except ProtocolViolation as exc:
                    conn.queue.append(_Command(arrival, ["!fatal", str(exc)], None))
                    conn.wakeup.set()
                    break
                for raw in sentences:
                    if not raw:
                        continue  # empty sentences are ignored
                    words = [w.decode(WORD_ENCODING, WORD_ERRORS) for w in raw]
                    tag = next((w[5:] for w in words if w.startswith(".tag=")), None)
                    if words[0] == "/cancel":
                        self._cancel_queued(conn, words)
                    conn.queue.append(_Command(arrival, words, tag))
                conn.wakeup.set()
            conn.eof = True
            conn.wakeup.set()
            await conn.processor
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            conn.kill()
            self._connections.discard(conn)

    def _cancel_queued(self, conn: _Connection, words: list[str]) -> None:
        target = next((split_attribute(w)[1] for w in words if w.startswith("=tag=")), None)
        for cmd in conn.queue:
            if target is None or cmd.tag == target:
                cmd.cancelled = True

    async def _process(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        writer = conn.writer
        try:
            while not conn.closed:
                if not conn.queue:
                    if conn.eof:
                        return
                    conn.wakeup.clear()
                    await conn.wakeup.wait()
                    continue
                cmd = conn.queue.popleft()
                delay = cmd.arrival + self.latency - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if conn.closed:
                    return
                replies, close = self._execute(conn, cmd)
                if replies is _RESTART_NOW:
                    return
                writer.write(b"".join(encode_sentence(r) for r in replies))
                if close:
                    await writer.drain()
                    conn.kill()
                    return
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    # --- command execution ----------------------------------------------------------

    def _execute(self, conn: _Connection, cmd: _Command):
        """Run one sentence; returns (reply sentences, close connection after?)."""
        words = cmd.words
        command = words[0]
        tagged = [f".tag={cmd.tag}"] if cmd.tag is not None else []

        if command == "!fatal":  # a protocol violation found by the reader
            return [["!fatal", words[1]]], True

        def trap(message: str, category: int | None = None) -> list[list[str]]:
            sentence = ["!trap", *tagged, f"=message={message}"]
            if category is not None:
                sentence.insert(1 + len(tagged), f"=category={category}")
            return [sentence, ["!done", *tagged]]

        if cmd.cancelled and command != "/cancel":
            return trap("interrupted", 2), False

        attrs: dict[str, str] = {}
        queries: list[str] = []
        for word in words[1:]:
            if word.startswith("="):
                key, value = split_attribute(word)
                attrs[key] = value
            elif word.startswith("?"):
                queries.append(word)
            elif word.startswith(".tag="):
                pass
            else:
                return trap(f"unknown parameter {word}", 1), False

        if command == "/quit":
            return [["!fatal", "session terminated on request"]], True
        if command == "/login":
            return self._login(conn, attrs, tagged), False
        if not conn.logged_in:
            return [["!fatal", "not logged in"]], True
        if command == "/cancel":
            return [["!done", *tagged]], False

        with self._lock:
            self._command_counts[command] += 1
            restart = None
            if self._restart_after is not None:
                left, drop_sessions, down_for = self._restart_after
                left -= 1
                self._restart_after = (left, drop_sessions, down_for) if left > 0 else None
                if left <= 0:
                    restart = (drop_sessions, down_for)
            injected = next((t for t in self._traps_to_inject if t[0] == command), None)
            if injected is not None:
                self._traps_to_inject.remove(injected)
                replies = trap(injected[1], injected[2])
            else:
                try:
                    rows, done = self._dispatch(command, attrs, queries)
                except _Trap as exc:
                    replies = trap(exc.message, exc.category)
                except QueryError as exc:
                    replies = trap(f"invalid query: {exc}", 1)
                except Exception as exc:  # a simulator bug: show it to the client, keep serving
                    replies = trap(f"failure: simulator error: {exc!r}", 4)
                else:
                    replies = [["!re", *tagged, *(f"={k}={v}" for k, v in row.items())] for row in rows]
                    if not rows and self.emit_empty and command.endswith(("/print", "/getall")):
                        replies.append(["!empty", *tagged])
                    replies.append(["!done", *tagged, *(f"={k}={v}" for k, v in done.items())])
        if restart is not None:
            self._restart(*restart)
            return _RESTART_NOW, True
        return replies, False

    def _login(self, conn: _Connection, attrs: dict[str, str], tagged: list[str]) -> list[list[str]]:
        name = attrs.get("name")
        if self.legacy_login:
            if "response" not in attrs:
                # Before 6.43 every /login without a response gets a challenge.
                conn.challenge = _secrets.token_bytes(16)
                return [["!done", *tagged, f"=ret={conn.challenge.hex()}"]]
            ok = False
            if conn.challenge is not None and name in self.users:
                digest = hashlib.md5(
                    b"\x00" + self.users[name].encode("utf-8") + conn.challenge, usedforsecurity=False
                ).hexdigest()
                ok = attrs["response"].lower() == "00" + digest
            conn.challenge = None
            if not ok:
                return [["!trap", *tagged, "=message=cannot log in"], ["!done", *tagged]]
        else:
            # [unconfirmed] how 6.43+ answers a bare /login; refusing it is what clients see.
            if name is None or "password" not in attrs or self.users.get(name) != attrs["password"]:
                return [
                    ["!trap", *tagged, "=message=invalid user name or password (6)"],
                    ["!done", *tagged],
                ]
        conn.logged_in = True
        return [["!done", *tagged]]

    def _dispatch(self, command: str, attrs: dict[str, str], queries: list[str]):
        """Returns (rows for !re, attributes for !done); raises _Trap."""
        menu, _, verb = command.rpartition("/")
        if verb == "getall":
            verb = "print"
        entry = _MENUS.get(menu)
        if entry is None or verb not in entry[1]:
            raise _Trap("no such command", 0)
        table_name = entry[0]
        if verb == "print":
            return self._print(menu, attrs, queries)
        if queries:
            raise _Trap(f"unknown parameter {queries[0]}", 1)
        if menu == "/system/identity":  # set
            self.identity = attrs.get("name", self.identity)
            return [], {}
        table: _Table = getattr(self, table_name)
        if verb == "add":
            return [], {"ret": self._api_add(menu, table, attrs)}
        idents = table.resolve(attrs.pop(".id", None) or attrs.pop("numbers", ""))
        attrs.pop("numbers", None)
        if verb == "remove":
            if attrs:
                raise _Trap(f"unknown parameter {next(iter(attrs))}", 1)
            for ident in idents:
                if table is self._address_list:
                    self._delete_list_entry(ident)
                else:
                    table.delete(ident)
            return [], {}
        if verb in ("disable", "enable"):
            attrs = {"disabled": "true" if verb == "disable" else "false"}
        self._api_set(menu, table, idents, attrs)
        return [], {}

    def _clean_values(self, table: _Table, attrs: dict[str, str]) -> dict[str, str]:
        values = {}
        for key, value in attrs.items():
            if key not in table.fields:
                raise _Trap(f"unknown parameter {key}", 1)
            if key in table.bool_fields:
                low = value.lower()
                if low not in _TRUE | _FALSE:
                    raise _Trap(f"value of {key} must be yes or no", 1)
                value = "true" if low in _TRUE else "false"
            values[key] = value
        return values

    def _api_add(self, menu: str, table: _Table, attrs: dict[str, str]) -> str:
        values = self._clean_values(table, attrs)
        for key in list(values):
            if key in OPTIONAL_EMPTY_MEANS_UNSET and values[key] == "" and key != "caller-id":
                del values[key]
        if table is self._secrets:
            return self._add_secret(values)
        if table is self._address_list:
            return self._add_list_entry(values)
        raise _Trap("no such command", 0)

    def _api_set(self, menu: str, table: _Table, idents: list[str], attrs: dict[str, str]) -> None:
        values = self._clean_values(table, attrs)
        if table is self._secrets:
            self._check_profile(values.get("profile"))
            if "name" in values:
                if not values["name"]:
                    raise _Trap("missing value(s) of argument(s) name")
                owner = table.by_name.get(values["name"])
                if owner is not None and (len(idents) > 1 or owner != idents[0]):
                    raise _Trap("failure: secret with the same name already exists")
        if table is self._address_list and ("list" in values or "address" in values):
            for ident in idents:
                row = table.rows[ident]
                key = (values.get("list", row["list"]), values.get("address", row["address"]))
                if self._list_index.get(key, ident) != ident:
                    raise _Trap("failure: already have such entry")
        for ident in idents:
            row = table.rows[ident]
            if table.named and "name" in values:
                table.by_name.pop(row["name"], None)
                table.by_name[values["name"]] = ident
            if table is self._address_list:
                self._list_index.pop((row["list"], row["address"]), None)
            for key, value in values.items():
                if key in OPTIONAL_EMPTY_MEANS_UNSET and value == "" and key != "caller-id":
                    row.pop(key, None)
                elif key == "timeout" and table is self._address_list:
                    if value:
                        row["timeout"] = value
                        row["_expires"] = str(_now() + parse_duration(value))
                    else:
                        row.pop("timeout", None)
                        row.pop("_expires", None)
                else:
                    row[key] = value
            if table is self._address_list:
                self._list_index[(row["list"], row["address"])] = ident

    def _print(self, menu: str, attrs: dict[str, str], queries: list[str]):
        for key in attrs:
            if key not in PRINT_ARGS:
                raise _Trap(f"unknown parameter {key}", 1)
        if menu == "/system/identity":
            rows = [{"name": self.identity}]
        elif menu == "/system/resource":
            rows = [
                {
                    "uptime": _format_duration(_now() - _STARTED),
                    "version": self.version,
                    "build-time": "2024-12-09 08:30:00",
                    "free-memory": "201326592",
                    "total-memory": "268435456",
                    "cpu": "QEMU",
                    "cpu-count": "1",
                    "cpu-load": "1",
                    "architecture-name": "x86_64",
                    "board-name": "CHR",
                    "platform": "MikroTik",
                }
            ]
        else:
            table: _Table = getattr(self, _MENUS[menu][0])
            if table is self._address_list:
                self._expire_list_entries()
            candidates: Iterable[dict[str, str]] = table.rows.values()
            # Fast path for the lookup every billing system makes: one secret by name.
            if table.named and len(queries) == 1:
                match = re.fullmatch(r"\?=?name=(.*)", queries[0], re.DOTALL)
                if match:
                    ident = table.by_name.get(match.group(1))
                    candidates = [table.rows[ident]] if ident else []
            rows = []
            for row in candidates:
                shown = self._shown(table, row)
                if not queries or evaluate_query(queries, shown, bool_fields=table.bool_fields):
                    rows.append(shown)
        if queries and menu.startswith("/system/"):
            rows = [r for r in rows if evaluate_query(queries, r)]
        if "count-only" in attrs:
            return [], {"ret": str(len(rows))}
        proplist = attrs.get(".proplist")
        if proplist is not None:
            keys = [k for k in proplist.split(",") if k]
            rows = [{k: row[k] for k in keys if k in row} for row in rows]
        return rows, {}

    def _shown(self, table: _Table, row: dict[str, str]) -> dict[str, str]:
        shown = {k: v for k, v in row.items() if not k.startswith("_")}
        if table is self._active:
            shown["uptime"] = _format_duration(_now() - float(row["_started"]))
        elif "_expires" in row:
            shown["timeout"] = _format_duration(max(0.0, float(row["_expires"]) - _now()))
        return shown


_STARTED = _now()

# menu → (table attribute, verbs)
_MENUS: dict[str, tuple[str, frozenset[str]]] = {
    "/ppp/secret": ("_secrets", frozenset({"print", "add", "set", "remove", "disable", "enable"})),
    "/ppp/active": ("_active", frozenset({"print", "remove"})),
    "/ppp/profile": ("_profiles", frozenset({"print"})),
    "/ip/firewall/address-list": ("_address_list", frozenset({"print", "add", "set", "remove", "disable", "enable"})),
    "/system/identity": ("", frozenset({"print", "set"})),
    "/system/resource": ("", frozenset({"print"})),
}


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


@dataclass
class DatabaseRouter:
    """What a router billed by ispbill holds, rebuilt from the database (see
    :func:`read_database_router`)."""

    name: str
    port: int
    username: str
    password: str
    suspended_profile: str
    address_list: str
    # (subscriber id, user name, profile, online address or "", suspended as last applied)
    accounts: list[tuple[int, str, str, str, bool]] = field(default_factory=list)


def read_database_router(name: str) -> DatabaseRouter | None:
    """Read the router called ``name`` and its subscribers through Django (settings from
    the environment, as for ``ispbill``); None if there is no such router.

    The simulator keeps its state in memory, so a fresh one knows no accounts. This gives
    it what the real router would still hold across a restart: one PPP secret per
    subscriber on the router, on the package's profile, or on the suspended profile (with
    the address-list entry) where billing last *applied* a suspension; a live session for
    every subscriber who is not disabled. Enforcement still queued in the outbox (the demo
    load only queues its suspensions) is not pre-applied: the worker applies it.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
    import django

    django.setup()
    from ispbill.network.models import NetworkState, Router
    from ispbill.subscribers.models import Subscriber

    router = Router.objects.filter(name=name).first()
    if router is None:
        return None
    out = DatabaseRouter(
        name=router.name, port=router.port, username=router.username, password=router.password,
        suspended_profile=router.suspended_profile, address_list=router.suspended_address_list,
    )
    states = {
        sub_id: (applied, address)
        for sub_id, applied, address in NetworkState.objects.filter(subscriber__router=router).values_list(
            "subscriber_id", "applied", "address"
        )
    }
    rows = (
        Subscriber.objects.filter(router=router)
        .order_by("id")
        .values_list("id", "pppoe_username", "package__router_profile", "status")
    )
    for sub_id, username, profile, status in rows:
        applied, address = states.get(sub_id, ("unknown", ""))
        if status == "disabled":
            address = ""  # disconnected: no session
        elif not address:
            address = f"10.{64 + (sub_id >> 16) % 64}.{(sub_id >> 8) & 255}.{sub_id & 255}"
        out.accounts.append((sub_id, username, profile or "default", address, applied == "suspended"))
    return out


def load_database_router(sim: RouterOSSimulator, router: DatabaseRouter) -> str:
    """Create ``router``'s accounts on ``sim``; returns a one-line summary."""
    sim.add_profile(router.suspended_profile)
    suspended = online = 0
    for sub_id, username, profile, address, is_suspended in router.accounts:
        sim.add_profile(profile)
        sim.add_secret(username, profile=router.suspended_profile if is_suspended else profile)
        if address:
            sim.add_active(username, address)
            online += 1
            if is_suspended:
                sim.add_address_list_entry(router.address_list, address, comment=str(sub_id))
        suspended += is_suspended
    return (
        f"loaded router '{router.name}' from the database: {len(router.accounts)} secrets"
        f" ({suspended} suspended as last applied), {online} online"
    )


def _parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, password


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ispbill.sim.routeros", description="Run a simulated MikroTik RouterOS API server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default 8728, or the router's port with --from-database")
    parser.add_argument("--user", action="append", type=_parse_user, metavar="NAME:PASSWORD", default=[])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every reply by this much")
    parser.add_argument("--tls-cert", help="PEM certificate (with --tls-key) to serve TLS, as on port 8729")
    parser.add_argument("--tls-key")
    parser.add_argument("--legacy-login", action="store_true", help="challenge login only (RouterOS < 6.43)")
    parser.add_argument("--emit-empty", action="store_true", help="answer empty prints with !empty (7.18+)")
    parser.add_argument("--identity", default="MikroTik")
    parser.add_argument("--demo-secrets", type=int, default=0, help="create this many secrets 1001, 1002, …")
    parser.add_argument(
        "--from-database", metavar="ROUTER",
        help="start with the PPP secrets and sessions of the subscribers on this router in ispbill's database"
        " (DATABASE_URL / ISPBILL_DATA_DIR as for ispbill); its user name, password and port are the defaults",
    )
    args = parser.parse_args(argv)

    from_db = None
    if args.from_database:
        from_db = read_database_router(args.from_database)
        from django.db import connections

        connections.close_all()  # read once at start-up; hold no database connection while serving
    if args.from_database and from_db is None:
        print(f"no router named {args.from_database!r} in the database; starting with no accounts", flush=True)
    users = dict(args.user) if args.user else ({from_db.username: from_db.password} if from_db else {"admin": ""})
    port = args.port if args.port is not None else (from_db.port if from_db else 8728)

    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    sim = RouterOSSimulator(
        args.host,
        port,
        users=users,
        latency=args.latency_ms / 1000.0,
        ssl_context=context,
        legacy_login=args.legacy_login,
        emit_empty=args.emit_empty,
        identity=args.identity,
    )
    sim.add_secrets(str(1001 + i) for i in range(args.demo_secrets))
    if from_db is not None:
        print(load_database_router(sim, from_db), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sim:
        print(f"RouterOS API simulator listening on {sim.host}:{sim.port}{' (TLS)' if context else ''}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
