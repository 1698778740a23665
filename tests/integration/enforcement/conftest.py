"""Fixtures for whole enforcement cycles: a RouterOS simulator over TCP and a small ISP.

The simulator (``ispbill.sim.routeros``) runs in this process on its own thread and
port; a :class:`~ispbill.network.models.Router` row points at it, so suspensions and
restores take the production path: services → EnforcementAction + outbox item →
``network.enforce`` handler → RouterOSDriver → the API over a real socket. Messages go
to a recording channel. Nothing of ours is mocked.
"""

from __future__ import annotations

import itertools
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from ispbill import cli
from ispbill.core import clock
from ispbill.network.connections import forget_drivers
from ispbill.network.models import Router
from ispbill.notifications.channels import SendResult, reset_channels, set_channels
from ispbill.plans.services import create_package
from ispbill.sim.routeros import RouterOSSimulator
from ispbill.subscribers.services import create_subscriber

PROFILE = "home10"
SUSPENDED_PROFILE = "Suspended_Profile"
ADDRESS_LIST = "suspended"
WRITES = ("/ppp/secret/set", "/ip/firewall/address-list/add", "/ip/firewall/address-list/remove", "/ppp/active/remove")

# The December invoice of a prepaid subscriber: issued 24 Nov (7 lead days), due 1 Dec;
# with the default grace of 3 days the subscriber is suspended on 5 Dec.
ISSUED_ON = date(2026, 11, 24)
DUE_ON = date(2026, 12, 1)


def at(day: date, hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    """Aware UTC instant of ``hour:minute`` on ``day`` in Dhaka (UTC+6, no DST)."""
    from ispbill.core.timeutil import isp_zone

    return datetime.combine(day, time(hour, minute, second), tzinfo=isp_zone()).astimezone(UTC)


def tick(when: str) -> str:
    """``ispbill tick --at <when>`` (read in Asia/Dhaka), in process."""
    assert cli.main(["tick", "--at", when]) == 0
    return when


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def writes(sim: RouterOSSimulator) -> int:
    """How many state-changing commands the router has executed."""
    counts = sim.command_counts
    return sum(counts[c] for c in WRITES)


def listed(sim: RouterOSSimulator) -> dict[str, str]:
    """The suspended address list: address → comment (the subscriber id)."""
    return {e["address"]: e.get("comment", "") for e in sim.address_list(ADDRESS_LIST)}


def online(sim: RouterOSSimulator) -> set[str]:
    return {a["name"] for a in sim.active()}


def profile(sim: RouterOSSimulator, sub) -> str:
    return sim.secret(sub.pppoe_username)["profile"]


@dataclass
class Delivery:
    channel: str
    to: str
    text: str


@dataclass
class RecordingChannel:
    """SMS and email channel that remembers what it was asked to deliver."""

    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_sms(self, *, to: str, text: str, reference: str) -> SendResult:
        with self._lock:
            self.deliveries.append(Delivery("sms", to, text))
        return SendResult(provider_reference=reference)

    def send_email(self, *, to: str, subject: str, text: str, html: str, reference: str) -> SendResult:
        with self._lock:
            self.deliveries.append(Delivery("email", to, text))
        return SendResult(provider_reference=reference)


@pytest.fixture(autouse=True)
def channel():
    rec = RecordingChannel()
    set_channels(sms=rec, email=rec)
    try:
        yield rec
    finally:
        reset_channels()


@pytest.fixture(autouse=True)
def _restore_clock():
    previous = clock.get_clock()
    yield
    clock.set_clock(previous)


@pytest.fixture
def sim():
    """A simulated router on a fixed free port (so it can be stopped and started again
    on the same address), with the package's profile defined."""
    s = RouterOSSimulator(port=free_port(), users={"admin": "admin-pw"})
    s.add_profile(PROFILE)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        forget_drivers()  # the next test's router row may reuse this one's id


@pytest.fixture
def router(sim, db):
    r = Router(name="sim-router", host="127.0.0.1", port=sim.port, username="admin")
    r.password = "admin-pw"
    r.save()
    return r


@pytest.fixture
def package(db):
    return create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile=PROFILE)


_serial = itertools.count(1)


@pytest.fixture
def make_subscriber(sim, router, package):
    """``make_subscriber(**extra)``: an active prepaid subscriber on the simulated router,
    billed through November (the billing run on 24 Nov issues December, due 1 Dec), with
    a PPP secret on the package's profile and a live session."""

    def make(*, online_session: bool = True, **extra):
        n = next(_serial)
        data = dict(
            name=f"Subscriber {n}", phone=f"0171{n:07d}", pppoe_username=f"enf{n:05d}", package_id=package.pk,
            activated_on=date(2026, 11, 1), billed_through=date(2026, 11, 30), router=router,
        )
        data.update(extra)
        sub = create_subscriber(today=date(2026, 11, 1), **data)
        sim.add_secret(sub.pppoe_username, "pw", profile=PROFILE)
        if online_session:
            sim.add_active(sub.pppoe_username, address=address_of(n))
        sub.address_on_router = address_of(n) if online_session else ""
        return sub

    return make


def address_of(n: int) -> str:
    return f"10.20.{n // 250}.{n % 250 + 1}"
