import os
from datetime import UTC, datetime

import pytest
from django.db import connection

from ispbill.core import clock


def pytest_configure(config):
    """Let the test runner empty the append-only audit table between tests (see
    ``ispbill.audit.guard``); the audit tests switch it off to prove the refusal."""
    from django.conf import settings

    settings.ISPBILL_AUDIT_PURGE_ALLOWED = True


@pytest.fixture(autouse=True, scope="session")
def _check_database(django_db_setup, django_db_blocker):
    """The PostgreSQL pass must really run on PostgreSQL, never fall back quietly."""
    required = os.environ.get("ISPBILL_REQUIRE_DB")
    if required:
        assert connection.vendor == required, f"tests expected {required}, got {connection.vendor}"


@pytest.fixture
def fixed_clock():
    """A clock standing at 2026-11-25 10:00 UTC (16:00 in Dhaka); move it with .set/.advance."""
    c = clock.FixedClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    with clock.use_clock(c):
        yield c


@pytest.fixture(autouse=True)
def _no_language_left_over():
    """A test that switched the language (the Bangla back office) leaves English behind."""
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Nothing one test cached (the dashboard's sums of earlier days) reaches another."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_template_cache():
    """Customised message templates are cached per process; a test's rollback must not
    leave another test reading a template that no longer exists."""
    from ispbill.notifications.services import forget_templates

    forget_templates()
    yield
    forget_templates()
