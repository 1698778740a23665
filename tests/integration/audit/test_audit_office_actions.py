"""Every staff action in the back office writes exactly one audit event, naming the
staff user, with only the fields that changed before and after."""

from __future__ import annotations

from datetime import date

import pytest

from ispbill.audit.models import ActorKind
from ispbill.billing.models import Invoice
from ispbill.subscribers.models import Subscriber

from .audit_support import new_events

pytestmark = pytest.mark.django_db


def _post(client, path: str, data: dict):
    response = client.post(path, data)
    assert response.status_code == 303, response.content[:300]
    return response


def _assert_staff(event, client):
    assert event.actor_kind == ActorKind.STAFF
    assert event.actor_id == client.user.pk and event.actor_name == client.user.username


def test_recording_a_payment_writes_one_event_and_a_double_submit_none(world, client_for):
    sub, client = world["sub"], client_for("billing")
    form = {"amount": "400.00", "method": "cash", "reference": "RCPT-7", "key": "form-key-1"}
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/payments", form)
    (event,) = found
    _assert_staff(event, client)
    assert event.action == "payment.record" and event.target_type == "payment" and event.subscriber_id == sub.pk
    assert event.before is None
    assert event.after["amount_paisa"] == 40_000 and event.after["method"] == "cash" and event.after["reference"] == "RCPT-7"
    with new_events() as again:
        _post(client, f"/office/subscribers/{sub.pk}/payments", form)
    assert again == []


def test_a_payment_that_settles_everything_also_restores_as_the_system(world, client_for, fixed_clock):
    from ispbill.network.services import suspend_overdue

    sub, client = world["sub"], client_for("admin")
    assert suspend_overdue(now=fixed_clock.now()) == 1
    due = Invoice.objects.get(subscriber=sub).amount_due_paisa
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/payments", {"amount": f"{due / 100:.2f}", "method": "cash", "key": "k"})
    assert [e.action for e in found] == ["payment.record", "subscriber.restore"]
    payment, restore = found
    _assert_staff(payment, client)
    assert restore.actor_kind == ActorKind.SYSTEM and restore.actor_id is None and restore.actor_name == ""
    assert restore.before == {"status": "suspended"} and restore.after == {"status": "active", "reason": "payment"}
    assert restore.target_type == "subscriber" and restore.target_id == sub.pk


def test_changing_the_package_now_records_package_change(world, client_for):
    sub, client = world["sub"], client_for("billing")
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/change-package",
              {"package": world["premium"].pk, "effective_on": "2026-11-25"})
    (event,) = found
    _assert_staff(event, client)
    assert event.action == "package.change" and event.target_type == "subscriber" and event.target_id == sub.pk
    assert event.before["package"] == "Basic 10M" and event.after["package"] == "Premium 30M"
    assert event.before["package_id"] == world["basic"].pk and event.after["package_id"] == world["premium"].pk
    assert event.after["invoice"] == Invoice.objects.filter(subscriber=sub).latest("id").number
    assert event.after["total_paisa"] > 0
    assert "billed_through" not in event.after  # unchanged: not recorded


def test_a_scheduled_change_is_recorded_when_asked_and_again_by_the_system_when_applied(world, client_for, fixed_clock):
    from ispbill.billing.services import apply_scheduled_package_changes

    sub, client = world["sub"], client_for("billing")
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/change-package",
              {"package": world["premium"].pk, "effective_on": "2026-12-10"})
    (event,) = found
    _assert_staff(event, client)
    assert event.action == "package.schedule"
    assert event.before == {"package": "Basic 10M"}
    assert event.after == {"package": "Premium 30M", "effective_on": "2026-12-10"}

    with new_events() as applied:
        assert apply_scheduled_package_changes(today=date(2026, 12, 10), now=fixed_clock.now()) == 1
    (change,) = applied
    assert change.action == "package.change" and change.actor_kind == ActorKind.SYSTEM
    assert change.after["package"] == "Premium 30M" and "(scheduled)" in change.summary


@pytest.mark.parametrize(
    "action, status_before, status_after",
    [("suspend", "active", "suspended"), ("disable", "active", "disabled")],
)
def test_status_changes_by_hand_record_one_event_with_the_reason(world, client_for, action, status_before, status_after):
    sub, client = world["sub"], client_for("support")
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/status", {"action": action, "reason": "asked <b>by</b> the owner"})
    (event,) = found
    _assert_staff(event, client)
    assert event.action == f"subscriber.{action}"
    assert event.before["status"] == status_before and event.after["status"] == status_after
    assert event.summary == "asked <b>by</b> the owner"


def test_restore_and_re_enable_by_hand(world, client_for):
    sub, client = world["sub"], client_for("admin")
    _post(client, f"/office/subscribers/{sub.pk}/status", {"action": "suspend", "reason": "r1"})
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/status", {"action": "restore", "reason": "r2"})
    (restore,) = found
    assert restore.action == "subscriber.restore" and restore.after["status"] == "active" and restore.summary == "r2"
    _assert_staff(restore, client)

    _post(client, f"/office/subscribers/{sub.pk}/status", {"action": "disable", "reason": "r3"})
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/status", {"action": "enable", "reason": "r4"})
    (enable,) = found
    assert enable.action == "subscriber.enable"
    assert enable.before["status"] == "disabled" and enable.after["status"] == "active"


def test_exempting_from_suspension_records_the_flag(world, client_for):
    sub, client = world["sub"], client_for("support")
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/exempt", {"never_suspend": "1"})
    (event,) = found
    _assert_staff(event, client)
    assert event.action == "subscriber.update"
    assert event.before == {"never_suspend": False} and event.after == {"never_suspend": True}
    with new_events() as again:  # asking for what is already so changes nothing
        _post(client, f"/office/subscribers/{sub.pk}/exempt", {"never_suspend": "1"})
    assert again == []


def test_sending_a_reminder_records_it(world, client_for):
    sub, client = world["sub"], client_for("support")
    invoice = Invoice.objects.get(subscriber=sub)
    with new_events() as found:
        _post(client, f"/office/subscribers/{sub.pk}/remind", {"invoice": invoice.pk, "kind": "overdue", "channel": "sms"})
    (event,) = found
    _assert_staff(event, client)
    assert event.action == "reminder.send" and event.target_type == "invoice" and event.target_id == invoice.pk
    assert event.subscriber_id == sub.pk
    assert event.after == {"kind": "overdue", "channels": ["sms"]}


def test_a_refused_action_records_nothing(world, client_for):
    sub, client = world["sub"], client_for("support")
    with new_events() as found:
        client.post(f"/office/subscribers/{sub.pk}/status", {"action": "restore", "reason": "not suspended"})
    assert found == []
    assert Subscriber.objects.get(pk=sub.pk).status == "active"
