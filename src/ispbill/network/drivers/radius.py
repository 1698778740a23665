"""RADIUS enforcement: FreeRADIUS's SQL tables plus RFC 5176 Disconnect-Requests.

Larger ISPs authenticate PPPoE through FreeRADIUS (``rlm_sql``). What a subscriber may do
is decided when their session authenticates, from the groups they belong to in
``radusergroup``: FreeRADIUS reads the groups in ``priority`` order (lowest first) and
adds each group's ``radgroupreply`` attributes to the Access-Accept. This driver changes
those rows in the FreeRADIUS database (a database of its own, ``RADIUS_DATABASE_URL``,
written with plain DB-API: psycopg for PostgreSQL, sqlite3 for SQLite) and then ends the
live session with a Disconnect-Request, so that the NAS re-authenticates it and the new
attributes apply.

Suspend
    The user joins the suspended group (``suspended`` by default) with a priority that
    sorts before every other group of theirs (0, or one below their lowest). The group's
    reply attributes are made to exist: by default ``Mikrotik-Address-List := suspended``
    (the walled garden's firewall list on the NAS) and ``Mikrotik-Rate-Limit :=
    512k/512k``; pass ``suspended_reply`` to change them, e.g. add
    ``"Framed-Pool": "pool-suspended"`` when the NAS has that pool. Attributes already in
    ``radgroupreply`` are never overwritten (staff may have tuned them there), missing
    ones are added. FreeRADIUS 3.2 stops after the first group that has reply items
    unless that group says ``Fall-Through = Yes`` (which is why the order matters); the
    suspended group also gets ``Fall-Through := No`` to make that explicit, so a package
    group's ``:=`` attributes can never replace the suspended ones.
Restore
    The suspended group row goes; the package group (``Target.profile``) keeps or gets a
    row that sorts first among the user's groups. Other groups are left alone.
Disconnect
    After the database change commits, every open ``radacct`` row (``acctstoptime IS
    NULL``) of the user on this NAS gets a Disconnect-Request to ``nas_address:coa_port``
    with User-Name, Acct-Session-Id and Framed-IP-Address. Disconnect-ACK means done; a
    Disconnect-NAK with Error-Cause 503 (Session-Context-Not-Found) also means done (the
    session had already ended); any other NAK raises :class:`RouterCommandError`; no
    answer raises :class:`RouterUnavailable`. No open session: no packet.

    Every call disconnects, even when the database already held the requested state.
    RADIUS gives no way to see which attributes a live session got, so after a lost
    Disconnect (a timeout, or a worker that died after the commit) only another
    Disconnect can be sure the session re-authenticates. The cost of a needless one is
    a redial of a few seconds; suspend and restore actions are only queued when the
    billing state changes, so it is rare. (The RouterOS driver can look at the live
    session's address-list entry instead, and only ends sessions when something changed.)

Reading state (reconcile)
    ``secrets``: users with a password in ``radcheck`` (``Cleartext-Password`` or another
    ``*-Password`` attribute), ``profile`` = the suspended group while they are in it,
    else their first group; ``disabled`` when ``Auth-Type := Reject``. FreeRADIUS users
    are not per NAS: every router sharing the database sees all of them. ``active``: open
    ``radacct`` rows of this NAS. ``suspended``: RADIUS has no address list to read, so
    it is a view: one entry per online user (on this NAS) who is in the suspended group,
    keyed by the session's Framed-IP-Address, ``list`` = the address list name and
    ``comment`` always ``""`` (there is no place for the subscriber id). It says what the
    session's next authentication gives, not what the live session got (see above).
    Compare profiles with :attr:`RadiusDriver.suspended_profile` (the suspended group),
    not with ``Router.suspended_profile``.

A user name without rows in ``radcheck`` is not an error (FreeRADIUS may know the user
from elsewhere): the group rows are written all the same, and reconcile reports the user
as missing. A NAS without a shared secret is :class:`RouterUnavailable` with reason
``"auth"`` as soon as a Disconnect-Request is needed.

Sessions belong to this NAS when ``radacct.nasipaddress`` equals ``nas_ip_address``
(default: ``nas_address``, resolved if it is a name): the address the NAS reports as
NAS-IP-Address (MikroTik: ``/radius src-address``). The shared secret is never logged and
never part of a repr or an error message.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import psycopg
import psycopg.errors
from pyrad import packet as radius_packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

from ispbill.network.drivers.base import (
    ActiveSession,
    AddressListEntry,
    BulkResult,
    DriverError,
    RouterCommandError,
    RouterState,
    RouterUnavailable,
    SecretInfo,
    Target,
)

__all__ = ["DEFAULT_RATE_LIMIT", "DICTIONARY_PATH", "RadiusDatabase", "RadiusDriver", "radius_dictionary"]

log = logging.getLogger("ispbill.network.radius")

DICTIONARY_PATH = Path(__file__).with_name("radius.dictionary")
DEFAULT_RATE_LIMIT = "512k/512k"
SUSPENDED_PRIORITY = 0
PACKAGE_PRIORITY = 1
SESSION_NOT_FOUND = 503  # RFC 5176 Error-Cause: Session-Context-Not-Found
ERROR_CAUSE = 101
# radcheck attributes that hold a user's password, in any of FreeRADIUS's encodings.
PASSWORD_ATTRIBUTES = (
    "Cleartext-Password",
    "Password-With-Header",
    "Crypt-Password",
    "MD5-Password",
    "SMD5-Password",
    "SHA-Password",
    "SSHA-Password",
    "SHA2-Password",
    "SSHA2-224-Password",
    "SSHA2-256-Password",
    "SSHA2-384-Password",
    "SSHA2-512-Password",
    "PBKDF2-Password",
    "NT-Password",
    "LM-Password",
)
IN_CHUNK = 500  # usernames per "IN (…)" list

T = TypeVar("T")

_dictionary: Dictionary | None = None
_dictionary_lock = threading.Lock()


def radius_dictionary() -> Dictionary:
    """ispbill's RADIUS dictionary (``radius.dictionary`` beside this module), read once."""
    global _dictionary
    with _dictionary_lock:
        if _dictionary is None:
            _dictionary = Dictionary(str(DICTIONARY_PATH))
        return _dictionary


# ---------------------------------------------------------------------------------------
# The FreeRADIUS database
# ---------------------------------------------------------------------------------------


class RadiusDatabase:
    """Where FreeRADIUS's tables live: ``postgresql://…`` (or ``postgres://…``) or
    ``sqlite:///relative/path`` / ``sqlite:////absolute/path``.

    ``where`` names the database without credentials, for messages."""

    def __init__(self, url: str):
        url = (url or "").strip()
        scheme = url.partition(":")[0].lower()
        if scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
            self._conninfo = url
            self.path = ""
            try:
                parts = urlsplit(url)
                host, port = parts.hostname or "localhost", parts.port or 5432
            except ValueError as exc:
                raise ValueError(f"RADIUS database URL is not a valid postgresql:// URL ({exc})") from None
            self.where = f"{host}:{port}/{parts.path.lstrip('/')}"
        elif scheme == "sqlite":
            rest = url[len("sqlite://") :].partition("?")[0]
            if not rest.startswith("/") or len(rest) < 2:
                raise ValueError("RADIUS database URL must look like sqlite:///path/to/file")
            self.dialect = "sqlite"
            self._conninfo = ""
            self.path = rest[1:]
            self.where = self.path
        else:
            raise ValueError(
                f"RADIUS database URL must start with postgresql:// or sqlite:///, not {scheme or '(empty)'}://"
            )

    def connect(self, *, timeout: float = 10.0, create: bool = False) -> Any:
        """A new DB-API connection in autocommit mode (transactions are explicit).
        SQLite: the file must exist unless ``create``."""
        if self.dialect == "postgresql":
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(1, round(timeout)))
        mode = "rwc" if create else "rw"
        return sqlite3.connect(
            f"file:{quote(self.path)}?mode={mode}",
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,  # the driver's lock lets one thread at a time use it
        )

    def sql(self, text: str) -> str:
        """Queries are written with ``?`` placeholders; psycopg wants ``%s``."""
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def ip_param(self) -> str:
        """A placeholder compared with an address column (``inet`` on PostgreSQL)."""
        return "?" if self.dialect == "sqlite" else "CAST(? AS inet)"

    def ip_text(self, column: str) -> str:
        """An address column as text without a prefix length."""
        return column if self.dialect == "sqlite" else f"host({column})"

    def begin(self, cur: Any, *, write: bool) -> None:
        if self.dialect == "sqlite":
            # IMMEDIATE: take the write lock before reading, so two writers cannot both
            # decide that a row is missing and both insert it.
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        elif write:
            cur.execute("BEGIN")
            # FreeRADIUS has no unique keys on these tables: serialise our writers. This
            # mode lets FreeRADIUS's reads (authentication) carry on.
            cur.execute("LOCK TABLE radusergroup, radgroupreply IN SHARE ROW EXCLUSIVE MODE")
        else:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def server_version(self, cur: Any) -> str:
        if self.dialect == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        cur.execute("SHOW server_version")
        return f"PostgreSQL {cur.fetchone()[0]}"


def _db_failure(exc: BaseException, context: str) -> DriverError:
    """A DB-API exception → RouterUnavailable (can't reach the database: retry later) or
    RouterCommandError (the database refused: missing tables, permissions, …)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        lowered = detail.lower()
        if "locked" in lowered or "busy" in lowered:
            return RouterUnavailable(f"{context}: {detail}", reason="timeout")
        if "unable to open" in lowered or "disk i/o" in lowered:
            return RouterUnavailable(f"{context}: {detail}", reason="connect")
        return RouterCommandError(f"{context}: {detail}", command=context)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return RouterCommandError(f"{context}: {detail} (are the FreeRADIUS tables there?)", command=context)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return RouterCommandError(f"{context}: {detail}", command=context)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        lowered = detail.lower()
        if isinstance(exc, psycopg.errors.InvalidPassword | psycopg.errors.InvalidAuthorizationSpecification) or (
            "authentication failed" in lowered or "password" in lowered
        ):
            reason = "auth"
        elif "timeout" in lowered or "timed out" in lowered or isinstance(exc, psycopg.errors.QueryCanceled):
            reason = "timeout"
        else:
            reason = "connect"
        return RouterUnavailable(f"{context}: {detail}", reason=reason)
    return RouterCommandError(f"{context}: {detail}", command=context)


def _connection_lost(exc: BaseException, conn: Any) -> bool:
    """Whether ``exc`` means the connection itself is gone (reconnecting may help)."""
    if isinstance(exc, psycopg.Error):
        return bool(getattr(conn, "broken", False) or getattr(conn, "closed", False)) or isinstance(
            exc, psycopg.InterfaceError
        )
    return False


# ---------------------------------------------------------------------------------------
# RFC 5176
# ---------------------------------------------------------------------------------------


class _CoAClient(Client):
    """pyrad's blocking client, which can close its socket."""

    def close(self) -> None:
        self._CloseSocket()


@dataclass(frozen=True)
class _Session:
    row_id: str
    username: str
    session_id: str
    address: str
    caller_id: str = ""
    session_time: int | None = None


def _error_causes(reply: radius_packet.Packet) -> list[int]:
    causes = []
    for raw in reply.get(ERROR_CAUSE, []) or []:
        if isinstance(raw, bytes) and len(raw) == 4:
            causes.append(int.from_bytes(raw, "big"))
    return causes


def _uptime(seconds: int | None) -> str:
    """Seconds → RouterOS-style ``1d2h3m4s`` (blank when the NAS never reported it)."""
    if seconds is None or seconds < 0:
        return ""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------


@dataclass
class _Membership:
    row_id: int
    groupname: str
    priority: int


@dataclass
class _GroupChanges:
    inserts: list[tuple[str, str, int]]
    updates: list[tuple[int, int]]  # (priority, id)
    deletes: list[int]


class RadiusDriver:
    """Driver for one NAS authenticated through FreeRADIUS (see the module docstring).

    ``timeout``: seconds to wait for each answer to a Disconnect-Request; ``retries``: how
    many times it is sent again when no answer comes (at most ``retries + 1`` sends).
    ``in_flight``: Disconnect-Requests a bulk operation keeps outstanding at once.
    """

    def __init__(
        self,
        radius_db_url: str,
        nas_address: str,
        coa_port: int,
        secret: str,
        *,
        suspended_group: str = "suspended",
        address_list: str = "suspended",
        suspended_reply: Mapping[str, str] | None = None,
        nas_ip_address: str | None = None,
        timeout: float = 3,
        retries: int = 2,
        in_flight: int = 8,
        db_timeout: float = 10.0,
    ):
        self.db = RadiusDatabase(radius_db_url)
        self.nas_address = str(nas_address)
        self.coa_port = int(coa_port)
        self._secret = (secret or "").encode("utf-8")
        self.suspended_group = suspended_group
        self.address_list = address_list
        reply = dict(suspended_reply) if suspended_reply is not None else {
            "Mikrotik-Address-List": address_list,
            "Mikrotik-Rate-Limit": DEFAULT_RATE_LIMIT,
        }
        reply.setdefault("Fall-Through", "No")
        self.suspended_reply = reply
        self._nas_ip = nas_ip_address
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.in_flight = max(1, int(in_flight))
        self.db_timeout = db_timeout
        self._conn: Any = None
        self._db_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RadiusDriver NAS {self.nas_address}:{self.coa_port}, FreeRADIUS SQL at {self.db.where}>"

    @property
    def suspended_profile(self) -> str:
        """What :meth:`read_state` reports as a suspended user's profile (the suspended
        group): compare with this, not with ``Router.suspended_profile``."""
        return self.suspended_group

    # --- database ---------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self.db.connect(timeout=self.db_timeout)
            except (psycopg.Error, sqlite3.Error) as exc:
                raise _db_failure(exc, f"cannot connect to the FreeRADIUS database at {self.db.where}") from exc
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _transaction(self, what: str, fn: Callable[[Any], T], *, write: bool) -> T:
        """Run ``fn(cursor)`` in one transaction; reconnect once if a reused connection
        turns out to be dead (every transaction here may run twice)."""
        with self._db_lock:
            for attempt in range(2):
                reused = self._conn is not None
                conn = self._connection()
                cur = conn.cursor()
                try:
                    self.db.begin(cur, write=write)
                    result = fn(cur)
                    cur.execute("COMMIT")
                    return result
                except (psycopg.Error, sqlite3.Error) as exc:
                    lost = _connection_lost(exc, conn)
                    if lost:
                        self._drop_connection()
                    else:
                        self._rollback(cur)
                    if lost and reused and attempt == 0:
                        continue
                    raise _db_failure(exc, f"{what} in the FreeRADIUS database at {self.db.where}") from exc
                except BaseException:
                    self._rollback(cur)
                    raise
                finally:
                    try:
                        cur.close()
                    except Exception:
                        pass
        raise AssertionError("unreachable")

    def _rollback(self, cur: Any) -> None:
        try:
            cur.execute("ROLLBACK")
        except Exception:
            self._drop_connection()  # a connection in an unknown state is not reused

    def close(self) -> None:
        with self._db_lock:
            self._drop_connection()

    def __enter__(self) -> RadiusDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _nas_ip_address(self) -> str:
        if self._nas_ip is None:
            try:
                self._nas_ip = str(ipaddress.ip_address(self.nas_address))
            except ValueError:
                try:
                    infos = socket.getaddrinfo(self.nas_address, None, socket.AF_INET, socket.SOCK_DGRAM)
                except OSError as exc:
                    raise RouterUnavailable(f"cannot resolve NAS {self.nas_address!r}: {exc}") from exc
                self._nas_ip = str(infos[0][4][0])
        return self._nas_ip

    def _in_chunks(self, cur: Any, query: str, names: Sequence[str], extra: Sequence[Any] = ()) -> list[tuple]:
        """Run ``query`` (with ``{names}`` for a placeholder list) over ``names`` in chunks."""
        rows: list[tuple] = []
        for start in range(0, len(names), IN_CHUNK):
            chunk = list(names[start : start + IN_CHUNK])
            marks = ", ".join("?" * len(chunk))
            cur.execute(self.db.sql(query.format(names=marks)), [*extra, *chunk])
            rows.extend(cur.fetchall())
        return rows

    def _memberships(self, cur: Any, names: Sequence[str]) -> dict[str, list[_Membership]]:
        out: dict[str, list[_Membership]] = {}
        query = "SELECT id, username, groupname, priority FROM radusergroup WHERE username IN ({names}) ORDER BY priority, id"
        for row_id, username, groupname, priority in self._in_chunks(cur, query, names):
            out.setdefault(username, []).append(_Membership(int(row_id), groupname, int(priority)))
        return out

    def _open_sessions(self, cur: Any, names: Sequence[str] | None) -> dict[str, list[_Session]]:
        """Open sessions on this NAS, newest first per user (all users when ``names`` is None)."""
        db = self.db
        query = (
            f"SELECT radacctid, username, acctsessionid, {db.ip_text('framedipaddress')}, callingstationid, "
            f"acctsessiontime FROM radacct WHERE acctstoptime IS NULL AND nasipaddress = {db.ip_param()}"
        )
        order = " ORDER BY acctstarttime DESC, radacctid DESC"
        nas_ip = self._nas_ip_address()
        if names is None:
            cur.execute(db.sql(query + order), [nas_ip])
            rows = cur.fetchall()
        else:
            rows = self._in_chunks(cur, query + " AND username IN ({names})" + order, names, [nas_ip])
        out: dict[str, list[_Session]] = {}
        for row_id, username, session_id, address, caller_id, session_time in rows:
            out.setdefault(username or "", []).append(
                _Session(
                    row_id=str(row_id),
                    username=username or "",
                    session_id=session_id or "",
                    address=str(address or ""),
                    caller_id=caller_id or "",
                    session_time=int(session_time) if session_time is not None else None,
                )
            )
        return out

    def _ensure_suspended_reply(self, cur: Any) -> None:
        cur.execute(self.db.sql("SELECT attribute FROM radgroupreply WHERE groupname = ?"), [self.suspended_group])
        present = {row[0] for row in cur.fetchall()}
        missing = [(self.suspended_group, attr, ":=", value) for attr, value in self.suspended_reply.items() if attr not in present]
        if missing:
            cur.executemany(
                self.db.sql("INSERT INTO radgroupreply (groupname, attribute, op, value) VALUES (?, ?, ?, ?)"), missing
            )

    def _plan(self, action: str, target: Target, mine: list[_Membership], changes: _GroupChanges) -> None:
        group = self.suspended_group
        suspended = [m for m in mine if m.groupname == group]
        if action == "suspend":
            others = [m.priority for m in mine if m.groupname != group]
            want = min(SUSPENDED_PRIORITY, min(others) - 1) if others else SUSPENDED_PRIORITY
            keep, extra = (suspended[0], suspended[1:]) if suspended else (None, [])
            if keep is None:
                changes.inserts.append((target.username, group, want))
            elif keep.priority != want:
                changes.updates.append((want, keep.row_id))
            changes.deletes.extend(m.row_id for m in extra)
            return
        changes.deletes.extend(m.row_id for m in suspended)
        package = [m for m in mine if m.groupname == target.profile]
        others = [m.priority for m in mine if m.groupname not in (group, target.profile)]
        first = min(others) if others else None
        if package:
            keep = package[0]
            changes.deletes.extend(m.row_id for m in package[1:])
            if first is not None and keep.priority >= first:
                changes.updates.append((first - 1, keep.row_id))
        else:
            want = PACKAGE_PRIORITY if first is None or PACKAGE_PRIORITY < first else first - 1
            changes.inserts.append((target.username, target.profile, want))

    def _write_groups(self, action: str, targets: Sequence[Target]) -> dict[str, list[_Session]]:
        """One transaction: every target's radusergroup rows (and the suspended group's
        replies); returns the open sessions to end."""

        def write(cur: Any) -> dict[str, list[_Session]]:
            names = [t.username for t in targets]
            if action == "suspend":
                self._ensure_suspended_reply(cur)
            memberships = self._memberships(cur, names)
            changes = _GroupChanges([], [], [])
            for target in targets:
                self._plan(action, target, memberships.get(target.username, []), changes)
            sql = self.db.sql
            if changes.deletes:
                cur.executemany(sql("DELETE FROM radusergroup WHERE id = ?"), [(i,) for i in changes.deletes])
            if changes.updates:
                cur.executemany(sql("UPDATE radusergroup SET priority = ? WHERE id = ?"), changes.updates)
            if changes.inserts:
                cur.executemany(
                    sql("INSERT INTO radusergroup (username, groupname, priority) VALUES (?, ?, ?)"), changes.inserts
                )
            return self._open_sessions(cur, names)

        return self._transaction(f"{action} ({len(targets)} users)", write, write=True)

    # --- Disconnect-Request -----------------------------------------------------------

    def _client(self) -> _CoAClient:
        return _CoAClient(
            server=self.nas_address,
            coaport=self.coa_port,
            secret=self._secret,
            dict=radius_dictionary(),
            retries=self.retries + 1,  # pyrad counts every send
            timeout=self.timeout,
        )

    def _disconnect(self, session: _Session) -> str:
        """End one session; returns how (``"ack"`` or ``"not found"``)."""
        where = f"NAS {self.nas_address}:{self.coa_port}"
        if not self._secret:
            raise RouterUnavailable(f"no RADIUS secret is set for {where}", reason="auth")
        client = self._client()
        try:
            request = client.CreateCoAPacket(code=radius_packet.DisconnectRequest, User_Name=session.username)
            if session.session_id:
                request["Acct-Session-Id"] = session.session_id
            if session.address:
                request["Framed-IP-Address"] = session.address
            try:
                reply = client.SendPacket(request)
            except Timeout:
                raise RouterUnavailable(
                    f"no answer from {where} to a Disconnect-Request for {session.username!r} "
                    f"({self.retries + 1} sends, {self.timeout:g} s each)",
                    reason="timeout",
                ) from None
            except OSError as exc:
                raise RouterUnavailable(f"cannot send a Disconnect-Request to {where}: {exc}") from exc
        finally:
            client.close()
        if reply.code == radius_packet.DisconnectACK:
            return "ack"
        if reply.code == radius_packet.DisconnectNAK:
            causes = _error_causes(reply)
            if SESSION_NOT_FOUND in causes:
                return "not found"
            cause = ", ".join(str(c) for c in causes) or "none given"
            raise RouterCommandError(
                f"{where} refused to disconnect {session.username!r} (session {session.session_id or '?'}): "
                f"Disconnect-NAK, Error-Cause {cause}",
                command="Disconnect-Request",
                category=causes[0] if causes else None,
            )
        raise RouterCommandError(
            f"{where} answered a Disconnect-Request with packet code {reply.code}", command="Disconnect-Request"
        )

    def _end_sessions(self, sessions: Mapping[str, list[_Session]], usernames: Iterable[str]) -> dict[str, DriverError]:
        """Disconnect every open session of ``usernames``, several in flight; returns the
        failures by user name. After one request goes unanswered the NAS is taken to be
        unreachable and the requests not yet sent fail at once, so that a dead NAS costs
        one timeout, not one per subscriber."""
        jobs = [s for name in dict.fromkeys(usernames) for s in sessions.get(name, [])]
        if not jobs:
            return {}
        silent = threading.Event()

        def run(session: _Session) -> tuple[_Session, DriverError | None]:
            if silent.is_set():
                return session, RouterUnavailable(
                    f"NAS {self.nas_address}:{self.coa_port} did not answer an earlier Disconnect-Request; "
                    f"{session.username!r} not tried",
                    reason="timeout",
                )
            try:
                how = self._disconnect(session)
            except RouterUnavailable as exc:
                silent.set()
                return session, exc
            except RouterCommandError as exc:
                return session, exc
            log.debug("disconnected %s (session %s) on %s: %s", session.username, session.session_id, self.nas_address, how)
            return session, None

        if len(jobs) == 1:
            results = [run(jobs[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(self.in_flight, len(jobs)), thread_name_prefix="radius-coa") as pool:
                results = list(pool.map(run, jobs))
        failures: dict[str, DriverError] = {}
        for session, error in results:
            if error is not None:
                failures.setdefault(session.username, error)
        if failures:
            first = next(iter(failures.values()))
            log.warning(
                "%d of %d Disconnect-Requests to %s:%s failed, e.g. %s",
                sum(1 for _, e in results if e is not None), len(jobs), self.nas_address, self.coa_port, first.message,
            )
        return failures

    # --- the Driver interface ---------------------------------------------------------

    def suspend(self, target: Target) -> None:
        self._single("suspend", target)

    def restore(self, target: Target) -> None:
        self._single("restore", target)

    def bulk_suspend(self, targets: list[Target]) -> BulkResult:
        return self._bulk("suspend", targets)

    def bulk_restore(self, targets: list[Target]) -> BulkResult:
        return self._bulk("restore", targets)

    def _single(self, action: str, target: Target) -> None:
        target = _clean(target)
        problem = self._invalid(action, target)
        if problem:
            raise RouterCommandError(problem, command=action)
        sessions = self._write_groups(action, [target])
        failures = self._end_sessions(sessions, [target.username])
        if target.username in failures:
            raise failures[target.username]

    def _bulk(self, action: str, targets: list[Target]) -> BulkResult:
        cleaned = list({int(t.subscriber_id): _clean(t) for t in targets}.values())  # last one per subscriber
        result = BulkResult()
        valid: list[Target] = []
        for target in cleaned:
            problem = self._invalid(action, target)
            if problem:
                result.failed[target.subscriber_id] = problem
            else:
                valid.append(target)
        if valid:
            sessions = self._write_groups(action, valid)  # RouterUnavailable: nothing was done
            failures = self._end_sessions(sessions, [t.username for t in valid])
            for target in valid:
                error = failures.get(target.username)
                if error is None:
                    result.ok.append(target.subscriber_id)
                else:
                    result.failed[target.subscriber_id] = error.message
        order: dict[int, int] = {}
        for target in targets:  # results in input order (first occurrence)
            order.setdefault(int(target.subscriber_id), len(order))
        result.ok.sort(key=order.__getitem__)
        result.failed = dict(sorted(result.failed.items(), key=lambda item: order[item[0]]))
        return result

    def _invalid(self, action: str, target: Target) -> str:
        if not target.username:
            return f"subscriber {target.subscriber_id} has no user name"
        if action == "restore" and not target.profile:
            return f"subscriber {target.subscriber_id} ({target.username}) has no package group to restore"
        if action == "restore" and target.profile == self.suspended_group:
            return f"cannot restore {target.username!r} to the suspended group"
        return ""

    def read_state(self) -> RouterState:
        def read(cur: Any) -> RouterState:
            sql = self.db.sql
            marks = ", ".join("?" * len(PASSWORD_ATTRIBUTES))
            cur.execute(
                sql(
                    "SELECT id, username, attribute, op, value FROM radcheck "
                    f"WHERE attribute IN ({marks}) OR attribute = 'Auth-Type' ORDER BY id"
                ),
                list(PASSWORD_ATTRIBUTES),
            )
            first_id: dict[str, str] = {}
            rejected: set[str] = set()
            for row_id, username, attribute, op, value in cur.fetchall():
                if attribute == "Auth-Type":
                    if (value or "").strip().lower() == "reject" and op in (":=", "=="):
                        rejected.add(username)
                else:
                    first_id.setdefault(username, str(row_id))
            cur.execute("SELECT username, groupname FROM radusergroup ORDER BY priority, id")
            groups: dict[str, list[str]] = {}
            for username, groupname in cur.fetchall():
                groups.setdefault(username, []).append(groupname)
            sessions = self._open_sessions(cur, None)

            state = RouterState()
            for username, row_id in first_id.items():
                mine = groups.get(username, [])
                profile = self.suspended_group if self.suspended_group in mine else (mine[0] if mine else "")
                state.secrets[username] = SecretInfo(
                    id=row_id, name=username, profile=profile, disabled=username in rejected
                )
            for username, listed in sessions.items():
                newest = listed[0]
                state.active[username] = ActiveSession(
                    id=newest.row_id,
                    name=username,
                    address=newest.address,
                    caller_id=newest.caller_id,
                    uptime=_uptime(newest.session_time),
                    session_id=newest.session_id,
                )
                if self.suspended_group in groups.get(username, []):
                    for session in listed:
                        if session.address and session.address not in state.suspended:
                            state.suspended[session.address] = AddressListEntry(
                                id=session.row_id, list=self.address_list, address=session.address, comment=""
                            )
            return state

        return self._transaction("reading state", read, write=False)

    def test(self) -> dict[str, str]:
        """Connect to the FreeRADIUS database and check its tables. The NAS is not probed:
        RFC 5176 has no request that is harmless to send to it."""

        def probe(cur: Any) -> dict[str, str]:
            version = self.db.server_version(cur)
            for table in ("radcheck", "radusergroup", "radgroupreply", "radacct"):
                cur.execute(f"SELECT 1 FROM {table} WHERE 1 = 0")
                cur.fetchall()
            return {"identity": f"FreeRADIUS SQL at {self.db.where}", "version": version}

        return self._transaction("checking the tables", probe, write=False)


def _clean(target: Target) -> Target:
    return Target(int(target.subscriber_id), str(target.username or ""), str(target.profile or ""))
