"""Staff sign-in: Django auth with throttling, sessions that expire, the way in from ``/``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client

from ispbill.backoffice.models import LoginFailure

from .office_support import make_staff

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture
def viewer(db, fast_hasher, fixed_clock):
    return make_staff("viewer", password=PASSWORD)


def login(client: Client, password: str, ip: str = "10.0.0.1", username: str = "viewer-user"):
    return client.post("/office/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_login_and_logout(viewer):
    client = Client()
    assert client.get("/office/login/").status_code == 200
    response = login(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/office/"
    assert client.get("/office/").status_code == 200
    assert client.post("/office/logout/").status_code == 302
    assert client.get("/office/").status_code == 302


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(viewer):
    response = login(Client(), "wrong")
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_five_failures_block_the_username_from_that_address(viewer, fixed_clock):
    client = Client()
    for _ in range(settings.ISPBILL_LOGIN_MAX_FAILURES):
        assert login(client, "wrong").status_code == 200
    blocked = login(client, PASSWORD)  # even the right password
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.content.decode()
    assert client.get("/office/").status_code == 302  # not signed in

    # Another address is not blocked, nor another username from this one.
    assert login(Client(), PASSWORD, ip="10.0.0.2").status_code == 302
    assert login(Client(), "wrong", username="someone-else").status_code == 200

    # The window passes: the right password works again and clears the count.
    fixed_clock.advance(timedelta(seconds=settings.ISPBILL_LOGIN_WINDOW_SECONDS + 1))
    assert login(client, PASSWORD).status_code == 302
    assert not LoginFailure.objects.filter(username="viewer-user", ip="10.0.0.1").exists()


def test_throttle_counts_are_shared_by_processes_through_the_database(viewer):
    for _ in range(3):
        login(Client(), "wrong")
    assert LoginFailure.objects.filter(username="viewer-user").count() == 3


def test_sessions_expire(viewer):
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    client = Client()
    login(client, PASSWORD)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["expires"] and not cookie["max-age"]  # a browser-session cookie


def test_home_sends_staff_to_the_back_office(viewer):
    anonymous = Client().get("/")
    assert anonymous.status_code == 200
    page = anonymous.content.decode()
    assert 'href="/office/"' in page and 'href="/admin/"' in page and 'href="/api/v1/docs"' in page
    client = Client()
    client.force_login(viewer)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/office/"


def test_admin_and_api_docs_stay_reachable(db):
    assert Client().get("/admin/login/").status_code == 200
    assert Client().get("/api/v1/docs").status_code == 200
