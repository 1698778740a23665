"""PATCH /api/v1/settings and /settings/dunning go through the settings services the
back office uses: the same checks, and an audit event with the values before and after."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from ispbill.api.tokens import issue_token
from ispbill.audit.models import AuditEvent
from ispbill.backoffice.services import ensure_roles
from ispbill.dunning.models import DunningSettings, default_ladder

from .api_support import JsonClient, assert_error, settings_snapshot

pytestmark = pytest.mark.django_db


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def client_with_role(role: str) -> JsonClient:
    ensure_roles()
    user = get_user_model().objects.create_user(f"{role}-api")
    user.groups.add(Group.objects.get(name=role))
    return JsonClient(issue_token(username=user.username))


def test_a_billing_patch_is_recorded_with_the_changed_fields(api, staff):
    response = api.patch("/settings", {"due_days": 4, "isp_name": "Dhaka Net", "grace_days": 3})

    assert response.status_code == 200
    (event,) = events("settings.billing")
    assert event.before == {"due_days": 0, "isp_name": "ispbill demo ISP"}  # grace_days did not change
    assert event.after == {"due_days": 4, "isp_name": "Dhaka Net"}
    assert (event.actor_kind, event.actor_name, event.ip) == ("staff", staff.username, "127.0.0.1")


def test_a_patch_that_changes_nothing_records_nothing(api):
    assert api.patch("/settings", {"billing_day": 1}).status_code == 200
    assert api.patch("/settings/dunning", {"payment_link_days": 30}).status_code == 200
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()


def test_a_blank_isp_name_is_refused_as_on_the_settings_page(api):
    before = settings_snapshot()
    assert_error(api.patch("/settings", {"isp_name": "   ", "due_days": 2}), 422, "invalid_input", "isp_name")
    assert settings_snapshot() == before and not AuditEvent.objects.filter(action__startswith="settings.").exists()


def test_a_dunning_patch_is_recorded_with_the_ladder_before_and_after(api):
    ladder = [{"offset": -3, "kind": "reminder", "channels": ["sms", "sms"]}, {"offset": 2, "kind": "overdue", "channels": ["email"]}]

    response = api.patch("/settings/dunning", {"ladder": ladder, "quiet_hours_end": "09:00"})

    assert response.status_code == 200
    stored = [{"offset": -3, "kind": "reminder", "channels": ["sms"]}, {"offset": 2, "kind": "overdue", "channels": ["email"]}]
    assert response.json()["ladder"] == stored
    (event,) = events("settings.reminders")
    assert event.before == {"ladder": default_ladder(), "quiet_hours_end": "08:00"}
    assert event.after == {"ladder": stored, "quiet_hours_end": "09:00"}


def test_a_refused_dunning_patch_saves_nothing(api):
    ladder = [{"offset": -3, "kind": "reminder", "channels": ["sms"]}, {"offset": -3, "kind": "overdue", "channels": ["sms"]}]
    assert_error(api.patch("/settings/dunning", {"ladder": ladder, "payment_link_days": 10}), 422, "invalid_ladder", "ladder")
    d = DunningSettings.load()
    assert (d.ladder, d.payment_link_days) == (default_ladder(), 30)
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()


@pytest.mark.parametrize("path", ["/settings", "/settings/dunning"])
def test_only_manage_settings_may_patch(db, fixed_clock, path):
    body = {"due_days": 5} if path == "/settings" else {"payment_link_days": 5}
    assert_error(client_with_role("billing").patch(path, body), 403, "forbidden")
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()
