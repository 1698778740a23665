from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.schemas import ErrorOut, PackageIn, PackageOut, PackagePatch
from ispbill.audit import services as audit
from ispbill.core import clock
from ispbill.core.money import format_amount
from ispbill.plans import services
from ispbill.plans.models import Package

router = Router(tags=["packages"])


def out(p: Package) -> dict:
    return {
        "id": p.pk, "name": p.name, "price": format_amount(p.price_paisa), "rate_limit": p.rate_limit,
        "router_profile": p.router_profile, "is_active": p.is_active,
    }


@router.get("", response=list[PackageOut])
@paginate(Pagination)
def list_packages(request, active: bool | None = None):
    qs = Package.objects.all()
    if active is not None:
        qs = qs.filter(is_active=active)
    return Rows(qs, out)


def _audited(p: Package) -> dict:
    return {field: getattr(p, field) for field in ("name", "price_paisa", "rate_limit", "router_profile", "is_active")}


@router.post("", response={201: PackageOut, 409: ErrorOut, 422: ErrorOut})
def create_package(request, payload: PackageIn):
    with transaction.atomic():
        package = services.create_package(**payload.dict())
        audit.record(action="package.create", at=clock.now(), user=request.user, target=audit.target_of(package),
                     after=_audited(package), summary=f"package {package.name} added")
    return Status(201, out(package))


@router.get("/{package_id}", response={200: PackageOut, 404: ErrorOut})
def get_package(request, package_id: int):
    return out(get_object_or_404(Package, pk=package_id))


@router.patch("/{package_id}", response={200: PackageOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def update_package(request, package_id: int, payload: PackagePatch):
    with transaction.atomic():
        before = _audited(get_object_or_404(Package.objects.select_for_update(), pk=package_id))
        package = services.update_package(package_id=package_id, **payload.dict(exclude_unset=True))
        old, new = audit.changes(before, _audited(package))
        if new:
            audit.record(action="package.update", at=clock.now(), user=request.user, target=audit.target_of(package),
                         before=old, after=new, summary=f"package {package.name} changed: {', '.join(new)}")
    return out(package)
