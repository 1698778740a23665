"""Every page and every action, with every role: allowed, forbidden (403), anonymous
(sent to the login page)."""

from __future__ import annotations

import pytest
from django.test import Client

from .office_support import NO_ROLE, ROLES, row_counts

pytestmark = pytest.mark.django_db

EVERYONE = set(ROLES)

# page name -> (path template, query, roles allowed)
PAGES = {
    "dashboard": ("/office/", {}, EVERYONE),
    "subscribers": ("/office/subscribers/", {}, EVERYONE),
    "subscribers-filtered": ("/office/subscribers/", {"q": "user", "status": "active", "overdue": "1"}, EVERYONE),
    "subscriber": ("/office/subscribers/{sub}/", {}, EVERYONE),
    "change-package-preview": (
        "/office/subscribers/{sub}/change-package/preview", {"package": "{premium}", "effective_on": "2026-11-25"},
        {"admin", "billing"},
    ),
}


def _fill(text: str, world) -> str:
    return text.format(sub=world["sub"].pk, premium=world["premium"].pk)


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "superuser"])
@pytest.mark.parametrize("page", list(PAGES))
def test_page_by_role(world, client_for, page, role):
    path, query, allowed = PAGES[page]
    response = client_for(role).get(_fill(path, world), {k: _fill(v, world) for k, v in query.items()})
    if role == "superuser" or role in allowed:
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("page", list(PAGES))
def test_page_sends_anonymous_visitors_to_the_login_page(world, page):
    path, query, _ = PAGES[page]
    response = Client().get(_fill(path, world), {k: _fill(v, world) for k, v in query.items()})
    assert response.status_code == 302
    assert response["Location"].startswith("/office/login/?next=/office/")


# action name -> (path template, form data, roles allowed, what changes when it runs)
ACTIONS = {
    "record-payment": (
        "/office/subscribers/{sub}/payments", {"amount": "500.00", "method": "cash", "key": "k-1"}, {"admin", "billing"},
        "Payment",
    ),
    "change-package": (
        "/office/subscribers/{sub}/change-package", {"package": "{premium}", "effective_on": "2026-11-25"},
        {"admin", "billing"}, "PackageChange",
    ),
    "suspend": (
        "/office/subscribers/{sub}/status", {"action": "suspend", "reason": "asked by the owner"}, {"admin", "support"},
        "EnforcementAction",
    ),
    "disable": (
        "/office/subscribers/{sub}/status", {"action": "disable", "reason": "moved away"}, {"admin", "support"},
        "EnforcementAction",
    ),
    "remind": (
        "/office/subscribers/{sub}/remind", {"invoice": "{invoice}", "kind": "overdue", "channel": "sms"},
        {"admin", "support"}, "Message",
    ),
    "exempt": ("/office/subscribers/{sub}/exempt", {"never_suspend": "1"}, {"admin", "support"}, None),
}


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_by_role(world, client_for, action, role):
    from ispbill.billing.models import Invoice
    from ispbill.subscribers.models import Subscriber

    path, data, allowed, changes = ACTIONS[action]
    invoice = Invoice.objects.get(subscriber=world["sub"])
    fill = lambda v: v.format(sub=world["sub"].pk, premium=world["premium"].pk, invoice=invoice.pk)  # noqa: E731
    before = row_counts()
    response = client_for(role).post(fill(path), {k: fill(v) for k, v in data.items()})
    after = row_counts()
    sub = Subscriber.objects.get(pk=world["sub"].pk)
    if role in allowed:
        assert response.status_code == 303
        assert response["Location"] == f"/office/subscribers/{world['sub'].pk}/"
        if changes:
            assert after[changes] > before[changes]
        else:
            assert sub.never_suspend is True
    else:
        assert response.status_code == 403
        assert after == before
        assert sub.never_suspend is False and sub.status == "active"


@pytest.mark.parametrize("action", list(ACTIONS))
def test_actions_are_post_only(world, client_for, action):
    path, _, _, _ = ACTIONS[action]
    response = client_for("admin").get(path.format(sub=world["sub"].pk))
    assert response.status_code == 405


@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_sends_anonymous_visitors_to_the_login_page(world, action):
    path, data, _, _ = ACTIONS[action]
    before = row_counts()
    response = Client().post(path.format(sub=world["sub"].pk), {})
    assert response.status_code == 302 and "/office/login/" in response["Location"]
    assert row_counts() == before
