"""Create subscribers from a router's PPP secrets (``ispbill import-router``).

An ISP moving to ispbill already has its customers as secrets on its MikroTik. Each
secret billing does not know becomes a subscriber on that router: the user name from
the secret's name, the display name from its comment, the package from its profile.
Secrets that cannot become a valid subscriber are skipped with a reason; nothing is
guessed silently. The whole import is one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import transaction

from ispbill.audit.services import record, target_of
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.phone import PhoneError, normalize_bd_mobile
from ispbill.network.drivers.base import SecretInfo
from ispbill.network.models import Router
from ispbill.plans.models import Package
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber

# A Bangladeshi mobile number inside free text: 01[3-9] + 8 digits, optionally +88/88/0088
# first, with the usual separators. Digits either side must not continue the number.
_PHONE_IN_TEXT = re.compile(r"(?<![\d+])(?:(?:\+|00)?88[\s\-]?)?0?[\s\-]?1[3-9](?:[\s\-]?\d){8}(?!\d)")
_NAME_TRIM = " \t-_,;:|/()[]"


class ImportRefused(DomainError):
    """The import cannot start (bad options); nothing was read or written."""


@dataclass(frozen=True)
class Planned:
    username: str
    name: str
    phone: str
    package: Package
    profile: str
    status: str
    phone_source: str  # "comment" | "placeholder"


@dataclass(frozen=True)
class Skipped:
    username: str
    reason: str


@dataclass
class ImportPlan:
    router: Router
    create: list[Planned] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # secrets billing already has
    created: int = 0


def parse_maps(pairs: list[str]) -> dict[str, Package]:
    """``PROFILE=PACKAGE NAME`` options → profile → package (ImportRefused if malformed or
    the package does not exist)."""
    out: dict[str, Package] = {}
    for pair in pairs:
        profile, sep, package_name = pair.partition("=")
        profile, package_name = profile.strip(), package_name.strip()
        if not sep or not profile or not package_name:
            raise ImportRefused(f"--map '{pair}': expected PROFILE=PACKAGE_NAME", code="invalid_map")
        out[profile] = package_named(package_name, option=f"--map {pair}")
    return out


def package_named(name: str, *, option: str) -> Package:
    package = Package.objects.filter(name=name).first() or Package.objects.filter(name__iexact=name).first()
    if package is None:
        raise ImportRefused(f"{option}: no package named '{name}'", code="unknown_package")
    return package


def phone_in(text: str) -> tuple[str, str] | None:
    """The first Bangladeshi mobile number in ``text`` (normalised) and ``text`` without it."""
    for match in _PHONE_IN_TEXT.finditer(text or ""):
        try:
            phone = normalize_bd_mobile(match.group(0))
        except PhoneError:
            continue
        rest = text[: match.start()] + " " + text[match.end() :]
        rest = re.sub(r"\(\s*\)|\[\s*\]", " ", rest)  # brackets the number stood in
        return phone, re.sub(r"\s+", " ", rest).strip(_NAME_TRIM)
    return None


def _username_problem(name: str) -> str:
    if not name or any(c.isspace() for c in name) or len(name) > 64:
        return "the user name is not a valid PPPoE user name (1-64 characters, no spaces)"
    return ""


def plan_import(
    *,
    router: Router,
    secrets: list[SecretInfo],
    maps: dict[str, Package],
    default_package: Package | None = None,
    phone_from_comment: bool = False,
    placeholder_phone: str = "",
    suspended_profile: str = "",
) -> ImportPlan:
    """Decide, secret by secret, what the import would do. Reads only the database."""
    plan = ImportPlan(router=router)
    by_profile: dict[str, list[Package]] = {}
    for package in Package.objects.exclude(router_profile="").order_by("-is_active", "name"):
        by_profile.setdefault(package.router_profile, []).append(package)
    names = [s.name for s in secrets]
    known = set()
    for part in range(0, len(names), 900):
        known.update(Subscriber.objects.filter(pppoe_username__in=names[part : part + 900]).values_list("pppoe_username", flat=True))
    seen: set[str] = set()
    for secret in secrets:
        username = secret.name
        if username in known:
            plan.known.append(username)
            continue
        if username in seen:
            plan.skipped.append(Skipped(username, "listed twice on the router"))
            continue
        seen.add(username)
        problem = _username_problem(username)
        if problem:
            plan.skipped.append(Skipped(username, problem))
            continue
        if secret.disabled:
            plan.skipped.append(Skipped(username, "the secret is disabled on the router"))
            continue
        # The driver's own name for "suspended" (a RADIUS group) wins over the router's profile.
        suspended = secret.profile == (suspended_profile or router.suspended_profile)
        package = maps.get(secret.profile)
        if package is None and not suspended:
            candidates = by_profile.get(secret.profile, [])
            if len(candidates) > 1 and candidates[0].is_active == candidates[1].is_active:
                plan.skipped.append(Skipped(
                    username,
                    f"profile '{secret.profile}' belongs to several packages "
                    f"({', '.join(p.name for p in candidates)}); choose with --map",
                ))
                continue
            package = candidates[0] if candidates else None
        package = package or default_package
        if package is None:
            why = (
                f"on the suspended profile '{secret.profile}', so its package is unknown"
                if suspended else f"profile '{secret.profile}' matches no package"
            )
            plan.skipped.append(Skipped(username, f"{why} (use --map '{secret.profile}=PACKAGE' or --default-package)"))
            continue
        comment = (secret.comment or "").strip()
        name, phone, source = comment, "", ""
        if phone_from_comment:
            found = phone_in(comment)
            if found:
                phone, name = found
                source = "comment"
        if not phone and placeholder_phone:
            phone, source = placeholder_phone, "placeholder"
        if not phone:
            plan.skipped.append(Skipped(
                username,
                "no phone number" + (" in the comment" if phone_from_comment else "")
                + " (use --phone-from-comment or --placeholder-phone)",
            ))
            continue
        plan.create.append(Planned(
            username=username, name=(name or username)[:200], phone=phone, package=package, profile=secret.profile,
            status=SubscriberStatus.SUSPENDED if suspended else SubscriberStatus.ACTIVE, phone_source=source,
        ))
    return plan


def apply_import(plan: ImportPlan, *, today: date, now: datetime | None = None, user=None, ip: str | None = None) -> int:
    """Create every planned subscriber in one transaction (all or nothing), with one
    audit event (``user`` None: the system) naming who was imported."""
    with transaction.atomic():
        for item in plan.create:
            create_subscriber(
                today=today, name=item.name, phone=item.phone, pppoe_username=item.username,
                package_id=item.package.pk, router_id=plan.router.pk, status=item.status, user=user, ip=ip,
            )
        if plan.create:
            record(
                action="router.import", at=now or clock.now(), user=user, ip=ip, target=target_of(plan.router),
                after={"created": len(plan.create), "usernames": [item.username for item in plan.create],
                       "skipped": len(plan.skipped)},
                summary=f"imported {len(plan.create)} subscribers from {plan.router.name}",
            )
    plan.created = len(plan.create)
    return plan.created


def read_secrets(router: Router, *, timeout: float) -> tuple[list[SecretInfo], str]:
    """The router's PPP secrets, read now (one attempt, ``timeout`` seconds), and the
    profile its driver calls suspended. Raises the driver's errors."""
    from ispbill.network.connections import one_off_driver

    driver = one_off_driver(router, timeout=timeout)
    try:
        secrets = list(driver.read_state().secrets.values())
    finally:
        driver.close()
    return secrets, getattr(driver, "suspended_profile", "") or router.suspended_profile


def find_router(ref: str) -> Router:
    """A router by name, or by id when ``ref`` is a number no router is named."""
    router = Router.objects.filter(name=ref).first()
    if router is None and ref.isdigit():
        router = Router.objects.filter(pk=int(ref)).first()
    if router is None:
        raise ImportRefused(f"no router named or numbered '{ref}'", code="unknown_router")
    return router
