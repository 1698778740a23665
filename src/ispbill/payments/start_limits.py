"""How often one subscriber may start a gateway payment (pure).

A limit is "at most N starts in any window of length W": a start is refused while N or
more of the subscriber's payment attempts were created within the last W. The window is
half open, ``(now - W, now]``: an attempt created exactly W ago has left it. Several
limits apply together ("5 per 10 minutes and 20 per day"); the strictest decides.

Written as text, e.g. ``5/10m,20/1d``: comma-separated ``<starts>/<window>`` items, where
``<starts>`` is a whole number from 1 and ``<window>`` a whole number from 1 followed by
one unit, ``s`` (seconds), ``m`` (minutes), ``h`` (hours) or ``d`` (days), at most
``31d``. Spaces around items are ignored; each window may appear once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_START_LIMITS = "5/10m,20/1d"
MAX_WINDOW = timedelta(days=31)

_UNITS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_ITEM = re.compile(r"([0-9]+)/([0-9]+)([smhd])")


class StartLimitError(ValueError):
    """The limits' text does not follow the format; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class StartLimit:
    starts: int
    window: timedelta
    window_text: str  # as written, without leading zeros: "10m"

    def __str__(self) -> str:
        return f"{self.starts}/{self.window_text}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a start is refused and for how long."""

    limit: StartLimit
    started: int  # attempts the limit counted in its window
    retry_after: int  # whole seconds until a start is allowed again (at least 1)


def parse_start_limits(text: str) -> tuple[StartLimit, ...]:
    """The limits written in ``text`` (see the module's docstring), shortest window
    first. Raises :class:`StartLimitError` for anything else, including an empty text."""
    items = [part.strip() for part in text.split(",")]
    if not any(items):
        raise StartLimitError(f'no limits given; write them like "{DEFAULT_START_LIMITS}"')
    limits: dict[timedelta, StartLimit] = {}
    for item in items:
        match = _ITEM.fullmatch(item)
        if match is None:
            raise StartLimitError(
                f"'{item}' is not <starts>/<window> (like \"{DEFAULT_START_LIMITS}\"; window units s, m, h, d)"
            )
        starts, amount, unit = int(match[1]), int(match[2]), match[3]
        if starts < 1:
            raise StartLimitError(f"'{item}': the number of starts must be at least 1")
        if amount < 1:
            raise StartLimitError(f"'{item}': the window must be at least 1{unit}")
        if amount > MAX_WINDOW // _UNITS[unit]:
            raise StartLimitError(f"'{item}': the window must be at most {MAX_WINDOW.days}d")
        window = amount * _UNITS[unit]
        if window in limits:
            raise StartLimitError(f"'{item}': a limit for this window is already given ('{limits[window]}')")
        limits[window] = StartLimit(starts=starts, window=window, window_text=f"{amount}{unit}")
    return tuple(limits[w] for w in sorted(limits))


def refusal(limits: Sequence[StartLimit], started_at: Sequence[datetime], *, now: datetime) -> Refusal | None:
    """None when one more start is allowed at ``now``; otherwise the refusal whose wait
    is longest (waiting that long satisfies every limit).

    ``started_at`` holds when the subscriber's recent attempts were created, in any
    order; it must include, for every limit, the newest ``limit.starts`` attempts inside
    that limit's window (the newest ``max(starts)`` inside the longest window do).
    Older or extra instants change nothing.
    """
    worst: Refusal | None = None
    for limit in limits:
        counted = sorted((at for at in started_at if at > now - limit.window), reverse=True)
        if len(counted) < limit.starts:
            continue
        # Allowed again once fewer than `starts` remain: when the starts-th newest leaves.
        leaves_at = counted[limit.starts - 1] + limit.window
        wait = max(1, math.ceil((leaves_at - now).total_seconds()))
        if worst is None or wait > worst.retry_after:
            worst = Refusal(limit=limit, started=len(counted), retry_after=wait)
    return worst
