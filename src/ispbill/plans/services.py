from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction

from ispbill.core.errors import Conflict, DomainError
from ispbill.core.money import to_paisa
from ispbill.plans.models import Package


def create_package(*, name: str, price: Decimal, rate_limit: str = "", router_profile: str = "", is_active: bool = True) -> Package:
    name = name.strip()
    if not name:
        raise DomainError("name is required", code="name_required", field="name", status=422)
    if price < 0:
        raise DomainError("price must not be negative", code="invalid_amount", field="price", status=422)
    try:
        with transaction.atomic():
            return Package.objects.create(
                name=name, price_paisa=to_paisa(price), rate_limit=rate_limit.strip(),
                router_profile=router_profile.strip(), is_active=is_active,
            )
    except IntegrityError:
        raise Conflict(f"a package named '{name}' already exists", code="duplicate_package", status=409) from None


def update_package(*, package_id: int, **changes) -> Package:
    """Change a package. A new price applies to invoices issued from now on; issued
    invoices keep the price they were issued with."""
    with transaction.atomic():
        package = Package.objects.select_for_update().get(pk=package_id)
        if "price" in changes and changes["price"] is not None:
            if changes["price"] < 0:
                raise DomainError("price must not be negative", code="invalid_amount", field="price", status=422)
            package.price_paisa = to_paisa(changes.pop("price"))
        changes.pop("price", None)
        for field in ("name", "rate_limit", "router_profile", "is_active"):
            if field in changes and changes[field] is not None:
                value = changes[field].strip() if isinstance(changes[field], str) else changes[field]
                if field == "name" and not value:
                    raise DomainError("name is required", code="name_required", field="name", status=422)
                setattr(package, field, value)
        try:
            with transaction.atomic():
                package.save()
        except IntegrityError:
            raise Conflict(f"a package named '{package.name}' already exists", code="duplicate_package") from None
        return package
