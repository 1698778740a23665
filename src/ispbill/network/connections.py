"""One driver per router per process, rebuilt when the router's record changes."""

from __future__ import annotations

import os
import threading

from ispbill.network.choices import EnforcementMethod
from ispbill.network.drivers.base import Driver
from ispbill.network.models import Router

_lock = threading.Lock()
_drivers: dict[int, tuple[object, Driver]] = {}
_factories: dict[str, object] = {}


def register_method(method: str, factory) -> None:
    """``factory(router) -> Driver`` for an enforcement method (tests may install fakes)."""
    _factories[method] = factory


def _routeros(router: Router) -> Driver:
    from ispbill.network.drivers.routeros import RouterOSDriver

    return RouterOSDriver(
        router.host, router.port, router.username, router.password, use_tls=router.use_tls,
        tls_verify=router.tls_verify, suspended_profile=router.suspended_profile,
        address_list=router.suspended_address_list, timeout=10.0,
    )


register_method(EnforcementMethod.ROUTEROS, _routeros)


def _radius(router: Router) -> Driver:
    """FreeRADIUS's SQL database (``RADIUS_DATABASE_URL``) plus RFC 5176 to the NAS at
    ``router.host:router.coa_port``."""
    from ispbill.network.drivers.radius import RadiusDriver

    url = os.environ.get("RADIUS_DATABASE_URL", "").strip()
    if not url:
        raise RuntimeError(
            f"router '{router.name}' uses RADIUS enforcement, but RADIUS_DATABASE_URL is not set "
            "(postgresql://… or sqlite:///… of the FreeRADIUS database)"
        )
    return RadiusDriver(
        url, router.host, router.coa_port, router.radius_secret, address_list=router.suspended_address_list or "suspended"
    )


register_method(EnforcementMethod.RADIUS, _radius)


def driver_for(router: Router) -> Driver:
    version = (router.updated_at, router.method)
    with _lock:
        cached = _drivers.get(router.pk)
        if cached is not None and cached[0] == version:
            return cached[1]
        if cached is not None:
            try:
                cached[1].close()
            except Exception:
                pass
        factory = _factories.get(router.method)
        if factory is None:
            raise RuntimeError(f"no driver for enforcement method '{router.method}'")
        driver = factory(router)
        _drivers[router.pk] = (version, driver)
        return driver


def one_off_driver(router: Router, *, timeout: float) -> Driver:
    """A fresh, uncached driver for someone waiting on the answer (a staff page): a
    RouterOS router gets one attempt with ``timeout`` seconds per read instead of the
    dispatcher's retries. The caller closes it."""
    if router.method == EnforcementMethod.ROUTEROS and _factories.get(router.method) is _routeros:
        from ispbill.network.drivers.routeros import RouterOSDriver

        return RouterOSDriver(
            router.host, router.port, router.username, router.password, use_tls=router.use_tls,
            tls_verify=router.tls_verify, suspended_profile=router.suspended_profile,
            address_list=router.suspended_address_list, timeout=timeout, attempts=1,
        )
    factory = _factories.get(router.method)
    if factory is None:
        raise RuntimeError(f"no driver for enforcement method '{router.method}'")
    return factory(router)


def forget_drivers() -> None:
    with _lock:
        for _, driver in _drivers.values():
            try:
                driver.close()
            except Exception:
                pass
        _drivers.clear()
