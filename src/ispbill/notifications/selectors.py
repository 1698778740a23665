from __future__ import annotations

from django.db.models import QuerySet

from ispbill.notifications.models import Message


def message_list(*, subscriber_id: int | None = None, kind: str = "", status: str = "", channel: str = "") -> QuerySet[Message]:
    qs = Message.objects.order_by("-created_at", "-id")
    if subscriber_id is not None:
        qs = qs.filter(subscriber_id=subscriber_id)
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channel=channel)
    return qs
