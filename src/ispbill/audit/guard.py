"""The switch the append-only triggers consult before refusing a DELETE (or TRUNCATE).

Production never sets it, so the database refuses. The test suite sets
``ISPBILL_AUDIT_PURGE_ALLOWED`` so that the test runner can empty tables between tests;
the append-only tests turn it off again for their own transaction.

- SQLite: the trigger calls the SQL function ``ispbill_audit_purge_allowed()``, which
  each connection registers; a connection without it (the ``sqlite3`` shell) is refused.
- PostgreSQL: the trigger reads the session setting ``ispbill.audit_purge``.
"""

from __future__ import annotations

from django.conf import settings


def purge_allowed() -> bool:
    return bool(getattr(settings, "ISPBILL_AUDIT_PURGE_ALLOWED", False))


def on_connection_created(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("ispbill_audit_purge_allowed", 0, lambda: int(purge_allowed()))
    elif connection.vendor == "postgresql" and purge_allowed():
        with connection.connection.cursor() as cursor:
            cursor.execute("SET ispbill.audit_purge = 'on'")
