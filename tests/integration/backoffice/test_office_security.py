"""CSRF on every form, escaping of what subscribers and staff type."""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client

from ispbill.subscribers.services import update_subscriber

from .office_support import make_staff, row_counts

pytestmark = pytest.mark.django_db

XSS_NAME = '<script>alert("name")</script>'
XSS_NOTES = '"><img src=x onerror=alert(1)>'


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/office/subscribers/{sub}/payments", {"amount": "500.00", "method": "cash", "key": "csrf-1"}),
        ("/office/subscribers/{sub}/change-package", {"package": "{premium}", "effective_on": "2026-11-25"}),
        ("/office/subscribers/{sub}/status", {"action": "suspend", "reason": "test"}),
        ("/office/subscribers/{sub}/remind", {"invoice": "1", "kind": "overdue"}),
        ("/office/subscribers/{sub}/exempt", {"never_suspend": "1"}),
        ("/office/logout/", {}),
    ],
)
def test_posts_without_a_csrf_token_are_refused(world, path, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    before = row_counts()
    fill = lambda v: v.format(sub=world["sub"].pk, premium=world["premium"].pk)  # noqa: E731
    response = client.post(fill(path), {k: fill(v) for k, v in data.items()})
    assert response.status_code == 403
    assert row_counts() == before


def test_login_without_a_csrf_token_is_refused(db, fast_hasher):
    make_staff("viewer", password="correct horse battery")
    response = Client(enforce_csrf_checks=True).post(
        "/office/login/", {"username": "viewer-user", "password": "correct horse battery"}
    )
    assert response.status_code == 403


def test_forms_carry_a_csrf_token(world, client_for):
    page = client_for("admin").get(f"/office/subscribers/{world['sub'].pk}/").content.decode()
    assert page.count('method="post"') >= 4
    assert page.count('method="post"') == page.count('name="csrfmiddlewaretoken"')


def test_markup_in_names_and_notes_is_escaped_on_the_list_and_detail_pages(world, client_for):
    sub = world["sub"]
    update_subscriber(subscriber_id=sub.pk, today=date(2026, 11, 25), name=XSS_NAME, notes=XSS_NOTES, area=XSS_NAME)
    client = client_for("admin")
    for path in ("/office/subscribers/", f"/office/subscribers/{sub.pk}/", f"/office/subscribers/?q={sub.pppoe_username}"):
        html = client.get(path).content.decode()
        assert XSS_NAME not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in html, path
    preview = client.get(
        f"/office/subscribers/{sub.pk}/change-package/preview",
        {"package": world["premium"].pk, "effective_on": "2026-11-25"},
    ).content.decode()
    assert XSS_NAME not in preview


def test_dashboard_charts_need_no_cdn_and_no_inline_code(world, client_for):
    """Charts are drawn by Chart.js served from our own static files; the page carries
    their data as JSON (never executed) and loads no script from anywhere else."""
    import json
    import re

    html = client_for("viewer").get("/office/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    sources = [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts if "src=" in attrs]
    assert sources == ["/static/backoffice/vendor/chart.umd.min.js", "/static/backoffice/dashboard.js"]
    data = [body for attrs, body in scripts if 'type="application/json"' in attrs]
    assert len(data) == 3 and len(scripts) == 5  # the two files and three JSON blocks, nothing inline
    assert {json.loads(body)["type"] for body in data} == {"bar"}
    for marker in ("cdn", "https://"):
        assert marker not in html.lower()