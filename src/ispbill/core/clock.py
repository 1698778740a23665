"""The one clock. Jobs call :func:`now` once and pass the instant (or date) down.

Tests and ``ispbill tick --at`` install a :class:`FixedClock`; production uses the
system clock. Domain code never calls this module: it takes ``today``/``now`` arguments.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Iterator, Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; always returns aware UTC."""

    def __init__(self, at: datetime):
        self._at = _aware(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = _aware(at)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._at = self._at + delta


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("clock instants must be timezone-aware")
    return at.astimezone(UTC)


_current: Clock = SystemClock()


def get_clock() -> Clock:
    return _current


def now() -> datetime:
    return _current.now()


def set_clock(clock: Clock) -> Clock:
    """Install ``clock``; returns the previous one."""
    global _current
    previous, _current = _current, clock
    return previous


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)
