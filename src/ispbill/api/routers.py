"""Routers (NAS): CRUD, a connection test, the leakage report and reconcile-now.

Passwords and RADIUS secrets are write-only: responses say only whether one is set.
"""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.schemas import ErrorOut, ReconcileOut, RouterIn, RouterOut, RouterPatch, RouterTestOut
from ispbill.core import clock
from ispbill.core.errors import Conflict, NotFound
from ispbill.network import routers as services
from ispbill.network.models import ReconcileRun
from ispbill.network.models import Router as RouterModel
from ispbill.network.reconcile import reconcile_router

router = Router(tags=["routers"])


def out(r: RouterModel) -> dict:
    return {
        "id": r.pk, "name": r.name, "host": r.host, "port": r.port, "use_tls": r.use_tls, "tls_verify": r.tls_verify,
        "username": r.username, "password_set": bool(r.password_encrypted), "method": r.method,
        "suspended_profile": r.suspended_profile, "suspended_address_list": r.suspended_address_list,
        "radius_secret_set": bool(r.radius_secret_encrypted), "coa_port": r.coa_port, "is_active": r.is_active,
        "healthy": r.healthy, "last_ok_at": r.last_ok_at, "last_error": r.last_error, "last_error_at": r.last_error_at,
        "consecutive_failures": r.consecutive_failures, "identity": r.identity, "version": r.version,
        "subscribers": r.subscriber_count,
    }


def report(run: ReconcileRun) -> dict:
    lists = {
        name: list(getattr(run, name))
        for name in ("online_unpaid", "unknown_on_router", "paid_but_suspended", "missing_on_router")
    }
    return {
        "id": run.pk, "router": run.router_id, "started_at": run.started_at, "finished_at": run.finished_at,
        "ok": not run.error, "error": run.error, "secrets": run.secrets, "online": run.online, "repaired": run.repaired,
        "counts": {name: len(values) for name, values in lists.items()}, **lists,
    }


def _routers():
    return RouterModel.objects.annotate(subscriber_count=Count("subscribers"))


def _get(router_id: int) -> RouterModel:
    return get_object_or_404(_routers(), pk=router_id)


@router.get("", response=list[RouterOut])
@paginate(Pagination)
def list_routers(request, active: bool | None = None):
    qs = _routers().order_by("name")
    if active is not None:
        qs = qs.filter(is_active=active)
    return Rows(qs, out)


@router.post("", response={201: RouterOut, 409: ErrorOut, 422: ErrorOut})
def create_router(request, payload: RouterIn):
    created = services.create_router(**payload.dict(), user=request.user)
    return Status(201, out(_get(created.pk)))


@router.get("/{router_id}", response={200: RouterOut, 404: ErrorOut})
def get_router(request, router_id: int):
    return out(_get(router_id))


@router.patch("/{router_id}", response={200: RouterOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def update_router(request, router_id: int, payload: RouterPatch):
    get_object_or_404(RouterModel, pk=router_id)
    services.update_router(router_id=router_id, **payload.dict(exclude_unset=True), user=request.user)
    return out(_get(router_id))


@router.post("/{router_id}/test", response={200: RouterTestOut, 404: ErrorOut})
def test_router(request, router_id: int):
    get_object_or_404(RouterModel, pk=router_id)
    result = services.check_router(router_id=router_id, now=clock.now())
    return {"reachable": result.reachable, "identity": result.identity, "version": result.version, "error": result.error}


@router.get("/{router_id}/drift", response={200: ReconcileOut, 404: ErrorOut})
def latest_drift(request, router_id: int):
    get_object_or_404(RouterModel, pk=router_id)
    run = ReconcileRun.objects.filter(router_id=router_id).order_by("-started_at", "-id").first()
    if run is None:
        raise NotFound("this router has not been reconciled yet", code="not_reconciled")
    return report(run)


@router.post("/{router_id}/reconcile", response={200: ReconcileOut, 404: ErrorOut, 409: ErrorOut})
def reconcile_now(request, router_id: int):
    target = get_object_or_404(RouterModel, pk=router_id)
    if not target.is_active:
        raise Conflict("the router is not active; activate it before reconciling", code="router_inactive")
    return report(reconcile_router(target, now=clock.now()))
