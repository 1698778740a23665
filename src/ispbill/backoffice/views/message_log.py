"""Back-office pages: the SMS and email message log.

The list pages by keyset (newest first) and sums the filtered set in the database: how
many messages, how many of them SMS, and how many SMS segments they cost (what the
provider bills). An SMS's encoding and segment count are stored when it is rendered
for sending (:func:`ispbill.notifications.sms.sms_cost`); a queued one shows none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.selectors import newest_first_page, subscriber_match
from ispbill.backoffice.views.common import date_param, int_param
from ispbill.core.timeutil import on_local_days
from ispbill.notifications.choices import ChannelChoice, MessageKindChoice, MessageStatus
from ispbill.notifications.models import Message
from ispbill.notifications.sms import segments_cost_paisa, sms_cost


@dataclass
class MessageFilters:
    q: str = ""
    status: str = ""
    channel: str = ""
    kind: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_query(cls, params) -> "MessageFilters":
        def pick(name, values):
            value = params.get(name, "")
            return value if value in values else ""

        return cls(
            q=(params.get("q") or "").strip()[:100],
            status=pick("status", MessageStatus.values),
            channel=pick("channel", ChannelChoice.values),
            kind=pick("kind", MessageKindChoice.values),
            date_from=date_param(params, "from"),
            date_to=date_param(params, "to"),
        )

    def active(self) -> bool:
        return bool(self.q or self.status or self.channel or self.kind or self.date_from or self.date_to)


def filtered_messages(f: MessageFilters):
    qs = Message.objects.all()
    if f.q:
        match = Q(recipient__icontains=f.q) | Q(subscriber__email__icontains=f.q) | subscriber_match(f.q)
        digits = f.q.lstrip("+0")
        if digits:
            match |= Q(recipient__contains=digits)
        qs = qs.filter(match)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.channel:
        qs = qs.filter(channel=f.channel)
    if f.kind:
        qs = qs.filter(kind=f.kind)
    return qs.filter(on_local_days("created_at", f.date_from, f.date_to))


def segment_price() -> Decimal:
    """The provider's price per SMS segment in taka (``ISPBILL_SMS_SEGMENT_PRICE``)."""
    return Decimal(str(settings.ISPBILL_SMS_SEGMENT_PRICE))


@require_GET
@permission_required("view_messages")
def message_list(request):
    filters = MessageFilters.from_query(request.GET)
    qs = filtered_messages(filters)
    totals = qs.aggregate(
        n=Count("id"), sms=Count("id", filter=Q(channel=ChannelChoice.SMS)),
        segments=Sum("segments", filter=Q(channel=ChannelChoice.SMS)),
    )
    page = newest_first_page(
        qs.select_related("subscriber").defer("body", "error"),
        after=int_param(request, "after"), before=int_param(request, "before"), count=totals["n"],
    )
    context = {
        "title": _("Messages"),
        "nav": "messages",
        "filters": filters,
        "page": page,
        "totals": {
            "count": totals["n"], "sms": totals["sms"], "segments": totals["segments"] or 0,
            "cost_paisa": segments_cost_paisa(totals["segments"] or 0, segment_price()),
        },
        "segment_price": segment_price(),
        "statuses": MessageStatus.choices,
        "channels": ChannelChoice.choices,
        "kinds": MessageKindChoice.choices,
    }
    return render(request, "backoffice/message_list.html", context)


@require_GET
@permission_required("view_messages")
def message_detail(request, pk: int):
    m = Message.objects.select_related("subscriber", "invoice", "payment", "requested_by").filter(pk=pk).first()
    if m is None:
        raise Http404("no such message")
    cost = sms_cost(m.body) if m.channel == ChannelChoice.SMS and m.body else None
    price = segments_cost_paisa(m.segments, segment_price()) if m.segments else None
    context = {"title": _("Message %(id)s") % {"id": m.pk}, "nav": "messages", "m": m, "cost": cost, "price_paisa": price}
    return render(request, "backoffice/message_detail.html", context)


urlpatterns = [
    path("messages/", message_list, name="messages"),
    path("messages/<int:pk>/", message_detail, name="message"),
]
