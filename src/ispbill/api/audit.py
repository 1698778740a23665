"""The audit log, read-only: ``GET /api/v1/audit`` (needs ``view_audit``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from ninja import Query, Router, Schema
from pydantic import Field

from ispbill.api.permissions import require_permission
from ispbill.api.schemas import ErrorOut
from ispbill.audit import selectors

router = Router(tags=["audit"])


class AuditQuery(Schema):
    q: str = Field("", description="text in the summary, the record's label or the actor's name")
    actor: str = Field("", description="a user id, or an actor kind: system, gateway, subscriber, staff")
    action: str = Field("", description="an action or its prefix: payment. or payment.refund")
    target_type: str = Field("", description="subscriber, invoice, payment, creditnote, router, ...")
    target_id: int | None = None
    subscriber: int | None = Field(None, description="events concerning this subscriber, whatever their target")
    date_from: date | None = Field(None, description="first day, in the ISP's time zone")
    date_to: date | None = Field(None, description="last day (included), in the ISP's time zone")
    cursor: str = Field("", description="next_cursor of the previous page")
    limit: int = Field(selectors.PAGE_SIZE, ge=1, le=selectors.MAX_LIMIT)


class AuditEventOut(Schema):
    id: int
    at: datetime
    actor_kind: str
    actor_id: int | None
    actor_name: str
    action: str
    target_type: str
    target_id: int | None
    target_label: str
    subscriber: int | None
    summary: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None


class AuditPageOut(Schema):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(None, description="pass as cursor for the next (older) page; null on the last")


def out(e) -> dict:
    return {
        "id": e.pk, "at": e.at, "actor_kind": e.actor_kind, "actor_id": e.actor_id, "actor_name": e.actor_name,
        "action": e.action, "target_type": e.target_type, "target_id": e.target_id, "target_label": e.target_label,
        "subscriber": e.subscriber_id, "summary": e.summary, "before": e.before, "after": e.after, "ip": e.ip,
    }


@router.get("", response={200: AuditPageOut, 403: ErrorOut})
def list_events(request, filters: Query[AuditQuery]):
    """Who did what, newest first. Pages by cursor: each answer's ``next_cursor`` fetches
    the next (older) page; the cost is the same on any page."""
    require_permission(request, "view_audit")
    params = {k: "" if v is None else str(v) for k, v in filters.dict().items()}
    page = selectors.event_page(
        selectors.AuditFilters.from_query(params), after=filters.cursor or None, limit=filters.limit, count=False,
    )
    return {"items": [out(e) for e in page.rows], "next_cursor": page.next_after}
