from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.pagination import LimitOffsetPagination, paginate

from ispbill.api.schemas import ErrorOut, PackageIn, PackageOut, PackagePatch
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
@paginate(LimitOffsetPagination)
def list_packages(request, active: bool | None = None):
    qs = Package.objects.all()
    if active is not None:
        qs = qs.filter(is_active=active)
    return [out(p) for p in qs]


@router.post("", response={201: PackageOut, 409: ErrorOut, 422: ErrorOut})
def create_package(request, payload: PackageIn):
    return Status(201, out(services.create_package(**payload.dict())))


@router.get("/{package_id}", response={200: PackageOut, 404: ErrorOut})
def get_package(request, package_id: int):
    return out(get_object_or_404(Package, pk=package_id))


@router.patch("/{package_id}", response={200: PackageOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut})
def update_package(request, package_id: int, payload: PackagePatch):
    get_object_or_404(Package, pk=package_id)
    return out(services.update_package(package_id=package_id, **payload.dict(exclude_unset=True)))
