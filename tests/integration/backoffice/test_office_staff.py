"""Staff users in the back office: create with a validated password, change role,
deactivate and reactivate, set a password; the guard rails; the audit trail."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ispbill.audit.models import AuditEvent
from ispbill.backoffice.staff import role_of

from .office_support import make_staff

pytestmark = pytest.mark.django_db

User = get_user_model()
GOOD_PASSWORD = "Lantern-Orchid-42"
XSS = '<script>alert("u")</script>'


@pytest.fixture(autouse=True)
def _setup(fixed_clock, fast_hasher):
    return None


@pytest.fixture
def me():
    return make_staff("admin")


@pytest.fixture
def admin(me):
    client = Client()
    client.force_login(me)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def post(client, path, data=None):
    response = client.post(path, data or {}, follow=True)
    assert response.redirect_chain and response.redirect_chain[0][1] == 303, response.content[:300]
    return response


def secrets_in_audit(*secrets: str) -> bool:
    text = " ".join(f"{e.before} {e.after} {e.summary}" for e in AuditEvent.objects.all())
    return any(s in text for s in secrets)


def test_list_shows_role_active_and_last_login(admin, me, fixed_clock):
    viewer = make_staff("viewer")
    viewer.is_active = False
    viewer.last_login = fixed_clock.now()
    viewer.save()
    html = admin.get("/office/staff/").content.decode()
    assert "admin-user" in html and "viewer-user" in html and "deactivated" in html
    assert "25 Nov 2026" in html


def test_list_runs_a_constant_number_of_queries(admin):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin.get("/office/staff/").status_code == 200
        return len(ctx.captured_queries)

    baseline = count()
    for role in ("billing", "support", "viewer"):
        make_staff(role)
    for i in range(5):
        User.objects.create_user(f"extra{i}")
    assert count() == baseline


def test_create_user_with_role_and_validated_password(admin, me):
    response = admin.post("/office/staff/add/", {
        "username": "nasrin", "name": "Nasrin Akter", "email": "nasrin@example.com", "role": "billing",
        "password": GOOD_PASSWORD,
    })
    assert response.status_code == 303
    user = User.objects.get(username="nasrin")
    assert response["Location"] == f"/office/staff/{user.pk}/"
    assert user.check_password(GOOD_PASSWORD) and user.first_name == "Nasrin" and user.last_name == "Akter"
    assert role_of(user) == "billing" and user.is_active
    event = AuditEvent.objects.get(action="staff.create")
    assert event.actor_id == me.pk and event.after["role"] == "billing"
    assert not secrets_in_audit(GOOD_PASSWORD)
    assert Client().login(username="nasrin", password=GOOD_PASSWORD)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"password": "short"}, "too short"),
        ({"username": "bad name!"}, "Enter a valid username"),
        ({"username": "admin-user"}, "already exists"),
        ({"role": "root"}, "Select a valid choice"),
    ],
)
def test_create_user_refusals_are_shown_on_the_form(admin, data, problem):
    form = {"username": "new", "name": "", "email": "", "role": "viewer", "password": GOOD_PASSWORD} | data
    response = admin.post("/office/staff/add/", form)
    assert response.status_code == 422
    html = response.content.decode()
    assert problem in html
    assert GOOD_PASSWORD not in html and "value=\"short\"" not in html
    assert not User.objects.filter(username="new").exists()
    assert not AuditEvent.objects.filter(action="staff.create").exists()


def test_change_role(admin, me):
    other = make_staff("viewer")
    response = post(admin, f"/office/staff/{other.pk}/role", {"role": "support"})
    assert "Role changed." in messages_of(response)
    assert role_of(User.objects.get(pk=other.pk)) == "support"
    event = AuditEvent.objects.get(action="staff.role")
    assert event.before["role"] == "viewer" and event.after["role"] == "support"


def test_you_cannot_demote_or_deactivate_yourself(admin, me):
    make_staff("billing")
    response = post(admin, f"/office/staff/{me.pk}/role", {"role": "viewer"})
    assert "You cannot change your own role." in messages_of(response)
    response = post(admin, f"/office/staff/{me.pk}/deactivate")
    assert "You cannot deactivate yourself." in messages_of(response)
    me.refresh_from_db()
    assert me.is_active and role_of(me) == "admin"
    assert not AuditEvent.objects.filter(action__startswith="staff.").exists()


def test_the_last_active_admin_cannot_be_removed(me):
    # A superuser manages staff: the only admin *role* holder is `me`.
    root = make_staff("superuser")
    root.is_active = False
    root.save()
    client = Client()
    boss = User.objects.create_user("boss")
    from django.contrib.auth.models import Group

    boss.groups.add(Group.objects.get(name="support"))
    boss.user_permissions.add(*Group.objects.get(name="admin").permissions.all())
    client.force_login(boss)

    response = post(client, f"/office/staff/{me.pk}/role", {"role": "viewer"})
    assert "last active admin" in " ".join(messages_of(response))
    response = post(client, f"/office/staff/{me.pk}/deactivate")
    assert "last active admin" in " ".join(messages_of(response))
    me.refresh_from_db()
    assert me.is_active and role_of(me) == "admin"

    second = make_staff("billing")
    post(client, f"/office/staff/{second.pk}/role", {"role": "admin"})
    response = post(client, f"/office/staff/{me.pk}/deactivate")
    assert any("Deactivated" in m for m in messages_of(response))
    assert not User.objects.get(pk=me.pk).is_active


def test_deactivated_users_sessions_stop_working_and_reactivation_restores_access(admin):
    other = make_staff("viewer", password=GOOD_PASSWORD)
    their = Client()
    assert their.login(username="viewer-user", password=GOOD_PASSWORD)
    assert their.get("/office/").status_code == 200

    post(admin, f"/office/staff/{other.pk}/deactivate")

    response = their.get("/office/")
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert not Client().login(username="viewer-user", password=GOOD_PASSWORD)
    assert AuditEvent.objects.filter(action="staff.deactivate", target_id=other.pk).exists()

    post(admin, f"/office/staff/{other.pk}/reactivate")
    assert User.objects.get(pk=other.pk).is_active
    assert Client().login(username="viewer-user", password=GOOD_PASSWORD)
    assert AuditEvent.objects.filter(action="staff.activate", target_id=other.pk).exists()


def test_set_password_validates_ends_other_sessions_and_is_not_logged(admin):
    other = make_staff("viewer", password=GOOD_PASSWORD)
    their = Client()
    assert their.login(username="viewer-user", password=GOOD_PASSWORD)

    response = post(admin, f"/office/staff/{other.pk}/password", {"password": "123"})
    assert any("too short" in m for m in messages_of(response))
    assert User.objects.get(pk=other.pk).check_password(GOOD_PASSWORD)

    post(admin, f"/office/staff/{other.pk}/password", {"password": "Fresh-Mango-2027"})
    assert User.objects.get(pk=other.pk).check_password("Fresh-Mango-2027")
    assert their.get("/office/").status_code == 302  # the old session ended
    assert AuditEvent.objects.get(action="staff.password").after == {"password_set": True}
    assert not secrets_in_audit(GOOD_PASSWORD, "Fresh-Mango-2027", "123")


def test_superusers_role_is_not_changed_here(admin):
    root = make_staff("superuser")
    response = post(admin, f"/office/staff/{root.pk}/role", {"role": "viewer"})
    assert "superuser" in " ".join(messages_of(response))
    assert User.objects.get(pk=root.pk).is_superuser


def test_unknown_user_is_404(admin):
    assert admin.get("/office/staff/9999/").status_code == 404
    response = post(admin, "/office/staff/9999/deactivate")
    assert "No such staff user." in messages_of(response)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/office/staff/add/", {"username": "x", "role": "viewer", "password": GOOD_PASSWORD}),
        ("/office/staff/{pk}/role", {"role": "admin"}),
        ("/office/staff/{pk}/deactivate", {}),
        ("/office/staff/{pk}/password", {"password": GOOD_PASSWORD}),
    ],
)
def test_staff_posts_without_a_csrf_token_are_refused(path, data):
    other = make_staff("viewer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    response = client.post(path.format(pk=other.pk), data)
    assert response.status_code == 403
    other.refresh_from_db()
    assert other.is_active and role_of(other) == "viewer" and not User.objects.filter(username="x").exists()
    assert not AuditEvent.objects.filter(action__startswith="staff.").exists()


def test_markup_in_staff_names_is_escaped(admin):
    User.objects.create_user("plain", first_name=XSS, email="a@example.com")
    for path in ("/office/staff/", f"/office/staff/{User.objects.get(username='plain').pk}/"):
        html = admin.get(path).content.decode()
        assert XSS not in html and "&lt;script&gt;" in html
