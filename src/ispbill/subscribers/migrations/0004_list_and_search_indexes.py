"""Indexes for the back office's subscriber list: each filter walks its own index in id
order (keyset paging), and substring search is index-backed.

PostgreSQL: trigram (``pg_trgm``) GIN indexes on the upper-cased name and username and on
the phone serve ``icontains``/``contains`` (``UPPER(col) LIKE UPPER('%q%')``); a btree on
``(UPPER(area), id)`` serves ``area__iexact`` in id order. SQLite: ``iexact`` is ``LIKE``,
which only a ``NOCASE`` index can serve. Substring search on SQLite scans the table.
"""

from django.db import migrations, models

POSTGRES = [
    ("CREATE EXTENSION IF NOT EXISTS pg_trgm", None),
    ("CREATE INDEX subscriber_name_trgm_idx ON subscribers_subscriber USING gin (UPPER(name) gin_trgm_ops)",
     "DROP INDEX IF EXISTS subscriber_name_trgm_idx"),
    ("CREATE INDEX subscriber_username_trgm_idx ON subscribers_subscriber USING gin (UPPER(pppoe_username) gin_trgm_ops)",
     "DROP INDEX IF EXISTS subscriber_username_trgm_idx"),
    ("CREATE INDEX subscriber_phone_trgm_idx ON subscribers_subscriber USING gin (phone gin_trgm_ops)",
     "DROP INDEX IF EXISTS subscriber_phone_trgm_idx"),
    ("CREATE INDEX subscriber_area_upper_id_idx ON subscribers_subscriber (UPPER(area), id)",
     "DROP INDEX IF EXISTS subscriber_area_upper_id_idx"),
]
SQLITE = [
    ("CREATE INDEX subscriber_area_nocase_idx ON subscribers_subscriber (area COLLATE NOCASE)",
     "DROP INDEX IF EXISTS subscriber_area_nocase_idx"),
]


def forwards(apps, schema_editor) -> None:
    _run(schema_editor, forward=True)


def backwards(apps, schema_editor) -> None:
    _run(schema_editor, forward=False)


def _run(schema_editor, *, forward: bool) -> None:
    vendor = schema_editor.connection.vendor
    statements = POSTGRES if vendor == "postgresql" else SQLITE if vendor == "sqlite" else []
    if not forward:
        statements = list(reversed(statements))
    for create, drop in statements:
        sql = create if forward else drop
        if sql:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0003_subscriber_router")]

    operations = [
        migrations.AddIndex("subscriber", models.Index(fields=["status", "id"], name="subscriber_status_id_idx")),
        migrations.AddIndex("subscriber", models.Index(fields=["package", "id"], name="subscriber_package_id_idx")),
        migrations.AddIndex("subscriber", models.Index(fields=["router", "id"], name="subscriber_router_id_idx")),
        migrations.RunPython(forwards, backwards),
    ]
