"""``ispbill createroles``: creates the staff roles and their permissions, completes
ones that lost permissions, and changes nothing on a second run."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from ispbill.backoffice.roles import ROLES
from ispbill.cli import main

pytestmark = pytest.mark.django_db


def held(role: str) -> set[str]:
    return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


def test_creates_completes_and_is_idempotent(capsys):
    Group.objects.filter(name__in=list(ROLES)).delete()

    assert main(["createroles"]) == 0
    out = capsys.readouterr().out
    for role in ROLES:
        assert f"Created role '{role}'" in out
        assert set(ROLES[role]) <= held(role)
    assert {"add_user", "change_user", "view_group"} <= held("admin")
    assert "manage_settings" not in held("support") and "manage_routers" in held("support")

    support = Group.objects.get(name="support")
    support.permissions.remove(*support.permissions.filter(codename="manage_routers"))
    assert main(["createroles"]) == 0
    out = capsys.readouterr().out
    assert "Completed role 'support': added backoffice.manage_routers." in out
    assert "Role 'admin' already complete" in out

    snapshot = {role: held(role) for role in ROLES}
    assert main(["createroles"]) == 0
    out = capsys.readouterr().out
    assert all(f"Role '{role}' already complete" in out for role in ROLES)
    assert {role: held(role) for role in ROLES} == snapshot
    assert Group.objects.filter(name__in=list(ROLES)).count() == len(ROLES)
