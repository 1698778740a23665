"""How long to wait before trying again: the one doubling rule every retry uses (the
outbox's sends, re-asking a gateway about a pending payment or refund)."""

from __future__ import annotations

from typing import TypeVar

Wait = TypeVar("Wait")  # a timedelta or a number of seconds


def doubling(first: Wait, attempt: int, cap: Wait) -> Wait:
    """The wait before try number ``attempt`` (counted from 1): ``first``, then twice
    that, four times… never more than ``cap``. An ``attempt`` below 1 counts as 1."""
    wait = first
    for _ in range(max(1, attempt) - 1):
        if wait >= cap:
            break
        wait = wait * 2
    return min(wait, cap)
