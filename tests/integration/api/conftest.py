"""Fixtures for the REST API tests: a staff user's token and JSON clients."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from ispbill.api.tokens import issue_token

from .api_support import JsonClient


@pytest.fixture
def staff(db):
    # A superuser: the API checks the token user's role (tests of roles make their own users).
    return get_user_model().objects.create_superuser("staff", "staff@example.com")  # no password: hashing one is slow


@pytest.fixture
def api(staff, fixed_clock) -> JsonClient:
    """An authenticated client; the clock stands at 2026-11-25 16:00 in Dhaka."""
    return JsonClient(issue_token(username=staff.username))


@pytest.fixture
def anon(db, fixed_clock) -> JsonClient:
    return JsonClient()
