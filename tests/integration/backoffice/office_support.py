"""Helpers for the back-office tests: staff users per role and a small billed world."""

from __future__ import annotations

from datetime import date

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from ispbill.backoffice.services import ensure_roles
from ispbill.billing.models import CreditNote, Invoice, LedgerEntry, PackageChange
from ispbill.network.models import EnforcementAction
from ispbill.notifications.models import Message
from ispbill.payments.models import Payment
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import bill, make_package, make_subscriber

ROLES = ("admin", "billing", "support", "viewer")
#: A signed-in user with no role at all.
NO_ROLE = "norole"


def make_staff(role: str, *, password: str | None = None):
    """A staff user in ``role`` ("superuser" for a superuser, NO_ROLE for none)."""
    ensure_roles()
    User = get_user_model()
    if role == "superuser":
        return User.objects.create_superuser("root", "root@example.com", password)
    user = User.objects.create_user(f"{role}-user", f"{role}@example.com", password)
    if role in ROLES:
        user.groups.add(Group.objects.get(name=role))
    return user


def build_world():
    """Two packages and one subscriber billed for November 2026 (due 1 Nov: overdue on
    the fixed clock's 25 Nov)."""
    basic = make_package("Basic 10M", "1000.00")
    premium = make_package("Premium 30M", "1500.00")
    sub = make_subscriber(basic, date(2026, 11, 1), area="Mirpur", email="rahim@example.com")
    bill(date(2026, 11, 1))
    return {"basic": basic, "premium": premium, "sub": sub}


def row_counts() -> dict[str, int]:
    models = (Subscriber, Invoice, CreditNote, LedgerEntry, PackageChange, Payment, Message, EnforcementAction)
    return {m.__name__: m.objects.count() for m in models}
