"""Fixtures for the audit tests: the back office's small billed world and staff clients."""

from __future__ import annotations

import pytest
from django.test import Client

from ..backoffice.office_support import build_world, make_staff


@pytest.fixture
def world(db, fixed_clock):
    return build_world()


@pytest.fixture
def client_for(db):
    """``client_for(role)``: a client signed in as a fresh user of that role; the user is
    ``client.user``."""

    def make(role: str) -> Client:
        client = Client()
        client.user = make_staff(role)
        client.force_login(client.user)
        return client

    return make
