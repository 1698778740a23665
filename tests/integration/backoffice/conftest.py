from __future__ import annotations

import pytest
from django.test import Client

from .office_support import build_world, make_staff


@pytest.fixture
def world(db, fixed_clock):
    return build_world()


@pytest.fixture
def client_for(db):
    """``client_for(role)``: a client signed in as a fresh user of that role."""

    def make(role: str, **kwargs) -> Client:
        client = Client(**kwargs)
        client.force_login(make_staff(role))
        return client

    return make


@pytest.fixture
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
