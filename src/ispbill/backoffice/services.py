"""Back-office writes: roles, login throttling, and staff actions that need more than
one domain service (a status change with the reason staff gave)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from ispbill.backoffice.models import Access, LoginFailure
from ispbill.backoffice.roles import ADMIN_AUTH_PERMISSIONS, PERMISSIONS, ROLES
from ispbill.core.errors import DomainError
from ispbill.core.timeutil import local_date
from ispbill.network.models import EnforcementAction
from ispbill.subscribers.choices import SubscriberStatus


def ensure_roles() -> list[str]:
    """Create (or complete) the staff groups and their permissions; idempotent."""
    ct = ContentType.objects.get_for_model(Access, for_concrete_model=False)
    with transaction.atomic():
        perms = {
            codename: Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": name})[0]
            for codename, name in PERMISSIONS.items()
        }
        auth_perms = list(Permission.objects.filter(content_type__app_label="auth", codename__in=ADMIN_AUTH_PERMISSIONS))
        for role, codenames in ROLES.items():
            group, _ = Group.objects.get_or_create(name=role)
            group.permissions.add(*(perms[c] for c in codenames))
            if role == "admin":
                group.permissions.add(*auth_perms)
    return list(ROLES)


# -- login throttling ----------------------------------------------------------------------

def _window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.ISPBILL_LOGIN_WINDOW_SECONDS)


def login_blocked(*, username: str, ip: str | None, now: datetime) -> bool:
    """True when this username has failed too often from this address lately."""
    recent = LoginFailure.objects.filter(username=username.strip().lower(), ip=ip, failed_at__gte=_window_start(now))
    return recent.count() >= settings.ISPBILL_LOGIN_MAX_FAILURES


def record_login_failure(*, username: str, ip: str | None, now: datetime) -> None:
    LoginFailure.objects.create(username=username.strip().lower()[:150], ip=ip, failed_at=now)
    # Old rows are worthless; trimming here keeps the table small without a job.
    LoginFailure.objects.filter(failed_at__lt=now - timedelta(days=1)).delete()


def clear_login_failures(*, username: str, ip: str | None) -> None:
    LoginFailure.objects.filter(username=username.strip().lower(), ip=ip).delete()


# -- staff actions ------------------------------------------------------------------------

STATUS_ACTIONS = {
    "suspend": SubscriberStatus.SUSPENDED,
    "restore": SubscriberStatus.ACTIVE,
    "disable": SubscriberStatus.DISABLED,
    "enable": SubscriberStatus.ACTIVE,
}
_ALLOWED_FROM = {
    "suspend": (SubscriberStatus.ACTIVE,),
    "restore": (SubscriberStatus.SUSPENDED,),
    "disable": (SubscriberStatus.ACTIVE, SubscriberStatus.SUSPENDED),
    "enable": (SubscriberStatus.DISABLED,),
}


def change_status_by_hand(*, subscriber_id: int, action: str, reason: str, now: datetime, user=None, ip: str | None = None):
    """Suspend, restore, disable or re-enable a subscriber on staff's word; the reason is
    kept on the enforcement action it produces. One transaction."""
    from ispbill.subscribers.models import Subscriber
    from ispbill.subscribers.services import update_subscriber

    if action not in STATUS_ACTIONS:
        raise DomainError(f"unknown action '{action}'", code="invalid_action", status=422)
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("say why (the reason is kept with the change)", code="reason_required", field="reason", status=422)
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update(of=("self",)).filter(pk=subscriber_id).first()
        if sub is None:
            raise DomainError("subscriber not found", code="subscriber_not_found", status=404)
        if sub.status not in _ALLOWED_FROM[action]:
            raise DomainError(f"cannot {action} a subscriber who is {sub.status}", code="invalid_transition", status=409)
        before = set(EnforcementAction.objects.filter(subscriber_id=subscriber_id).values_list("id", flat=True))
        # update_subscriber also re-bills a re-enabled subscriber from today; it calls
        # network.services.set_subscriber_status for the router side.
        # One audit event (subscriber.<action>, with the reason) is recorded there too.
        update_subscriber(
            subscriber_id=subscriber_id, today=local_date(now), user=user, status=STATUS_ACTIONS[action], reason=reason,
            ip=ip,
        )
        EnforcementAction.objects.filter(subscriber_id=subscriber_id).exclude(id__in=before).update(
            note=f"{action} by {getattr(user, 'username', 'staff')}: {reason}"[:300]
        )
        return Subscriber.objects.get(pk=subscriber_id)
