"""Which reminder is due for an invoice on a date, and when service is suspended (pure).

The ladder is a list of steps at offsets (days) from the due date, each naming a message
kind and the channels it goes out on. On any date at most one step is current: the
latest whose date has arrived, until the next step's date (the last step stays current
until the suspension date). A worker that was down for a few days therefore sends the
step that matters now, not a backlog of stale ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum


class MessageKind(StrEnum):
    REMINDER = "reminder"  # before the due date, with a payment link
    DUE_TODAY = "due_today"  # last day to pay
    OVERDUE = "overdue"  # grace period: suspension pending
    SUSPENDED = "suspended"
    RECONNECTED = "reconnected"
    RECEIPT = "receipt"


DUNNING_KINDS = (MessageKind.REMINDER, MessageKind.DUE_TODAY, MessageKind.OVERDUE)


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class LadderStep:
    offset: int  # days from the due date: -5 is five days before
    kind: MessageKind
    channels: tuple[Channel, ...]

    @property
    def key(self) -> str:
        return f"{self.offset:+d}"


DEFAULT_LADDER: tuple[LadderStep, ...] = (
    LadderStep(-5, MessageKind.REMINDER, (Channel.SMS, Channel.EMAIL)),
    LadderStep(0, MessageKind.DUE_TODAY, (Channel.SMS, Channel.EMAIL)),
    LadderStep(1, MessageKind.OVERDUE, (Channel.SMS, Channel.EMAIL)),
)


@dataclass(frozen=True, slots=True)
class InvoiceState:
    due_on: date
    amount_due_paisa: int
    status: str  # open, partially_paid, paid, void


@dataclass(frozen=True, slots=True)
class SubscriberState:
    status: str  # active, suspended, disabled
    never_suspend: bool = False
    grace_days_override: int | None = None
    has_phone: bool = True
    has_email: bool = False


@dataclass(frozen=True, slots=True)
class DueStep:
    step: LadderStep
    channels: tuple[Channel, ...]


def is_collectable(invoice: InvoiceState) -> bool:
    return invoice.status in ("open", "partially_paid") and invoice.amount_due_paisa > 0


def grace_days_for(subscriber: SubscriberState, default_grace_days: int) -> int:
    return default_grace_days if subscriber.grace_days_override is None else subscriber.grace_days_override


def suspension_on(due_on: date, grace_days: int) -> date:
    """The first day on which an unpaid invoice suspends service: ``due + grace + 1``."""
    return due_on + timedelta(days=grace_days + 1)


def sort_ladder(ladder: tuple[LadderStep, ...] | list[LadderStep]) -> tuple[LadderStep, ...]:
    return tuple(sorted(ladder, key=lambda s: s.offset))


def current_step(invoice: InvoiceState, subscriber: SubscriberState, ladder, today: date, *, grace_days: int) -> DueStep | None:
    """The reminder due for ``invoice`` on ``today``, with the channels it can reach, or None."""
    if not is_collectable(invoice) or subscriber.status == "disabled":
        return None
    steps = sort_ladder(ladder)
    grace = grace_days_for(subscriber, grace_days)
    for i, step in enumerate(steps):
        starts = invoice.due_on + timedelta(days=step.offset)
        if i + 1 < len(steps):
            ends = invoice.due_on + timedelta(days=steps[i + 1].offset)
        else:
            ends = max(suspension_on(invoice.due_on, grace), starts + timedelta(days=1))
        if starts <= today < ends:
            channels = tuple(
                c for c in step.channels
                if (c is Channel.SMS and subscriber.has_phone) or (c is Channel.EMAIL and subscriber.has_email)
            )
            return DueStep(step, channels) if channels else None
    return None


def window(ladder, *, grace_days_max: int) -> tuple[int, int]:
    """(earliest, latest) offsets of ``today - due_on`` at which some step can be current;
    callers use it to select candidate invoices by due date."""
    steps = sort_ladder(ladder)
    if not steps:
        return (1, 0)
    return steps[0].offset, max(steps[-1].offset, grace_days_max)


def should_suspend(invoice: InvoiceState, subscriber: SubscriberState, today: date, *, grace_days: int) -> bool:
    """Unpaid past ``due + grace``, not exempt, not already suspended or disabled."""
    if not is_collectable(invoice) or subscriber.never_suspend or subscriber.status != "active":
        return False
    return today >= suspension_on(invoice.due_on, grace_days_for(subscriber, grace_days))


def quiet_release(local_now: datetime, *, start: time, end: time) -> datetime | None:
    """When an SMS may go out if ``local_now`` falls in quiet hours [start, end), else None.

    ``local_now`` is aware in the ISP's zone; the window may cross midnight (21:00-08:00).
    """
    if start == end:
        return None
    t = local_now.timetz().replace(tzinfo=None)
    crosses = start > end
    inside = (t >= start or t < end) if crosses else (start <= t < end)
    if not inside:
        return None
    release_day = local_now.date()
    if crosses and t >= start:
        release_day += timedelta(days=1)
    return datetime.combine(release_day, end, tzinfo=local_now.tzinfo)
