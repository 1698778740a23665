"""Routers, reconciliation, import and the captive page: database + RouterOS simulator."""

from __future__ import annotations

import socket
from datetime import date
from decimal import Decimal

import pytest

from ispbill.network import connections
from ispbill.network.routers import create_router
from ispbill.plans.services import create_package
from ispbill.sim.routeros import RouterOSSimulator
from ispbill.subscribers.services import create_subscriber

HOME = "home-10M"
PRO = "pro-20M"
SUSPENDED = "Suspended_Profile"
NOV_1 = date(2026, 11, 1)


@pytest.fixture(autouse=True)
def _fresh_drivers():
    """Drivers are cached per router id; ids repeat across rolled-back tests."""
    connections.forget_drivers()
    yield
    connections.forget_drivers()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sim():
    with RouterOSSimulator(users={"admin": "s3cret-pw"}, identity="core-dhanmondi", version="7.16.2") as s:
        s.add_profile(HOME)
        s.add_profile(PRO)
        yield s


@pytest.fixture
def packages(db):
    return {
        "home": create_package(name="Home 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile=HOME),
        "pro": create_package(name="Pro 20M", price=Decimal("1500.00"), rate_limit="20M/20M", router_profile=PRO),
    }


def make_router(sim, name: str = "core-1", **overrides):
    fields = {"name": name, "host": "127.0.0.1", "port": sim.port, "username": "admin", "password": "s3cret-pw"}
    return create_router(**(fields | overrides))


@pytest.fixture
def router(db, sim):
    return make_router(sim)


def add_subscriber(package, username: str, *, router=None, n: int = 0, name: str | None = None, **extra):
    return create_subscriber(
        today=NOV_1, name=name or username.title(), phone=f"017{n:08d}", pppoe_username=username,
        package_id=package.pk, router_id=router.pk if router else None, activated_on=NOV_1, **extra,
    )
