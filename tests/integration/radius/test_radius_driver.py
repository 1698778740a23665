"""RadiusDriver against a FreeRADIUS database (SQLite; PostgreSQL in the PostgreSQL pass)
and a fake NAS answering RFC 5176 Disconnect-Requests over a real UDP socket."""

from __future__ import annotations

import time

import pytest

from ispbill.network.drivers.base import (
    BulkResult,
    Driver,
    RouterCommandError,
    RouterUnavailable,
    Target,
)
from ispbill.network.drivers.radius import RadiusDriver

from .conftest import COA_SECRET, NAS_IP, make_driver

PACKAGE = "home-20M"
ALICE = Target(subscriber_id=1, username="alice", profile=PACKAGE)


@pytest.fixture
def driver(radius_db, nas):
    d = make_driver(radius_db.url, nas)
    yield d
    d.close()


def test_is_a_driver(driver):
    assert isinstance(driver, Driver)


# --- suspend -------------------------------------------------------------------------


def test_suspend_puts_the_user_in_the_suspended_group_and_disconnects_the_open_session(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")

    driver.suspend(ALICE)

    assert radius_db.groups("alice") == [("suspended", 0), (PACKAGE, 1)]
    assert radius_db.replies("suspended") == {
        "Mikrotik-Address-List": (":=", "suspended"),
        "Mikrotik-Rate-Limit": (":=", "512k/512k"),
        "Fall-Through": (":=", "No"),
    }
    (request,) = nas.received
    assert request.packet.code == 40  # Disconnect-Request
    assert request.attr("User-Name") == "alice"
    assert request.attr("Acct-Session-Id") == "81000001"
    assert request.attr("Framed-IP-Address") == "10.1.1.5"
    assert request.authenticator_valid(COA_SECRET.encode())
    assert not request.authenticator_valid(b"another secret")


def test_suspend_twice_leaves_one_row_and_one_set_of_replies(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))

    driver.suspend(ALICE)
    driver.suspend(ALICE)

    assert radius_db.groups("alice") == [("suspended", 0), (PACKAGE, 1)]
    assert len(radius_db.replies("suspended")) == 3  # replies() fails on duplicates
    assert nas.received == []  # offline: no session, no packet


def test_suspend_repairs_duplicate_rows_and_sorts_before_every_other_group(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 0), ("suspended", 5), ("suspended", 7))

    driver.suspend(ALICE)

    assert radius_db.groups("alice") == [("suspended", -1), (PACKAGE, 0)]


def test_suspend_keeps_reply_attributes_staff_tuned(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.group_reply("suspended", "Mikrotik-Rate-Limit", "1M/1M")

    driver.suspend(ALICE)

    replies = radius_db.replies("suspended")
    assert replies["Mikrotik-Rate-Limit"] == (":=", "1M/1M")
    assert replies["Mikrotik-Address-List"] == (":=", "suspended")


def test_reply_attributes_and_group_name_are_configurable(radius_db, nas):
    driver = make_driver(
        radius_db.url, nas, suspended_group="walled", address_list="unpaid",
        suspended_reply={"Mikrotik-Address-List": "unpaid", "Framed-Pool": "pool-suspended"},
    )
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")

    driver.suspend(ALICE)

    assert radius_db.groups("alice") == [("walled", 0), (PACKAGE, 1)]
    assert radius_db.replies("walled") == {
        "Mikrotik-Address-List": (":=", "unpaid"),
        "Framed-Pool": (":=", "pool-suspended"),
        "Fall-Through": (":=", "No"),
    }
    state = driver.read_state()
    assert state.secrets["alice"].profile == "walled" == driver.suspended_profile
    assert state.suspended["10.1.1.5"].list == "unpaid"
    driver.close()


def test_only_open_sessions_of_this_nas_are_disconnected(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "old-1", "10.1.1.4", stopped=True)
    radius_db.session("alice", "elsewhere", "10.9.9.9", nas="192.0.2.7")
    radius_db.session("alice", "81000002", "10.1.1.6")

    driver.suspend(ALICE)

    assert [r.attr("Acct-Session-Id") for r in nas.received] == ["81000002"]


def test_nak_session_not_found_counts_as_done(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")
    nas.answers["alice"] = "nak-503"

    driver.suspend(ALICE)  # no error: the session had already ended

    assert len(nas.received) == 1


def test_other_nak_is_a_command_error(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")
    nas.answers["alice"] = "nak-501"  # Administratively-Prohibited

    with pytest.raises(RouterCommandError) as caught:
        driver.suspend(ALICE)

    assert caught.value.category == 501
    assert "501" in caught.value.message and "alice" in caught.value.message
    assert COA_SECRET not in caught.value.message
    assert radius_db.groups("alice")[0] == ("suspended", 0)  # the database change stays


def test_nak_without_error_cause_is_a_command_error(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")
    nas.answers["alice"] = "nak"

    with pytest.raises(RouterCommandError):
        driver.suspend(ALICE)


def test_no_answer_is_router_unavailable_after_the_retries(radius_db, nas):
    driver = make_driver(radius_db.url, nas, timeout=0.2, retries=1)
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")
    nas.answers["alice"] = "silent"

    started = time.monotonic()
    with pytest.raises(RouterUnavailable) as caught:
        driver.suspend(ALICE)
    elapsed = time.monotonic() - started

    assert caught.value.reason == "timeout"
    assert 0.35 < elapsed < 2.0
    first, second = nas.received  # sent twice, unchanged: a retransmission
    assert first.raw == second.raw

    nas.answers["alice"] = "ack"
    driver.suspend(ALICE)  # the outbox's retry: same rows, and this time the session ends
    assert len(nas.received) == 3
    assert radius_db.groups("alice") == [("suspended", 0), (PACKAGE, 1)]
    driver.close()


def test_unreachable_nas_port_is_router_unavailable(radius_db, nas):
    nas.close()  # nothing listens on the port any more
    driver = make_driver(radius_db.url, nas, timeout=0.2, retries=0)
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.session("alice", "81000001", "10.1.1.5")

    with pytest.raises(RouterUnavailable):
        driver.suspend(ALICE)
    driver.close()


# --- restore -------------------------------------------------------------------------


def test_restore_removes_the_suspended_group_keeps_the_package_and_disconnects(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    driver.suspend(ALICE)
    radius_db.session("alice", "81000003", "10.200.0.9")

    driver.restore(ALICE)

    assert radius_db.groups("alice") == [(PACKAGE, 1)]
    (request,) = nas.received
    assert (request.attr("User-Name"), request.attr("Acct-Session-Id"), request.attr("Framed-IP-Address")) == (
        "alice", "81000003", "10.200.0.9",
    )
    assert request.authenticator_valid(COA_SECRET.encode())


def test_restore_adds_a_missing_package_group_first_among_the_others(radius_db, nas, driver):
    radius_db.user("alice", "pw", ("suspended", 0), ("common", 1))

    driver.restore(ALICE)
    driver.restore(ALICE)

    assert radius_db.groups("alice") == [(PACKAGE, 0), ("common", 1)]


def test_restore_moves_the_package_before_an_older_package(radius_db, nas, driver):
    radius_db.user("alice", "pw", ("home-10M", 1), (PACKAGE, 2))

    driver.restore(ALICE)

    assert radius_db.groups("alice") == [(PACKAGE, 0), ("home-10M", 1)]
    assert driver.read_state().secrets["alice"].profile == PACKAGE


def test_refused_targets(driver):
    with pytest.raises(RouterCommandError):
        driver.suspend(Target(1, "", PACKAGE))
    with pytest.raises(RouterCommandError):
        driver.restore(Target(1, "alice", ""))
    with pytest.raises(RouterCommandError):
        driver.restore(Target(1, "alice", "suspended"))


# --- bulk ----------------------------------------------------------------------------


def test_bulk_suspend_sends_disconnects_concurrently_and_reports_per_subscriber(radius_db, nas, driver):
    targets = [Target(100 + i, f"user{i:02d}", PACKAGE) for i in range(12)]
    for i, t in enumerate(targets):
        radius_db.user(t.username, "pw", (PACKAGE, 1))
        if i != 11:  # user11 is offline
            radius_db.session(t.username, f"sess-{i}", f"10.1.2.{i + 1}")
    nas.answers["user03"] = "nak-503"
    nas.answers["user07"] = "nak-404"
    nas.delay = 0.2

    started = time.monotonic()
    result = driver.bulk_suspend(targets)
    elapsed = time.monotonic() - started

    assert isinstance(result, BulkResult)
    assert result.ok == [t.subscriber_id for t in targets if t.username != "user07"]
    assert list(result.failed) == [107]
    assert "404" in result.failed[107]
    assert nas.max_outstanding > 1  # several in flight
    assert elapsed < 11 * 0.2  # faster than one at a time
    for t in targets:
        assert radius_db.groups(t.username) == [("suspended", 0), (PACKAGE, 1)]
    assert sorted(r.attr("Acct-Session-Id") for r in nas.received) == sorted(f"sess-{i}" for i in range(11))
    assert all(r.authenticator_valid(COA_SECRET.encode()) for r in nas.received)


def test_bulk_with_a_silent_nas_waits_once_not_once_per_subscriber(radius_db, nas):
    driver = make_driver(radius_db.url, nas, timeout=0.3, retries=0, in_flight=2)
    targets = [Target(200 + i, f"user{i:02d}", PACKAGE) for i in range(10)]
    for i, t in enumerate(targets):
        radius_db.user(t.username, "pw", (PACKAGE, 1))
        radius_db.session(t.username, f"sess-{i}", f"10.1.3.{i + 1}")
    nas.default = "silent"

    started = time.monotonic()
    result = driver.bulk_suspend(targets)
    elapsed = time.monotonic() - started

    assert result.ok == []
    assert set(result.failed) == {t.subscriber_id for t in targets}
    assert elapsed < 1.5  # one round of timeouts, not ten
    assert len(nas.received) <= 3
    for t in targets:  # the group changes are made all the same: a retry only resends
        assert radius_db.groups(t.username)[0] == ("suspended", 0)
    driver.close()


def test_bulk_restore_and_duplicates(radius_db, nas, driver):
    targets = [Target(300 + i, f"user{i:02d}", PACKAGE) for i in range(5)]
    for i, t in enumerate(targets):
        radius_db.user(t.username, "pw", (PACKAGE, 1))
    assert driver.bulk_suspend(targets + targets[:2]).ok == [t.subscriber_id for t in targets]
    radius_db.session("user02", "sess-2", "10.200.0.3")

    result = driver.bulk_restore([*targets, Target(399, "", PACKAGE)])

    assert result.ok == [t.subscriber_id for t in targets]
    assert list(result.failed) == [399]
    for t in targets:
        assert radius_db.groups(t.username) == [(PACKAGE, 1)]
    assert [r.attr("User-Name") for r in nas.received] == ["user02"]


def test_bulk_with_an_unreachable_database_raises(nas, tmp_path):
    driver = make_driver(f"sqlite:///{tmp_path / 'missing.sqlite3'}", nas)
    with pytest.raises(RouterUnavailable):
        driver.bulk_suspend([ALICE])


# --- read_state and test -------------------------------------------------------------


def test_read_state(radius_db, nas, driver):
    radius_db.user("alice", "pw", (PACKAGE, 1))
    radius_db.user("bob", "pw", (PACKAGE, 1))
    radius_db.user("carol", "pw")  # no group
    radius_db.user("dave", "pw", (PACKAGE, 1))
    radius_db.run("INSERT INTO radcheck (username, attribute, op, value) VALUES ('dave', 'Auth-Type', ':=', 'Reject')")
    driver.suspend(ALICE)
    radius_db.session("alice", "81000001", "10.200.0.5")
    radius_db.session("bob", "81000002", "10.1.1.7")
    radius_db.session("bob", "81000000", "10.1.1.6", stopped=True)
    radius_db.session("carol", "81000009", "10.9.9.9", nas="192.0.2.7")  # another NAS

    state = driver.read_state()

    assert set(state.secrets) == {"alice", "bob", "carol", "dave"}
    assert state.secrets["alice"].profile == "suspended"
    assert state.secrets["bob"].profile == PACKAGE
    assert state.secrets["carol"].profile == ""
    assert state.secrets["dave"].disabled and not state.secrets["bob"].disabled
    assert set(state.active) == {"alice", "bob"}
    bob = state.active["bob"]
    assert (bob.name, bob.address, bob.session_id, bob.caller_id) == ("bob", "10.1.1.7", "81000002", "AA:BB:CC:00:00:01")
    assert set(state.suspended) == {"10.200.0.5"}
    entry = state.suspended["10.200.0.5"]
    assert (entry.list, entry.address, entry.comment) == ("suspended", "10.200.0.5", "")


def test_test_reports_the_database(radius_db, driver):
    info = driver.test()
    assert info["identity"] == f"FreeRADIUS SQL at {radius_db.db.where}"
    assert info["version"].startswith("SQLite " if radius_db.db.dialect == "sqlite" else "PostgreSQL ")


def test_test_without_the_tables_is_a_command_error(tmp_path, nas):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    with pytest.raises(RouterCommandError):
        make_driver(f"sqlite:///{empty}", nas).test()


def test_unreachable_postgresql_is_router_unavailable_and_credentials_stay_hidden(nas):
    port = _closed_tcp_port()
    driver = RadiusDriver(
        f"postgresql://radius:hunter2@127.0.0.1:{port}/radius", NAS_IP, nas.port, "sekrit-coa", db_timeout=2
    )
    assert "hunter2" not in repr(driver) and "sekrit-coa" not in repr(driver)
    with pytest.raises(RouterUnavailable) as caught:
        driver.test()
    assert caught.value.reason == "connect"
    assert "hunter2" not in caught.value.message
    assert f"127.0.0.1:{port}/radius" in caught.value.message


def test_bad_urls_are_refused(nas):
    for url in ("", "mysql://x/y", "sqlite://relative", "sqlite:///"):
        with pytest.raises(ValueError):
            RadiusDriver(url, NAS_IP, nas.port, COA_SECRET)


def _closed_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
