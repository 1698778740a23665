"""The one interface every network driver (RouterOS API, RADIUS, …) implements.

A driver changes what one router/NAS enforces for subscribers and reads back what it
enforces now. It knows nothing about the database: the outbox dispatcher and the
reconcile job hand it :class:`Target` values and record what it returns.

Every operation is idempotent: suspending a suspended subscriber, or restoring an active
one, changes nothing and succeeds, so the dispatcher may retry any call after any failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class DriverError(Exception):
    """Base of the errors a driver raises."""


class RouterUnavailable(DriverError):
    """The router could not be reached or refused us: connect failure, timeout, dropped
    connection, login refused. Retry later (the login case needs the stored credentials
    fixed first, which ``reason == "auth"`` tells staff)."""

    def __init__(self, message: str, *, reason: str = "connect"):
        super().__init__(message)
        self.message = message
        self.reason = reason  # "connect" | "timeout" | "closed" | "auth" | "tls"


class RouterCommandError(DriverError):
    """The router refused a command (a ``!trap`` that is not a tolerated idempotency
    case such as "already have such entry"), or the account is missing on the router."""

    def __init__(self, message: str, *, command: str = "", category: int | None = None):
        super().__init__(message)
        self.message = message
        self.command = command
        self.category = category


class SecretNotFound(RouterCommandError):
    """No PPP secret (account) with the target's user name exists on the router."""


@dataclass(frozen=True)
class Target:
    """One subscriber's account on one router.

    ``profile`` is the subscriber's package profile: what :meth:`Driver.restore` sets
    back (suspending sets the router's suspended profile instead).
    """

    subscriber_id: int
    username: str
    profile: str


@dataclass(frozen=True)
class SecretInfo:
    id: str
    name: str
    profile: str
    disabled: bool = False
    comment: str = ""


@dataclass(frozen=True)
class ActiveSession:
    id: str
    name: str
    address: str = ""
    caller_id: str = ""
    uptime: str = ""
    session_id: str = ""


@dataclass(frozen=True)
class AddressListEntry:
    id: str
    list: str
    address: str
    comment: str = ""  # the subscriber id, for entries this system added
    disabled: bool = False


@dataclass
class RouterState:
    """What the router enforces now, as read in one pass.

    ``secrets`` and ``active`` are keyed by user name (``active`` holds one session per
    name: the first the router listed). ``suspended`` holds the suspended address list,
    keyed by address; for entries this system added, ``comment`` is the subscriber id.
    """

    secrets: dict[str, SecretInfo] = field(default_factory=dict)
    active: dict[str, ActiveSession] = field(default_factory=dict)
    suspended: dict[str, AddressListEntry] = field(default_factory=dict)


@dataclass
class BulkResult:
    """``ok``: subscriber ids now in the requested state; ``failed``: id → reason."""

    ok: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    def suspend(self, target: Target) -> None:
        """Put the subscriber in the suspended state and end a live session so that it
        applies. Raises RouterUnavailable or RouterCommandError (incl. SecretNotFound)."""

    def restore(self, target: Target) -> None:
        """Put the subscriber back on ``target.profile``, lift the address-list block and
        end a live session that was still suspended. Raises as :meth:`suspend`."""

    def bulk_suspend(self, targets: list[Target]) -> BulkResult:
        """Suspend many, without a round trip per subscriber. Per-subscriber failures
        are reported in the result; raises RouterUnavailable only if nothing could be
        done at all."""

    def bulk_restore(self, targets: list[Target]) -> BulkResult:
        """Restore many; reports like :meth:`bulk_suspend`."""

    def read_state(self) -> RouterState:
        """Read secrets, active sessions and the suspended address list."""

    def test(self) -> dict[str, str]:
        """Connect and log in; returns ``{"identity": …, "version": …}``."""

    def close(self) -> None:
        """Close connections; the driver reconnects if used again."""
