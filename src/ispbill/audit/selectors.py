"""Reading the audit log: filters, newest-first keyset pages (the same cost on page 1
and page 1,000) and the field-by-field difference an event records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Q, QuerySet

from ispbill.audit.models import ActorKind, AuditEvent
from ispbill.core.timeutil import on_local_days

PAGE_SIZE = 50
MAX_LIMIT = 200
#: Matches are counted up to this many; beyond it the page says "more than".
COUNT_LIMIT = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class AuditFilters:
    q: str = ""
    actor: str = ""  # a user id, or an actor kind ("system", "gateway", ...)
    action: str = ""  # a prefix: "payment." or "payment.refund"
    target_type: str = ""
    target_id: int | None = None
    subscriber: int | None = None
    date_from: date | None = None  # calendar dates in the ISP's zone, both included
    date_to: date | None = None

    @classmethod
    def from_query(cls, params) -> "AuditFilters":
        """Filters from query parameters; a malformed value is ignored, not an error."""

        def text(name: str, limit: int) -> str:
            return (params.get(name) or "").strip()[:limit]

        def as_id(name: str) -> int | None:
            value = text(name, 20)
            return int(value) if value.isdigit() else None

        def as_date(name: str) -> date | None:
            try:
                return date.fromisoformat(text(name, 10))
            except ValueError:
                return None

        actor = text("actor", 20)
        return cls(
            q=text("q", 100),
            actor=actor if actor.isdigit() or actor in ActorKind.values else "",
            action=text("action", 64),
            target_type=text("target_type", 64),
            target_id=as_id("target_id"),
            subscriber=as_id("subscriber"),
            date_from=as_date("date_from"),
            date_to=as_date("date_to"),
        )

    def active(self) -> bool:
        return any(
            value not in (None, "")
            for value in (self.q, self.actor, self.action, self.target_type, self.target_id, self.subscriber,
                          self.date_from, self.date_to)
        )


def filtered_events(filters: AuditFilters) -> QuerySet:
    qs = AuditEvent.objects.all()
    if filters.q:
        qs = qs.filter(
            Q(summary__icontains=filters.q) | Q(target_label__icontains=filters.q) | Q(actor_name__icontains=filters.q)
        )
    if filters.actor.isdigit():
        qs = qs.filter(actor_id=int(filters.actor))
    elif filters.actor:
        qs = qs.filter(actor_kind=filters.actor)
    if filters.action:
        qs = qs.filter(action__startswith=filters.action)
    if filters.target_type:
        qs = qs.filter(target_type=filters.target_type)
    if filters.target_id is not None:
        qs = qs.filter(target_id=filters.target_id)
    if filters.subscriber is not None:
        qs = qs.filter(subscriber_id=filters.subscriber)
    return qs.filter(on_local_days("at", filters.date_from, filters.date_to))


# -- keyset paging ------------------------------------------------------------------------

def cursor_of(event: AuditEvent) -> str:
    """An opaque position: the event's instant (microseconds) and id."""
    return f"{(event.at - _EPOCH) // timedelta(microseconds=1)}.{event.pk}"


def parse_cursor(text: str | None) -> tuple[datetime, int] | None:
    micros, _, pk = (text or "").partition(".")
    if not (micros.lstrip("-").isdigit() and pk.isdigit()):
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except OverflowError:
        return None


@dataclass
class EventPage:
    rows: list
    count: int
    count_capped: bool
    next_after: str | None  # the cursor of the next (older) page
    prev_before: str | None  # the cursor of the previous (newer) page
    first: bool


def event_page(
    filters: AuditFilters, *, after: str | None = None, before: str | None = None, limit: int = PAGE_SIZE,
    count: bool = True,
) -> EventPage:
    """One page of events, newest first. ``after``: the page older than that cursor;
    ``before``: the page newer than it. Two queries (rows, capped count), whatever the
    page or the number of events."""
    limit = max(1, min(limit, MAX_LIMIT))
    qs = filtered_events(filters)
    newer = parse_cursor(before)
    older = parse_cursor(after)
    if newer is not None:
        at, pk = newer
        rows = list(qs.filter(Q(at__gt=at) | Q(at=at, id__gt=pk)).order_by("at", "id")[: limit + 1])
        more_before = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        more_after = True
    else:
        if older is not None:
            at, pk = older
            qs = qs.filter(Q(at__lt=at) | Q(at=at, id__lt=pk))
        rows = list(qs.order_by("-at", "-id")[: limit + 1])
        more_after = len(rows) > limit
        rows = rows[:limit]
        more_before = older is not None
    counted = filtered_events(filters).order_by().values("id")[: COUNT_LIMIT + 1].count() if count else 0
    for row in rows:
        row.diff = diff_rows(row.before, row.after)
    return EventPage(
        rows=rows,
        count=min(counted, COUNT_LIMIT),
        count_capped=counted > COUNT_LIMIT,
        next_after=cursor_of(rows[-1]) if rows and more_after else None,
        prev_before=cursor_of(rows[0]) if rows and more_before else None,
        first=not more_before,
    )


def subscriber_activity(subscriber_id: int, *, limit: int = 25) -> list[AuditEvent]:
    """The latest events concerning one subscriber (one query)."""
    rows = list(AuditEvent.objects.filter(subscriber_id=subscriber_id).order_by("-at", "-id")[:limit])
    for row in rows:
        row.diff = diff_rows(row.before, row.after)
    return rows


# -- the difference an event records ------------------------------------------------------

def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def diff_rows(before, after) -> list[tuple[str, str | None, str | None]]:
    """``(field, old, new)`` for every field either side names, in the order recorded;
    values as display text (None when the side does not have it)."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    fields = list(old) + [k for k in new if k not in old]
    return [(field, _text(old.get(field)), _text(new.get(field))) for field in fields]
