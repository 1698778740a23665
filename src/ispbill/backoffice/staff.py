"""Staff users: who may sign in to the back office and with which role.

A role is one of the groups in :mod:`ispbill.backoffice.roles`; a user has at most one.
Guard rails: nobody deactivates or demotes themselves, and the last active admin stays.
Every change appends an audit event in its own transaction; passwords never appear in
one (only that a password was set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from ispbill.audit.services import record, target_of
from ispbill.backoffice.roles import ROLES
from ispbill.backoffice.services import ensure_roles
from ispbill.core.errors import Conflict, DomainError, NotFound

ADMIN = "admin"
SUPERUSER = "superuser"


def _users():
    return get_user_model().objects


@dataclass(frozen=True)
class StaffRow:
    user: object
    role: str  # a role name, "superuser", or "" for none


def role_of(user) -> str:
    """The user's role from their groups (prefetched or not); "superuser" wins."""
    if user.is_superuser:
        return SUPERUSER
    names = {g.name for g in user.groups.all()}
    return next((role for role in ROLES if role in names), "")


def staff_list() -> list[StaffRow]:
    """Every user with their role: two queries however many there are."""
    users = _users().prefetch_related("groups").order_by("-is_active", "username")
    return [StaffRow(u, role_of(u)) for u in users]


def staff_member(user_id: int) -> StaffRow | None:
    user = _users().prefetch_related("groups").filter(pk=user_id).first()
    return StaffRow(user, role_of(user)) if user is not None else None


def _view(user, role: str) -> dict:
    return {
        "username": user.get_username(), "name": user.get_full_name(), "email": user.email,
        "role": role, "is_active": user.is_active,
    }


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise DomainError(_("Choose one of the roles: %(roles)s.") % {"roles": ", ".join(ROLES)},
                          code="invalid_role", field="role", status=422)
    return role


def _check_password(password: str, user) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages), code="weak_password", field="password", status=422) from None


def _lock_admins() -> list[int]:
    """Lock every active admin's row (so two admins cannot remove each other at once) and
    return their ids."""
    admins = _users().filter(Q(is_superuser=True) | Q(groups__name=ADMIN), is_active=True).distinct()
    return list(_users().select_for_update().filter(pk__in=list(admins.values_list("pk", flat=True))).order_by("pk")
                .values_list("pk", flat=True))


def _get_for_update(user_id: int):
    user = _users().select_for_update().filter(pk=user_id).first()
    if user is None:
        raise NotFound(_("No such staff user."), code="user_not_found")
    return user


def _set_role(user, role: str) -> None:
    ensure_roles()
    user.groups.remove(*Group.objects.filter(name__in=list(ROLES)))
    user.groups.add(Group.objects.get(name=role))


def create_staff_user(
    *, username: str, name: str, email: str, role: str, password: str, now: datetime, by=None, ip: str | None = None
):
    """A new user who can sign in with ``password`` (checked by Django's password
    validators) and has ``role``."""
    username = (username or "").strip()
    email = (email or "").strip()
    name = " ".join((name or "").split())
    User = get_user_model()
    if not username:
        raise DomainError(_("A user name is required."), code="username_required", field="username", status=422)
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages), code="invalid_username", field="username", status=422) from None
    if len(username) > 150:
        raise DomainError(_("The user name is too long."), code="invalid_username", field="username", status=422)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise DomainError(_("Enter a valid email address."), code="invalid_email", field="email", status=422) from None
    _check_role(role)
    first, _sep, last = name.partition(" ")
    user = User(username=username, email=email, first_name=first[:150], last_name=last[:150], is_active=True)
    _check_password(password, user)
    user.set_password(password)
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise Conflict(_("A user named '%(name)s' already exists.") % {"name": username}, code="duplicate_user")
        user.save()
        _set_role(user, role)
        record(action="staff.create", at=now, user=by, ip=ip, target=target_of(user), after=_view(user, role),
               summary=f"staff user {username} created with role {role}")
    return user


def change_role(*, user_id: int, role: str, now: datetime, by, ip: str | None = None):
    _check_role(role)
    with transaction.atomic():
        admins = _lock_admins()
        user = _get_for_update(user_id)
        current = role_of(user)
        if current == SUPERUSER:
            raise DomainError(_("A superuser has every permission; their role cannot be changed here."),
                              code="superuser_role", status=409)
        if current == role:
            return user
        if by is not None and user.pk == by.pk:
            raise DomainError(_("You cannot change your own role."), code="own_role", status=409)
        if current == ADMIN and user.is_active and admins == [user.pk]:
            raise DomainError(_("This is the last active admin; make someone else admin first."),
                              code="last_admin", status=409)
        before = _view(user, current)
        _set_role(user, role)
        record(action="staff.role", at=now, user=by, ip=ip, target=target_of(user), before=before,
               after=_view(user, role), summary=f"{user.get_username()}: role {current or 'none'} → {role}")
    return user


def set_active(*, user_id: int, active: bool, now: datetime, by, ip: str | None = None):
    """Deactivate (the user's sessions stop working at their next request) or reactivate."""
    with transaction.atomic():
        admins = _lock_admins()
        user = _get_for_update(user_id)
        if user.is_active == active:
            return user
        if not active and by is not None and user.pk == by.pk:
            raise DomainError(_("You cannot deactivate yourself."), code="own_account", status=409)
        if not active and admins == [user.pk]:
            raise DomainError(_("This is the last active admin; make someone else admin first."),
                              code="last_admin", status=409)
        role = role_of(user)
        before = _view(user, role)
        user.is_active = active
        user.save(update_fields=["is_active"])
        record(action="staff.activate" if active else "staff.deactivate", at=now, user=by, ip=ip,
               target=target_of(user), before=before, after=_view(user, role),
               summary=f"{user.get_username()} {'reactivated' if active else 'deactivated'}")
    return user


def set_password(*, user_id: int, password: str, now: datetime, by, ip: str | None = None):
    """A new password (validated); the user's other sessions end with it."""
    with transaction.atomic():
        user = _get_for_update(user_id)
        _check_password(password, user)
        user.set_password(password)
        user.save(update_fields=["password"])
        record(action="staff.password", at=now, user=by, ip=ip, target=target_of(user),
               after={"password_set": True}, summary=f"new password set for {user.get_username()}")
    return user
