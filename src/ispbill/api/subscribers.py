from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.permissions import require_permission
from ispbill.api.schemas import ChangePackageIn, ChangePackageOut, ErrorOut, SubscriberIn, SubscriberOut, SubscriberPatch
from ispbill.billing import services as billing
from ispbill.billing.selectors import balance_subquery
from ispbill.core import clock
from ispbill.core.money import format_amount, to_paisa
from ispbill.core.timeutil import local_date
from ispbill.subscribers import services
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.selectors import subscriber_list

router = Router(tags=["subscribers"])


def out(s: Subscriber) -> dict:
    return {
        "id": s.pk, "name": s.name, "phone": s.phone, "email": s.email, "address": s.address, "area": s.area,
        "pppoe_username": s.pppoe_username, "package": s.package_id, "status": s.status,
        "activated_on": s.activated_on, "billing_mode": s.billing_mode, "grace_days_override": s.grace_days_override,
        "never_suspend": s.never_suspend, "language": s.language, "notes": s.notes, "billed_through": s.billed_through,
        "balance": format_amount(s.balance_paisa), "router": s.router_id,
    }


def _get(subscriber_id: int) -> Subscriber:
    return get_object_or_404(Subscriber.objects.annotate(balance_paisa=balance_subquery()), pk=subscriber_id)


@router.get("", response=list[SubscriberOut])
@paginate(Pagination)
def list_subscribers(request, q: str = "", status: str = "", area: str = "", package: int | None = None):
    return Rows(subscriber_list(q=q, status=status, area=area, package_id=package), out)


@router.post("", response={201: SubscriberOut, 409: ErrorOut, 422: ErrorOut})
def create_subscriber(request, payload: SubscriberIn):
    require_permission(request, "change_subscribers")
    data = payload.dict()
    data["package_id"] = data.pop("package")
    data["router_id"] = data.pop("router")
    sub = services.create_subscriber(today=local_date(clock.now()), user=request.user, **data)
    return Status(201, out(_get(sub.pk)))


@router.get("/{subscriber_id}", response={200: SubscriberOut, 404: ErrorOut})
def get_subscriber(request, subscriber_id: int):
    return out(_get(subscriber_id))


@router.patch("/{subscriber_id}", response={200: SubscriberOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def update_subscriber(request, subscriber_id: int, payload: SubscriberPatch):
    changes = payload.dict(exclude_unset=True)
    # Status and the suspension exemption decide what the router enforces.
    require_permission(request, "change_subscribers", *(("manage_status",) if {"status", "never_suspend"} & set(changes) else ()))
    get_object_or_404(Subscriber, pk=subscriber_id)
    if "router" in changes:
        changes["router_id"] = changes.pop("router")
    services.update_subscriber(subscriber_id=subscriber_id, today=local_date(clock.now()), user=request.user, **changes)
    return out(_get(subscriber_id))


@router.post("/{subscriber_id}/change-package", response={200: ChangePackageOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def change_package(request, subscriber_id: int, payload: ChangePackageIn):
    require_permission(request, "manage_billing")
    now = clock.now()
    result = billing.change_package(
        subscriber_id=subscriber_id, package_id=payload.package, effective_on=payload.effective_on,
        preview=payload.preview, today=local_date(now), now=now, user=request.user,
    )
    return {
        "document": result.document,
        "preview": payload.preview,
        "total": format_amount(to_paisa(result.total)),
        "lines": [{"kind": str(l.kind), "description": l.description, "amount": format_amount(to_paisa(l.amount))} for l in result.lines],
        "invoice": result.invoice.pk if result.invoice else None,
        "credit_note": result.credit_note.pk if result.credit_note else None,
    }
