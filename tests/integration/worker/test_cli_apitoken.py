"""``ispbill createadmin`` and ``ispbill apitoken``: the printed token opens the API."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ispbill import cli
from ispbill.plans import services as plan_services


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.django_db
def test_apitoken_prints_a_token_that_authenticates(capsys):
    code, out, _ = run(capsys, "createadmin", "--username", "admin", "--password", "correct-horse-battery")
    assert (code, out.strip()) == (0, "Created admin user 'admin'.")
    plan_services.create_package(name="Home 20 Mbps", price=Decimal("1000"))

    code, out, err = run(capsys, "apitoken", "--username", "admin")

    assert code == 0
    token = out.splitlines()[-1]
    assert token == token.strip() and " " not in token and token.startswith("isb_")
    client = Client()
    response = client.get("/api/v1/packages", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert [p["name"] for p in response.json()["items"]] == ["Home 20 Mbps"]

    # and the API really checks it
    assert client.get("/api/v1/packages").status_code == 401
    assert client.get("/api/v1/packages", HTTP_AUTHORIZATION=f"Bearer {token[:-1]}x").status_code == 401


@pytest.mark.django_db
def test_each_apitoken_call_issues_a_new_working_token(capsys):
    get_user_model().objects.create_user(username="ops", password="long-enough-pw", is_staff=True)
    _, first, _ = run(capsys, "apitoken", "--username", "ops")
    _, second, _ = run(capsys, "apitoken", "--username", "ops")
    tokens = [first.splitlines()[-1], second.splitlines()[-1]]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert Client().get("/api/v1/packages", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.django_db
def test_apitoken_for_an_unknown_user_exits_2(capsys):
    code, out, err = run(capsys, "apitoken", "--username", "nobody")
    assert code == 2
    assert out == ""
    assert "error: no active user 'nobody'" in err


@pytest.mark.django_db
def test_apitoken_for_an_inactive_user_exits_2(capsys):
    get_user_model().objects.create_user(username="left", password="long-enough-pw", is_active=False)
    code, out, err = run(capsys, "apitoken", "--username", "left")
    assert (code, out) == (2, "")
    assert "no active user 'left'" in err
