"""Helpers for the worker tests: recording outbox handlers and peer threads.

A *recording handler* is registered for a ``test.*`` topic, remembers every call it
gets and does what the test scripted (succeed, raise). A *peer* is a thread with its
own database connection, standing in for a second worker process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import pytest
from django.db import connection

from ispbill.worker import outbox


@dataclass
class Call:
    item_id: int
    payload: dict
    attempt: outbox.Attempt


@dataclass
class RecordingHandler:
    """An outbox handler that records its calls.

    ``outcomes`` is consumed one per call: ``None`` succeeds, an exception instance is
    raised; when it runs out, ``default`` applies. ``before`` runs first on every call
    (e.g. to hold a thread at a barrier).
    """

    topic: str
    outcomes: list = field(default_factory=list)
    default: BaseException | None = None
    before: Callable[[Call], None] | None = None
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, item, attempt: outbox.Attempt) -> None:
        call = Call(item.pk, dict(item.payload), attempt)
        with self._lock:
            self.calls.append(call)
            outcome = self.outcomes.pop(0) if self.outcomes else self.default
        if self.before is not None:
            self.before(call)
        if outcome is not None:
            raise outcome

    @property
    def item_ids(self) -> list[int]:
        return [c.item_id for c in self.calls]


@pytest.fixture
def recording_handler():
    """``make(topic, **options)`` registers a RecordingHandler; all are unregistered after the test."""
    registered: list[str] = []

    def make(topic: str, **options) -> RecordingHandler:
        h = RecordingHandler(topic=topic, **options)
        outbox.handler(topic)(h)
        registered.append(topic)
        return h

    yield make
    for topic in registered:
        outbox.unregister(topic)


class Peer:
    """A thread with its own database connection (a stand-in for another worker)."""

    def __init__(self, name: str):
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs)

    def run(self, fn, *args, timeout: float = 20, **kwargs):
        return self.submit(fn, *args, **kwargs).result(timeout=timeout)

    def close(self) -> None:
        try:
            # resolved inside the peer thread: `connection` is per thread
            self._pool.submit(lambda: connection.close()).result(timeout=20)
        finally:
            self._pool.shutdown(wait=True)


@pytest.fixture
def peers():
    """``peers(n)`` starts n peer threads; their connections are closed after the test."""
    started: list[Peer] = []

    def make(n: int) -> list[Peer]:
        new = [Peer(f"peer{len(started) + i + 1}") for i in range(n)]
        started.extend(new)
        return new

    yield make
    for p in started:
        p.close()
