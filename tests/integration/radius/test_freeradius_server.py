"""The RADIUS driver with a real FreeRADIUS server (the Debian ``freeradius`` package):
what the driver writes is what FreeRADIUS answers an Access-Request with, and the
sessions FreeRADIUS records from accounting are the ones the driver disconnects."""

from __future__ import annotations

import subprocess

import pytest
from pyrad import packet as radius_packet
from pyrad.client import Client

from ispbill.network.drivers.base import Target
from ispbill.network.drivers.radius import radius_dictionary

from .conftest import CLIENT_SECRET, COA_SECRET, NAS_IP, RadiusDb, make_driver

PACKAGE = "home-20M"


@pytest.fixture(scope="module")
def db(freeradius):
    d = RadiusDb(f"sqlite:///{freeradius.db_path}")
    d.group_reply(PACKAGE, "Mikrotik-Rate-Limit", "20M/20M")
    yield d
    d.close()


@pytest.fixture
def driver(freeradius, db, nas):
    d = make_driver(f"sqlite:///{freeradius.db_path}", nas)
    yield d
    d.close()


def _client(freeradius) -> Client:
    return Client(
        "127.0.0.1", authport=freeradius.auth_port, acctport=freeradius.acct_port, secret=CLIENT_SECRET,
        dict=radius_dictionary(), timeout=2, retries=2,
    )


def login(freeradius, username: str, password: str) -> radius_packet.Packet:
    """An Access-Request as the NAS sends it for a PPPoE login (PAP)."""
    client = _client(freeradius)
    request = client.CreateAuthPacket(User_Name=username, NAS_IP_Address=NAS_IP, Service_Type="Framed-User")
    request["User-Password"] = request.PwCrypt(password)
    return client.SendPacket(request)


def account(freeradius, status: str, username: str, session_id: str, address: str) -> None:
    """An Accounting-Request (Start/Stop) as the NAS sends it; FreeRADIUS writes radacct."""
    client = _client(freeradius)
    request = client.CreateAcctPacket(
        User_Name=username, Acct_Status_Type=status, Acct_Session_Id=session_id, NAS_IP_Address=NAS_IP,
        Framed_IP_Address=address, Calling_Station_Id="AA:BB:CC:DD:EE:01",
    )
    assert client.SendPacket(request).code == radius_packet.AccountingResponse


def reply_attributes(reply: radius_packet.Packet) -> dict[str, list]:
    return {name: reply[name] for name in reply.keys() if isinstance(name, str)}


def test_suspended_user_gets_the_suspended_replies_and_the_package_after_restore(freeradius, db, driver):
    db.user("alice", "alice-pw")
    target = Target(1, "alice", PACKAGE)

    driver.restore(target)  # a new subscriber: their package group
    reply = login(freeradius, "alice", "alice-pw")
    assert reply.code == radius_packet.AccessAccept, freeradius.tail()
    assert reply_attributes(reply) == {"Mikrotik-Rate-Limit": ["20M/20M"]}

    driver.suspend(target)
    reply = login(freeradius, "alice", "alice-pw")
    assert reply.code == radius_packet.AccessAccept
    assert reply_attributes(reply) == {"Mikrotik-Address-List": ["suspended"], "Mikrotik-Rate-Limit": ["512k/512k"]}

    driver.restore(target)
    reply = login(freeradius, "alice", "alice-pw")
    assert reply_attributes(reply) == {"Mikrotik-Rate-Limit": ["20M/20M"]}

    assert login(freeradius, "alice", "wrong").code == radius_packet.AccessReject


def test_radtest_sees_the_suspended_replies(freeradius, db, driver):
    """The same with freeradius-utils' radtest, as staff would check it by hand."""
    db.user("erin", "erin-pw")
    driver.suspend(Target(5, "erin", PACKAGE))

    out = subprocess.run(
        ["radtest", "erin", "erin-pw", f"127.0.0.1:{freeradius.auth_port}", "0", CLIENT_SECRET.decode()],
        capture_output=True, text=True, timeout=15,
    )

    assert "Access-Accept" in out.stdout, out.stdout + out.stderr
    assert 'Mikrotik-Address-List = "suspended"' in out.stdout
    assert 'Mikrotik-Rate-Limit = "512k/512k"' in out.stdout


def test_the_session_freeradius_recorded_is_disconnected(freeradius, db, driver, nas):
    db.user("bob", "bob-pw", (PACKAGE, 1))
    assert login(freeradius, "bob", "bob-pw").code == radius_packet.AccessAccept
    account(freeradius, "Start", "bob", "8100000B", "10.1.1.11")

    state = driver.read_state()
    assert state.active["bob"].session_id == "8100000B"
    assert state.active["bob"].address == "10.1.1.11"
    assert "10.1.1.11" not in state.suspended

    driver.suspend(Target(2, "bob", PACKAGE))

    (request,) = nas.for_user("bob")
    assert request.attr("Acct-Session-Id") == "8100000B"
    assert request.attr("Framed-IP-Address") == "10.1.1.11"
    assert request.authenticator_valid(COA_SECRET.encode())
    state = driver.read_state()
    assert state.secrets["bob"].profile == "suspended"
    assert state.suspended["10.1.1.11"].comment == ""

    # The NAS ends the session and says so; the redial gets the suspended replies.
    account(freeradius, "Stop", "bob", "8100000B", "10.1.1.11")
    assert "bob" not in driver.read_state().active
    reply = login(freeradius, "bob", "bob-pw")
    assert reply["Mikrotik-Address-List"] == ["suspended"]
    account(freeradius, "Start", "bob", "8100000C", "10.200.0.11")
    assert driver.read_state().suspended["10.200.0.11"].address == "10.200.0.11"

    driver.restore(Target(2, "bob", PACKAGE))
    assert nas.for_user("bob")[-1].attr("Acct-Session-Id") == "8100000C"
    assert login(freeradius, "bob", "bob-pw")["Mikrotik-Rate-Limit"] == ["20M/20M"]


def test_bulk_suspend_with_freeradius(freeradius, db, driver):
    targets = [Target(10 + i, f"bulk{i}", PACKAGE) for i in range(6)]
    for t in targets:
        db.user(t.username, "pw", (PACKAGE, 1))

    assert driver.bulk_suspend(targets).ok == [t.subscriber_id for t in targets]

    for t in targets:
        assert login(freeradius, t.username, "pw")["Mikrotik-Address-List"] == ["suspended"]
    assert driver.bulk_restore(targets).ok == [t.subscriber_id for t in targets]
    for t in targets:
        assert reply_attributes(login(freeradius, t.username, "pw")) == {"Mikrotik-Rate-Limit": ["20M/20M"]}


def test_registered_for_radius_routers(freeradius, db, nas, monkeypatch):
    from ispbill.network.choices import EnforcementMethod
    from ispbill.network.connections import driver_for, forget_drivers
    from ispbill.network.drivers.radius import RadiusDriver
    from ispbill.network.models import Router

    router = Router(name="nas-1", host=NAS_IP, method=EnforcementMethod.RADIUS, coa_port=nas.port)
    router.radius_secret = COA_SECRET
    monkeypatch.setenv("RADIUS_DATABASE_URL", f"sqlite:///{freeradius.db_path}")
    try:
        driver = driver_for(router)
        assert isinstance(driver, RadiusDriver)
        assert COA_SECRET not in repr(driver)
        assert driver.test()["identity"] == f"FreeRADIUS SQL at {freeradius.db_path}"
        db.user("frank", "pw", (PACKAGE, 1))
        db.session("frank", "8100000F", "10.1.1.15")
        driver.suspend(Target(6, "frank", PACKAGE))
        (request,) = nas.for_user("frank")
        assert request.authenticator_valid(COA_SECRET.encode())
    finally:
        forget_drivers()

    monkeypatch.delenv("RADIUS_DATABASE_URL")
    router.name = "nas-2"
    with pytest.raises(RuntimeError, match="RADIUS_DATABASE_URL"):
        driver_for(router)
    forget_drivers()
