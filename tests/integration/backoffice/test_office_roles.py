"""Roles are groups created by a migration (and idempotently by ensure_roles); API tokens
carry their user's role."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from ispbill.api.tokens import issue_token
from ispbill.backoffice.roles import PERMISSIONS, ROLES
from ispbill.backoffice.services import ensure_roles

from ..api.api_support import JsonClient
from .office_support import make_staff, row_counts

pytestmark = pytest.mark.django_db


def perms_of(name: str) -> set[str]:
    return set(Group.objects.get(name=name).permissions.filter(content_type__app_label="backoffice").values_list("codename", flat=True))


def test_roles_exist_with_their_permissions_and_ensure_roles_is_idempotent():
    ensure_roles()
    ensure_roles()
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)
    assert perms_of("admin") == set(PERMISSIONS)
    assert perms_of("viewer") == {"view_dashboard", "view_subscribers", "view_messages"}
    assert "record_payments" in perms_of("billing") and "manage_status" not in perms_of("billing")
    assert "manage_status" in perms_of("support") and "record_payments" not in perms_of("support")
    assert Group.objects.get(name="admin").permissions.filter(codename="change_user").exists()


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "allowed"),
    [
        ("viewer", "post", "/payments", {"subscriber": 0, "amount": "10.00", "method": "cash"}, False),
        ("support", "post", "/payments", {"subscriber": 0, "amount": "10.00", "method": "cash"}, False),
        ("billing", "post", "/payments", {"subscriber": 0, "amount": "10.00", "method": "cash"}, True),
        ("billing", "patch", "/settings", {"grace_days": 5}, False),
        ("admin", "patch", "/settings", {"grace_days": 5}, True),
        ("viewer", "patch", "/subscribers/{sub}", {"notes": "x"}, False),
        ("billing", "patch", "/subscribers/{sub}", {"notes": "x"}, False),
        ("support", "patch", "/subscribers/{sub}", {"notes": "x"}, True),
        ("viewer", "get", "/subscribers", None, True),
    ],
)
def test_api_tokens_carry_their_users_role(world, role, method, path, body, allowed):
    user = make_staff(role)
    api = JsonClient(issue_token(username=user.username))
    path = path.format(sub=world["sub"].pk)
    if body and "subscriber" in body:
        body = body | {"subscriber": world["sub"].pk}
    before = row_counts()
    response = api.get(path) if method == "get" else getattr(api, method)(path, body)
    if allowed:
        assert response.status_code in (200, 201), response.content
    else:
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "forbidden"
        assert row_counts() == before
