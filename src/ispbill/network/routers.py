"""Routers (NAS): add, edit and test them.

Passwords and RADIUS secrets are stored encrypted (:mod:`ispbill.core.crypto`) and never
read back out through these services' callers: the API reports only whether one is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from ispbill.core.crypto import SecretUnreadable
from ispbill.core.errors import Conflict, DomainError
from ispbill.network.choices import EnforcementMethod
from ispbill.network.connections import driver_for
from ispbill.network.drivers.base import DriverError, RouterUnavailable
from ispbill.network.handlers import mark_router
from ispbill.network.models import Router

log = logging.getLogger("ispbill.network")

_TEXT_LIMITS = {"name": 100, "host": 255, "username": 100, "suspended_profile": 100, "suspended_address_list": 100}
_FIELDS = (
    "name", "host", "port", "use_tls", "tls_verify", "username", "method", "suspended_profile",
    "suspended_address_list", "coa_port", "is_active",
)


def _invalid(message: str, code: str, field: str) -> DomainError:
    return DomainError(message, code=code, field=field, status=422)


def _check_port(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _invalid(f"{field} must be a TCP/UDP port number, 1-65535", "invalid_port", field)
    return value


def _clean(changes: dict) -> dict:
    out = dict(changes)
    for field, limit in _TEXT_LIMITS.items():
        if field not in out:
            continue
        value = (out[field] or "").strip()
        if len(value) > limit:
            raise _invalid(f"{field} must be at most {limit} characters", f"invalid_{field}", field)
        out[field] = value
    if "name" in out and not out["name"]:
        raise _invalid("name is required", "name_required", "name")
    if "host" in out:
        host = out["host"]
        if not host or any(c.isspace() for c in host) or "/" in host:
            raise _invalid("host must be an IP address or host name (no scheme, path or spaces)", "invalid_host", "host")
    for field in ("suspended_profile", "suspended_address_list"):
        if field in out and not out[field]:
            raise _invalid(f"{field} must not be empty", f"invalid_{field}", field)
    for field in ("port", "coa_port"):
        if field in out:
            out[field] = _check_port(out[field], field)
    if "method" in out and out["method"] not in EnforcementMethod.values:
        raise _invalid(f"method must be one of {', '.join(EnforcementMethod.values)}", "invalid_method", "method")
    for field in ("use_tls", "tls_verify", "is_active"):
        if field in out and not isinstance(out[field], bool):
            raise _invalid(f"{field} must be true or false", f"invalid_{field}", field)
    for field in ("password", "radius_secret"):
        if field in out and out[field] is None:
            del out[field]  # null means "leave as it is"
    return out


def _check_complete(router: Router) -> None:
    """What a router needs before anything can talk to it, checked on the final record."""
    if router.method == EnforcementMethod.ROUTEROS and not router.username:
        raise _invalid("a RouterOS router needs the API user name", "username_required", "username")
    if router.method == EnforcementMethod.RADIUS and not router.radius_secret_encrypted:
        raise _invalid("a RADIUS NAS needs the shared secret (radius_secret)", "radius_secret_required", "radius_secret")


def _save(router: Router) -> Router:
    if Router.objects.filter(name=router.name).exclude(pk=router.pk).exists():
        raise Conflict(f"a router named '{router.name}' already exists", code="duplicate_router")
    try:
        with transaction.atomic():
            router.save()
    except IntegrityError:
        if not Router.objects.filter(name=router.name).exclude(pk=router.pk).exists():
            raise
        raise Conflict(f"a router named '{router.name}' already exists", code="duplicate_router") from None
    return router


def create_router(
    *,
    name: str,
    host: str,
    port: int = 8728,
    use_tls: bool = False,
    tls_verify: bool = True,
    username: str = "",
    password: str = "",
    method: str = EnforcementMethod.ROUTEROS,
    suspended_profile: str = "Suspended_Profile",
    suspended_address_list: str = "suspended",
    radius_secret: str = "",
    coa_port: int = 3799,
    is_active: bool = True,
) -> Router:
    """Add a router; the password and RADIUS secret are stored encrypted."""
    data = _clean(
        {
            "name": name, "host": host, "port": port, "use_tls": use_tls, "tls_verify": tls_verify,
            "username": username, "password": password, "method": method, "suspended_profile": suspended_profile,
            "suspended_address_list": suspended_address_list, "radius_secret": radius_secret, "coa_port": coa_port,
            "is_active": is_active,
        }
    )
    router = Router(**{f: data[f] for f in _FIELDS})
    router.password = data.get("password", "")
    router.radius_secret = data.get("radius_secret", "")
    _check_complete(router)
    return _save(router)


def update_router(*, router_id: int, **changes) -> Router:
    """Change a router. ``password``/``radius_secret``: absent or None keeps the stored
    one, "" clears it. The driver for the router is rebuilt on its next use."""
    unknown = set(changes) - set(_FIELDS) - {"password", "radius_secret"}
    if unknown:
        raise DomainError(f"unknown router fields: {', '.join(sorted(unknown))}", code="invalid_input", status=422)
    for field in _FIELDS:
        if field in changes and changes[field] is None:
            del changes[field]  # null on a required field: leave it as it is
    data = _clean(changes)
    with transaction.atomic():
        router = Router.objects.select_for_update().get(pk=router_id)
        for field in _FIELDS:
            if field in data:
                setattr(router, field, data[field])
        if "password" in data:
            router.password = data["password"]
        if "radius_secret" in data:
            router.radius_secret = data["radius_secret"]
        _check_complete(router)
        return _save(router)


@dataclass(frozen=True)
class RouterCheck:
    reachable: bool
    identity: str | None
    version: str | None
    error: str | None


def check_router(*, router_id: int, now: datetime) -> RouterCheck:
    """Connect and log in through the router's driver; record its health (and, when it
    answers, its identity and version) on the router."""
    router = Router.objects.get(pk=router_id)
    try:
        info = driver_for(router).test()
    except RouterUnavailable as exc:
        error = f"{exc.reason}: {exc.message}"
    except (DriverError, SecretUnreadable) as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # no driver for the method, its configuration missing, …
        log.warning("testing router %s failed", router.name, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
    else:
        identity, version = str(info.get("identity", "")), str(info.get("version", ""))
        mark_router(router, now=now)
        Router.objects.filter(pk=router.pk).update(identity=identity[:200], version=version[:100])
        return RouterCheck(True, identity, version, None)
    mark_router(router, now=now, error=error)
    return RouterCheck(False, None, None, error)
