"""Routers (NAS): add, edit, test and reconcile them by hand.

Passwords and RADIUS secrets are stored encrypted (:mod:`ispbill.core.crypto`) and never
read back out through these services' callers: the API reports only whether one is set.
Each of these writes appends an audit event; the event says whether a secret changed,
never what it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from ispbill.audit.services import record, target_of
from ispbill.core import clock
from ispbill.core.crypto import SecretUnreadable
from ispbill.core.errors import Conflict, DomainError
from ispbill.network.choices import EnforcementMethod
from ispbill.network.connections import driver_for, one_off_driver
from ispbill.network.drivers.base import DriverError, RouterUnavailable
from ispbill.network.handlers import mark_router
from ispbill.network.models import ReconcileRun, Router

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


def audit_view(router: Router) -> dict:
    """A router's settings as the audit log keeps them: secrets only as "set" or not."""
    return {
        **{field: getattr(router, field) for field in _FIELDS},
        "password_set": bool(router.password_encrypted),
        "radius_secret_set": bool(router.radius_secret_encrypted),
    }


def _save(router: Router, *, audit: dict | None = None) -> Router:
    """Save; ``audit`` (keyword arguments of :func:`ispbill.audit.services.record`
    without ``target``/``after``) appends the event in the same transaction."""
    if Router.objects.filter(name=router.name).exclude(pk=router.pk).exists():
        raise Conflict(f"a router named '{router.name}' already exists", code="duplicate_router")
    try:
        with transaction.atomic():
            router.save()
            if audit is not None:
                record(target=target_of(router), after=audit_view(router), **audit)
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
    user=None,
    now: datetime | None = None,
    ip: str | None = None,
) -> Router:
    """Add a router; the password and RADIUS secret are stored encrypted. ``user`` (None:
    the system), ``now`` and ``ip`` go to the audit event."""
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
    audit = {"action": "router.create", "at": now or clock.now(), "user": user, "ip": ip,
             "summary": f"router {router.name} added ({router.host}:{router.port})"}
    return _save(router, audit=audit)


def update_router(*, router_id: int, user=None, now: datetime | None = None, ip: str | None = None, **changes) -> Router:
    """Change a router. ``password``/``radius_secret``: absent or None keeps the stored
    one, "" clears it. The driver for the router is rebuilt on its next use. ``user``,
    ``now`` and ``ip`` go to the audit event."""
    unknown = set(changes) - set(_FIELDS) - {"password", "radius_secret"}
    if unknown:
        raise DomainError(f"unknown router fields: {', '.join(sorted(unknown))}", code="invalid_input", status=422)
    for field in _FIELDS:
        if field in changes and changes[field] is None:
            del changes[field]  # null on a required field: leave it as it is
    data = _clean(changes)
    with transaction.atomic():
        router = Router.objects.select_for_update().get(pk=router_id)
        before = audit_view(router)
        old_secrets = (router.password_encrypted, router.radius_secret_encrypted)
        for field in _FIELDS:
            if field in data:
                setattr(router, field, data[field])
        if "password" in data:
            router.password = data["password"]
        if "radius_secret" in data:
            router.radius_secret = data["radius_secret"]
        _check_complete(router)
        changed = [field for field in _FIELDS if before[field] != getattr(router, field)]
        if "password" in data and (data["password"] or old_secrets[0]):
            changed.append("password")
        if "radius_secret" in data and (data["radius_secret"] or old_secrets[1]):
            changed.append("radius_secret")
        audit = {"action": "router.update", "at": now or clock.now(), "user": user, "ip": ip, "before": before,
                 "summary": f"router {router.name} changed: {', '.join(changed) or 'nothing'}"}
        return _save(router, audit=audit)


@dataclass(frozen=True)
class RouterCheck:
    reachable: bool
    identity: str | None
    version: str | None
    error: str | None


def check_router(
    *, router_id: int, now: datetime, timeout: float | None = None, user=None, ip: str | None = None
) -> RouterCheck:
    """Connect and log in through the router's driver; record its health (and, when it
    answers, its identity and version) on the router, and the test in the audit log.
    ``timeout``: use a one-off driver, one attempt of that many seconds (someone waits)."""
    router = Router.objects.get(pk=router_id)
    result = _ask(router, timeout=timeout)  # no transaction open while the router answers
    after = {"reachable": result.reachable, "identity": result.identity, "version": result.version, "error": result.error}
    with transaction.atomic():
        if result.reachable:
            mark_router(router, now=now)
            Router.objects.filter(pk=router.pk).update(identity=result.identity[:200], version=result.version[:100])
        else:
            mark_router(router, now=now, error=result.error)
        record(
            action="router.test", at=now, user=user, ip=ip, target=target_of(router), after=after,
            summary=f"connection test of {router.name}: "
            + (f"ok ({result.identity} {result.version})" if result.reachable else f"failed ({result.error})"),
        )
    return result


def _ask(router: Router, *, timeout: float | None) -> RouterCheck:
    driver = None
    try:
        driver = driver_for(router) if timeout is None else one_off_driver(router, timeout=timeout)
        info = driver.test()
    except RouterUnavailable as exc:
        error = f"{exc.reason}: {exc.message}"
    except (DriverError, SecretUnreadable) as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # no driver for the method, its configuration missing, …
        log.warning("testing router %s failed", router.name, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
    else:
        return RouterCheck(True, str(info.get("identity", "")), str(info.get("version", "")), None)
    finally:
        if driver is not None and timeout is not None:
            driver.close()
    return RouterCheck(False, None, None, error)


def reconcile_by_hand(*, router_id: int, now: datetime, user=None, ip: str | None = None) -> ReconcileRun:
    """Reconcile one router now (as the scheduled job does) and log who asked for it and
    what it found. Refused for an inactive router."""
    from ispbill.network.reconcile import reconcile_router

    router = Router.objects.get(pk=router_id)
    if not router.is_active:
        raise Conflict("the router is not active; activate it before reconciling", code="router_inactive")
    run = reconcile_router(router, now=now)
    lists = ("online_unpaid", "unknown_on_router", "paid_but_suspended", "missing_on_router")
    after = {"run": run.pk, "ok": not run.error, "error": run.error, "secrets": run.secrets, "online": run.online,
             "repaired": run.repaired, **{name: len(getattr(run, name)) for name in lists}}
    record(
        action="router.reconcile", at=now, user=user, ip=ip, target=target_of(router), after=after,
        summary=f"reconciled {router.name} by hand: " + (f"failed ({run.error})" if run.error else f"{run.repaired} repaired"),
    )
    return run
