"""Desired versus actual enforcement on one router: the pure half of reconcile.

No database and no I/O: the reconcile job builds :class:`Desired` rows from the
database, reads :class:`~ispbill.network.drivers.base.RouterState` through a driver, and
gets back what to repair and what to report (the leakage report).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ispbill.network.drivers.base import RouterState, Target


@dataclass(frozen=True)
class Desired:
    """What one subscriber's account should look like on the router."""

    subscriber_id: int
    username: str
    profile: str  # the package's router profile
    suspended: bool

    @property
    def target(self) -> Target:
        return Target(self.subscriber_id, self.username, self.profile)


@dataclass
class Drift:
    to_suspend: list[Target] = field(default_factory=list)
    """Should be suspended; the router still has the package profile or an unlisted session."""
    to_restore: list[Target] = field(default_factory=list)
    """Should be active (paid); the router still restricts them."""
    online_unpaid: list[Desired] = field(default_factory=list)
    """Leakage: should be suspended, online, and their address is not walled off."""
    unknown_on_router: list[str] = field(default_factory=list)
    """Secrets on the router that no subscriber here accounts for."""
    missing_on_router: list[Desired] = field(default_factory=list)
    """Subscribers with no secret on the router."""

    @property
    def clean(self) -> bool:
        return not (
            self.to_suspend or self.to_restore or self.online_unpaid or self.unknown_on_router or self.missing_on_router
        )


def diff(desired: Iterable[Desired], state: RouterState, *, suspended_profile: str) -> Drift:
    """Compare; every list keeps the order of ``desired`` (unknown names: router order)."""
    drift = Drift()
    blocked_by_comment = {entry.comment for entry in state.suspended.values() if entry.comment}
    known: set[str] = set()
    for want in desired:
        known.add(want.username)
        secret = state.secrets.get(want.username)
        if secret is None:
            drift.missing_on_router.append(want)
            continue
        session = state.active.get(want.username)
        online_address = session.address if session is not None else ""
        listed = bool(online_address) and online_address in state.suspended
        if want.suspended:
            restricted = secret.profile == suspended_profile
            if session is not None and not listed:
                drift.online_unpaid.append(want)
            if not restricted or (session is not None and online_address and not listed):
                drift.to_suspend.append(want.target)
        else:
            blocked = listed or str(want.subscriber_id) in blocked_by_comment
            if secret.profile != want.profile or blocked:
                drift.to_restore.append(want.target)
    drift.unknown_on_router = [name for name in state.secrets if name not in known]
    return drift
