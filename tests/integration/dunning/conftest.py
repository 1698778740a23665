"""Fixtures for the dunning integration tests: a recording channel and a small ISP.

The recording channel implements the channel interface (``send_sms``/``send_email``)
and remembers every delivery; it is installed with ``set_channels`` so messages take the
same path as in production up to the provider call. Nothing of ours is mocked.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Callable

import pytest

from ispbill.core import clock
from ispbill.notifications.channels import SendResult, reset_channels, set_channels
from ispbill.notifications.services import forget_templates
from ispbill.plans.services import create_package
from ispbill.subscribers.services import create_subscriber

# The December invoice of a prepaid subscriber: issued 24 Nov (7 lead days), due 1 Dec.
ISSUED_ON = date(2026, 11, 24)
DUE_ON = date(2026, 12, 1)


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """Aware UTC instant of ``hour:minute`` on ``day`` in Dhaka (UTC+6, no DST)."""
    from ispbill.core.timeutil import isp_zone

    return datetime.combine(day, time(hour, minute), tzinfo=isp_zone()).astimezone(UTC)


@dataclass(frozen=True)
class Delivery:
    channel: str  # "sms" or "email"
    to: str
    text: str
    reference: str
    subject: str = ""
    html: str = ""
    thread: str = ""

    @property
    def message_id(self) -> int:
        return int(self.reference.removeprefix("ispbill-"))


@dataclass
class RecordingChannel:
    """An SMS and email channel that records what it was asked to deliver.

    ``before`` (optional) runs on every call before recording, e.g. to hold a thread at
    a barrier or to simulate a worker dying mid-send.
    """

    before: Callable[[str], None] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    def send_sms(self, *, to: str, text: str, reference: str) -> SendResult:
        if self.before is not None:
            self.before("sms")
        return self._record(Delivery("sms", to, text, reference, thread=threading.current_thread().name))

    def send_email(self, *, to: str, subject: str, text: str, html: str, reference: str) -> SendResult:
        if self.before is not None:
            self.before("email")
        return self._record(Delivery("email", to, text, reference, subject, html, threading.current_thread().name))

    def _record(self, d: Delivery) -> SendResult:
        with self._lock:
            self.deliveries.append(d)
            return SendResult(provider_reference=f"rec-{next(self._serial)}")

    def to(self, recipient: str, channel: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if d.to == recipient and (channel is None or d.channel == channel)]

    @property
    def sms(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.channel == "sms"]

    @property
    def email(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.channel == "email"]


@pytest.fixture
def channel():
    """One recording channel installed for both SMS and email."""
    rec = RecordingChannel()
    set_channels(sms=rec, email=rec)
    forget_templates()  # a template cached by an earlier test must not leak in
    try:
        yield rec
    finally:
        reset_channels()
        forget_templates()


@pytest.fixture(autouse=True)
def _restore_clock():
    """``ispbill tick --at`` installs a fixed clock process-wide; put the old one back."""
    previous = clock.get_clock()
    yield
    clock.set_clock(previous)


_serial = itertools.count(1)


@pytest.fixture
def package():
    return create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile="home10")


def make_subscriber(package, *, phone: str | None = None, **extra):
    """An active prepaid subscriber whose November is billed: the billing run on 24 Nov
    issues the December invoice, due 1 Dec."""
    n = next(_serial)
    data = dict(
        name=f"Subscriber {n}", phone=phone or f"0171{n:07d}", pppoe_username=f"dun{n:05d}",
        package_id=package.pk, activated_on=date(2026, 11, 1), billed_through=date(2026, 11, 30),
    )
    data.update(extra)
    return create_subscriber(today=date(2026, 11, 1), **data)
