"""Desired vs actual router state (the pure half of reconcile)."""

from ispbill.network.drift import Desired, diff
from ispbill.network.drivers.base import ActiveSession, AddressListEntry, RouterState, SecretInfo, Target

SUSPENDED = "Suspended_Profile"


def _state(secrets, active=(), suspended=()):
    return RouterState(
        secrets={name: SecretInfo(f"*{i}", name, profile) for i, (name, profile) in enumerate(secrets, 1)},
        active={name: ActiveSession(f"*8000000{i}", name, address) for i, (name, address) in enumerate(active)},
        suspended={address: AddressListEntry(f"*{i}", "suspended", address, comment) for i, (address, comment) in
                   enumerate(suspended, 1)},
    )


def test_in_sync_is_clean():
    state = _state([("1001", "home"), ("1002", SUSPENDED)], active=[("1002", "10.0.0.2")],
                   suspended=[("10.0.0.2", "2")])
    desired = [Desired(1, "1001", "home", False), Desired(2, "1002", "home", True)]
    assert diff(desired, state, suspended_profile=SUSPENDED).clean


def test_leakage_and_repairs():
    state = _state(
        [("paid-but-blocked", SUSPENDED), ("paid-listed", "home"), ("unpaid-online", "home"),
         ("unpaid-offline", "home"), ("unpaid-session-not-walled", SUSPENDED), ("stranger", "home")],
        active=[("paid-listed", "10.0.0.2"), ("unpaid-online", "10.0.0.3"), ("unpaid-session-not-walled", "10.0.0.5")],
        suspended=[("10.0.0.2", "")],
    )
    desired = [
        Desired(1, "paid-but-blocked", "home", False),
        Desired(2, "paid-listed", "home", False),
        Desired(3, "unpaid-online", "home", True),
        Desired(4, "unpaid-offline", "home", True),
        Desired(5, "unpaid-session-not-walled", "home", True),
        Desired(6, "gone", "home", True),
    ]
    drift = diff(desired, state, suspended_profile=SUSPENDED)
    assert [t.username for t in drift.to_restore] == ["paid-but-blocked", "paid-listed"]
    assert [t.username for t in drift.to_suspend] == ["unpaid-online", "unpaid-offline", "unpaid-session-not-walled"]
    assert [d.username for d in drift.online_unpaid] == ["unpaid-online", "unpaid-session-not-walled"]
    assert drift.unknown_on_router == ["stranger"]
    assert [d.username for d in drift.missing_on_router] == ["gone"]
    assert drift.to_restore[0] == Target(1, "paid-but-blocked", "home")


def test_restore_needed_when_an_entry_carries_the_subscriber_id():
    state = _state([("1001", "home")], suspended=[("10.9.9.9", "7")])
    drift = diff([Desired(7, "1001", "home", False)], state, suspended_profile=SUSPENDED)
    assert drift.to_restore == [Target(7, "1001", "home")]
