"""RouterOSDriver against the simulator, over real sockets."""

import socket
import time

import pytest

from ispbill.network.drivers.base import (
    BulkResult,
    Driver,
    RouterCommandError,
    RouterUnavailable,
    SecretNotFound,
    Target,
)
from ispbill.network.drivers.routeros import RouterOSDriver
from ispbill.sim.routeros import RouterOSSimulator

PACKAGE = "home-10M"
SUSPENDED = "Suspended_Profile"
WRITES = ("/ppp/secret/set", "/ip/firewall/address-list/add", "/ip/firewall/address-list/remove", "/ppp/active/remove")


@pytest.fixture
def sim():
    with RouterOSSimulator(users={"admin": "pw"}) as s:
        s.add_profile(PACKAGE)
        yield s


def make_driver(sim, **options):
    options.setdefault("backoff", 0.02)
    options.setdefault("timeout", 5)
    return RouterOSDriver("127.0.0.1", sim.port, "admin", "pw", **options)


@pytest.fixture
def driver(sim):
    d = make_driver(sim)
    yield d
    d.close()


def writes(sim) -> int:
    counts = sim.command_counts
    return sum(counts[c] for c in WRITES)


def entries(sim):
    return {e["address"]: e["comment"] for e in sim.address_list("suspended")}


def sessions(sim):
    return sorted(a["name"] for a in sim.active())


def test_implements_the_interface(driver):
    assert isinstance(driver, Driver)
    assert driver.test() == {"identity": "MikroTik", "version": "7.16.2"}


def test_suspend_online_then_restore(sim, driver):
    sim.add_secret("1001", profile=PACKAGE)
    sim.add_secret("other", profile=PACKAGE)
    sim.add_active("1001", "10.1.1.5")
    sim.add_active("other", "10.1.1.6")
    target = Target(7, "1001", PACKAGE)

    driver.suspend(target)
    assert sim.secret("1001")["profile"] == SUSPENDED
    assert entries(sim) == {"10.1.1.5": "7"}
    assert sessions(sim) == ["other"]  # kicked, so the suspended profile applies on redial
    assert sim.secret("other")["profile"] == PACKAGE

    before = writes(sim)
    driver.suspend(target)  # idempotent: nothing to change, nobody disconnected
    assert writes(sim) == before

    sim.add_active("1001", "10.200.0.9")  # redialled into the suspended pool
    driver.restore(target)
    assert sim.secret("1001")["profile"] == PACKAGE
    assert entries(sim) == {}
    assert sessions(sim) == ["other"]  # kicked out of the suspended session

    sim.add_active("1001", "10.1.1.5")
    before = writes(sim)
    driver.restore(target)  # already restored: no writes, the paying subscriber stays online
    assert writes(sim) == before
    assert sessions(sim) == ["1001", "other"]


def test_offline_subscriber(sim, driver):
    sim.add_secret("1002", profile=PACKAGE)
    target = Target(8, "1002", PACKAGE)
    driver.suspend(target)
    assert sim.secret("1002")["profile"] == SUSPENDED
    assert entries(sim) == {}
    assert sim.command_counts["/ppp/active/remove"] == 0
    driver.restore(target)
    assert sim.secret("1002")["profile"] == PACKAGE
    assert sim.command_counts["/ppp/active/remove"] == 0


def test_restore_lifts_entries_by_comment_and_by_address(sim, driver):
    sim.add_secret("1003", profile=SUSPENDED)
    sim.add_active("1003", "10.1.1.7")
    sim.add_address_list_entry("suspended", "10.9.9.9", comment="9")  # an old address of subscriber 9
    sim.add_address_list_entry("suspended", "10.1.1.7")  # the session's address, added by hand
    sim.add_address_list_entry("suspended", "10.1.1.8", comment="10")  # somebody else
    sim.add_address_list_entry("walled", "10.1.1.7")  # another list: not ours
    driver.restore(Target(9, "1003", PACKAGE))
    assert entries(sim) == {"10.1.1.8": "10"}
    assert [e["list"] for e in sim.address_list()] == ["suspended", "walled"]


@pytest.mark.parametrize("username", ["1001", "007", "user@area", "রহিম", "true", "0x1F", "a=b", " 12"])
def test_unusual_usernames(sim, driver, username):
    sim.add_secret(username, profile=PACKAGE)
    sim.add_secret("bystander", profile=PACKAGE)
    sim.add_active(username, "10.2.2.2")
    target = Target(5, username, PACKAGE)
    driver.suspend(target)
    assert sim.secret(username)["profile"] == SUSPENDED
    assert sim.secret("bystander")["profile"] == PACKAGE
    state = driver.read_state()
    assert set(state.secrets) == {username, "bystander"}
    assert all(type(name) is str for name in state.secrets)
    assert state.secrets[username].name == username
    assert state.suspended["10.2.2.2"].comment == "5"
    driver.restore(target)
    assert sim.secret(username)["profile"] == PACKAGE
    result = driver.bulk_suspend([Target(i, username if i == 1 else "bystander", PACKAGE) for i in (1, 2)])
    assert result == BulkResult(ok=[1, 2], failed={})


def test_missing_secret(sim, driver):
    with pytest.raises(SecretNotFound, match="no PPP secret named '404'"):
        driver.suspend(Target(1, "404", PACKAGE))


def test_read_state(sim, driver):
    sim.add_secret("1001", profile=PACKAGE, comment="note")
    sim.add_secret("1002", profile=SUSPENDED, disabled=True)
    sim.add_active("1001", "10.0.0.1", caller_id="AA:BB")
    sim.add_address_list_entry("suspended", "10.0.0.2", comment="2")
    sim.add_address_list_entry("walled", "1.1.1.1")
    state = driver.read_state()
    assert state.secrets["1001"].profile == PACKAGE and state.secrets["1001"].comment == "note"
    assert state.secrets["1002"].disabled is True
    assert state.active["1001"].address == "10.0.0.1" and state.active["1001"].caller_id == "AA:BB"
    assert state.active["1001"].id.startswith("*8")
    assert list(state.suspended) == ["10.0.0.2"] and state.suspended["10.0.0.2"].comment == "2"


def test_bulk_is_pipelined_not_a_round_trip_per_command():
    latency = 0.02
    with RouterOSSimulator(users={"admin": "pw"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        names = [str(1000 + i) for i in range(300)]
        sim.add_secrets(names, profile=PACKAGE)
        for i, name in enumerate(names):
            sim.add_active(name, f"10.0.{i // 256}.{i % 256}")
        targets = [Target(i, name, PACKAGE) for i, name in enumerate(names)]
        with make_driver(sim) as driver:
            started = time.monotonic()
            result = driver.bulk_suspend(targets + [Target(999, "missing", PACKAGE)])
            elapsed = time.monotonic() - started
        assert sorted(result.ok) == list(range(300))
        assert result.failed == {999: "no PPP secret named 'missing' on 127.0.0.1"}
        counts = sim.command_counts
        assert counts["/ppp/secret/set"] == counts["/ip/firewall/address-list/add"] == 300
        assert counts["/ppp/active/remove"] == 300
        assert sum(v for k, v in counts.items() if k.endswith("/print")) == 3  # read once
        # 900 commands one at a time would take 18 s; pipelined it is a few round trips.
        assert elapsed < 1.5
        assert sessions(sim) == []
        assert all(s["profile"] == SUSPENDED for s in sim.secrets())


def _router_with(sim, count, *, bystanders=20):
    names = [f"u{i:04d}" for i in range(count)]
    for i, name in enumerate(names):
        sim.add_secret(name, profile=PACKAGE)
        sim.add_active(name, f"10.3.{i // 256}.{i % 256}")
    for i in range(bystanders):
        sim.add_secret(f"bystander{i}", profile=PACKAGE)
        sim.add_active(f"bystander{i}", f"10.4.0.{i}")
    return [Target(i, name, PACKAGE) for i, name in enumerate(names)]


def _address(subscriber_id):
    return f"10.3.{subscriber_id // 256}.{subscriber_id % 256}"


def _assert_suspended(sim, targets, *, all_listed=True):
    """Suspended profile, session gone, and the address listed with the right comment
    (every target's, or, when a reboot ended sessions, each listed one's)."""
    listed = entries(sim)
    online = set(sessions(sim))
    for t in targets:
        assert sim.secret(t.username)["profile"] == SUSPENDED, t
        assert t.username not in online, t
        if all_listed or _address(t.subscriber_id) in listed:
            assert listed[_address(t.subscriber_id)] == str(t.subscriber_id), t


@pytest.mark.parametrize("drop_sessions", [False, True], ids=["sessions-survive", "sessions-drop"])
def test_router_restart_mid_batch_completes(sim, drop_sessions):
    targets = _router_with(sim, 200)
    # The reboot lands after the 150th write has been applied but before its reply.
    sim.schedule_restart(after_commands=3 + 150, drop_sessions=drop_sessions)
    with make_driver(sim, connections=1) as driver:
        result = driver.bulk_suspend(targets)
    assert sorted(result.ok) == list(range(200)) and result.failed == {}
    assert sim.connections_total >= 2
    _assert_suspended(sim, targets, all_listed=not drop_sessions)
    # .ids were renumbered in reverse: a stale .id would have hit a bystander.
    assert all(sim.secret(f"bystander{i}")["profile"] == PACKAGE for i in range(20))
    assert sessions(sim) == ([] if drop_sessions else sorted(f"bystander{i}" for i in range(20)))


def test_restart_after_set_before_reply_still_kicks(sim):
    sim.add_secret("1001", profile=PACKAGE)
    sim.add_active("1001", "10.1.1.5")
    with make_driver(sim) as driver:
        sim.schedule_restart(after_commands=4)  # 3 lookups, then the profile set
        driver.suspend(Target(1, "1001", PACKAGE))
    # The retry found the profile already set, but the set may have been its own doing:
    # the session must still be ended and the address listed.
    assert sim.secret("1001")["profile"] == SUSPENDED
    assert sessions(sim) == []
    assert entries(sim) == {"10.1.1.5": "1"}


def test_router_down_reports_exactly_what_failed(sim):
    targets = _router_with(sim, 200, bystanders=0)
    for t in targets[150:]:
        sim.drop_session(t.username)  # 50 offline subscribers
    # 3 reads, 350 writes (150 × profile + address, 50 × profile), then the reboot lands
    # during the kicks: the 40th kick is applied but never confirmed.
    sim.schedule_restart(after_commands=3 + 350 + 40, down_for=3.0)
    with make_driver(sim, connections=1, attempts=2, backoff=0.05) as driver:
        result = driver.bulk_suspend(targets)
    assert sorted(result.ok + list(result.failed)) == list(range(200))
    assert sorted(result.ok) == list(range(39)) + list(range(150, 200))
    assert all(m.startswith("router unavailable: ") for m in result.failed.values())
    _assert_suspended(sim, [t for t in targets if t.subscriber_id in result.ok and t.subscriber_id < 150])
    for t in targets[150:]:
        assert sim.secret(t.username)["profile"] == SUSPENDED


def test_router_down_from_the_start_raises(sim):
    sim.restart(down_for=2.0)
    with make_driver(sim, attempts=2, backoff=0.01) as driver:
        with pytest.raises(RouterUnavailable) as info:
            driver.bulk_suspend([Target(1, "x", PACKAGE)])
    assert info.value.reason == "closed"
    assert "after 2 attempts" in info.value.message


def test_wrong_password(sim):
    with RouterOSDriver("127.0.0.1", sim.port, "admin", "wrong", backoff=0.01) as driver:
        with pytest.raises(RouterUnavailable) as info:
            driver.test()
    assert info.value.reason == "auth"
    assert str(info.value) == (
        f"login to 127.0.0.1:{sim.port} as 'admin' refused: invalid user name or password (6)"
    )
    assert sim.connections_total == 1  # no pointless retries that could lock the account
    with RouterOSDriver("127.0.0.1", sim.port, "admin", "wrong") as driver:
        with pytest.raises(RouterUnavailable, match="refused"):
            driver.bulk_restore([Target(1, "x", PACKAGE)])


def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RouterOSDriver("127.0.0.1", port, "admin", "pw", attempts=2, backoff=0.01) as driver:
        with pytest.raises(RouterUnavailable, match=f"cannot connect to 127.0.0.1:{port}") as info:
            driver.suspend(Target(1, "x", PACKAGE))
    assert info.value.reason == "connect"


def test_timeout():
    with RouterOSSimulator(users={"admin": "pw"}, latency=1.0) as sim:
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "pw", timeout=0.2, attempts=1) as driver:
            with pytest.raises(RouterUnavailable) as info:
                driver.test()
    assert info.value.reason == "timeout"


def test_trap_on_set_is_a_command_error(sim):
    sim.add_secret("1001", profile=PACKAGE)
    with make_driver(sim, suspended_profile="No_Such_Profile") as driver:
        with pytest.raises(RouterCommandError, match="input does not match any value of profile") as info:
            driver.suspend(Target(1, "1001", PACKAGE))
    assert info.value.command == "/ppp/secret/set"
    assert info.value.category == 1
    assert not isinstance(info.value, SecretNotFound)


def test_injected_trap_in_a_bulk_fails_only_that_subscriber(sim, driver):
    targets = _router_with(sim, 60, bystanders=0)
    sim.inject_trap("/ppp/secret/set", "failure: item is being changed", category=4)
    result = driver.bulk_suspend(targets)
    assert len(result.ok) == 59
    ((failed_id, message),) = result.failed.items()
    assert message == "/ppp/secret/set: failure: item is being changed"
    failed = targets[failed_id]
    assert sim.secret(failed.username)["profile"] == PACKAGE
    assert failed.username in sessions(sim)  # not kicked: its suspension did not go through
    retry = driver.bulk_suspend(targets)
    assert len(retry.ok) == 60


@pytest.mark.parametrize("verify", ["no-verify", "ca-file"])
def test_tls(server_tls, tls_files, verify):
    with RouterOSSimulator(users={"admin": "pw"}, ssl_context=server_tls) as sim:
        sim.add_secret("1001", profile="default")
        options = {"tls_verify": False} if verify == "no-verify" else {"tls_ca_file": tls_files[0]}
        with make_driver(sim, use_tls=True, **options) as driver:
            driver.suspend(Target(1, "1001", "default"))
        assert sim.secret("1001")["profile"] == SUSPENDED


def test_tls_untrusted_certificate(server_tls):
    with RouterOSSimulator(users={"admin": "pw"}, ssl_context=server_tls) as sim:
        with make_driver(sim, use_tls=True, attempts=1) as driver:
            with pytest.raises(RouterUnavailable) as info:
                driver.test()
    assert info.value.reason == "tls"
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.message


def test_tls_driver_against_plain_port(sim):
    with make_driver(sim, use_tls=True, tls_verify=False, attempts=1, timeout=1) as driver:
        with pytest.raises(RouterUnavailable):
            driver.test()


def test_legacy_login():
    with RouterOSSimulator(users={"admin": "pw"}, legacy_login=True) as sim:
        sim.add_secret("1001", profile="default")
        with make_driver(sim) as driver:
            driver.suspend(Target(1, "1001", "default"))
            assert driver.test()["identity"] == "MikroTik"
        assert sim.secret("1001")["profile"] == SUSPENDED
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "bad") as driver:
            with pytest.raises(RouterUnavailable, match="refused: cannot log in"):
                driver.test()


def test_routeros_718_empty_replies():
    with RouterOSSimulator(users={"admin": "pw"}, emit_empty=True) as sim:
        sim.add_secret("1001", profile="default")
        with make_driver(sim) as driver:
            driver.suspend(Target(1, "1001", "default"))  # the active and address-list prints are empty
            driver.restore(Target(1, "1001", "default"))
            state = driver.read_state()
        assert state.active == {} and state.suspended == {}
        assert sim.secret("1001")["profile"] == "default"


def test_connection_reused_and_reconnected_after_drop(sim, driver):
    sim.add_secret("1001", profile=PACKAGE)
    driver.test()
    driver.test()
    assert sim.connections_total == 1
    sim.restart()
    driver.suspend(Target(1, "1001", PACKAGE))  # the pooled connection is dead: reconnect
    assert sim.secret("1001")["profile"] == SUSPENDED
