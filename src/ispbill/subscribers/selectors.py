from __future__ import annotations

from django.db.models import Q, QuerySet

from ispbill.billing.selectors import balance_subquery
from ispbill.subscribers.models import Subscriber


def subscriber_list(*, q: str = "", status: str = "", area: str = "", package_id: int | None = None) -> QuerySet[Subscriber]:
    qs = Subscriber.objects.annotate(balance_paisa=balance_subquery()).order_by("id")
    if q:
        q = q.strip()
        qs = qs.filter(Q(name__icontains=q) | Q(pppoe_username__icontains=q) | Q(phone__contains=q.lstrip("+0")))
    if status:
        qs = qs.filter(status=status)
    if area:
        qs = qs.filter(area__iexact=area)
    if package_id is not None:
        qs = qs.filter(package_id=package_id)
    return qs
