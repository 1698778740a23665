"""Set-based writes that stay fast on both databases.

PostgreSQL gets ``COPY``; SQLite gets ``executemany`` (C speed, inside the caller's
transaction). Callers pass plain tuples in column order.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime
from typing import Iterable, Sequence

from django.db import connection, models


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def bulk_insert(model: type[models.Model], columns: Sequence[str], rows: Sequence[tuple]) -> None:
    if not rows:
        return
    table = model._meta.db_table
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    if is_postgres():
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        marks = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})", _sqlite_values(rows))


def _sqlite_values(rows: Sequence[tuple]) -> Sequence[tuple]:
    """Dates and instants in the text form Django's SQLite backend stores and compares
    (naive UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]``); other values pass through."""
    first = rows[0]
    positions = [i for i, v in enumerate(first) if isinstance(v, (datetime, date))]
    if not positions:
        return rows
    adapt = connection.ops.adapt_datetimefield_value

    def convert(v):
        if isinstance(v, datetime):
            return adapt(v)
        if isinstance(v, date):
            return v.isoformat()
        return v

    out = []
    for row in rows:
        row = list(row)
        for i in positions:
            row[i] = convert(row[i])
        out.append(row)
    return out


def reserve_ids(model: type[models.Model], count: int) -> list[int]:
    """Primary keys for ``count`` rows the caller is about to insert with explicit ids.

    PostgreSQL draws them from the table's sequence (safe under concurrency); SQLite
    takes them above the current maximum, which is safe because the caller holds the
    database's single write lock for the whole transaction.
    """
    if count <= 0:
        return []
    table = model._meta.db_table
    pk = model._meta.pk.column
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", [table, pk, count]
            )
            return [r[0] for r in cursor.fetchall()]
        qn = connection.ops.quote_name
        cursor.execute(f"SELECT COALESCE(MAX({qn(pk)}), 0) FROM {qn(table)}")
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


def id_chunks(ids: Sequence[int], *, reserve_params: int = 0) -> Iterable[Sequence[int]]:
    """``ids`` split so each part fits one :func:`in_ids` clause plus ``reserve_params`` more.

    PostgreSQL binds a whole list as one array parameter; SQLite binds one parameter per
    id and stays under Django's conservative ``max_query_params`` (999).
    """
    size = 50_000 if is_postgres() else max(1, connection.features.max_query_params - reserve_params)
    return chunks(ids, size)


def in_ids(column: str, ids: Sequence[int]) -> tuple[str, list]:
    """SQL ``column IN ids`` and its parameters, without per-id ORM work.

    PostgreSQL: ``column = ANY(%s::bigint[])`` with one array parameter (a 5,000-id IN
    list costs more to build and parse than the query does to run). SQLite: a plain
    placeholder list; pass parts from :func:`id_chunks`.
    """
    col = connection.ops.quote_name(column)
    if is_postgres():
        return f"{col} = ANY(%s::bigint[])", [list(ids)]
    return f"{col} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def advisory_xact_lock(name: str) -> None:
    """Serialise a critical section across processes until the transaction ends.

    PostgreSQL: a transaction-level advisory lock. SQLite: the IMMEDIATE transaction
    already holds the only write lock, so nothing more is needed.
    """
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(name)])


def lock_key(name: str) -> int:
    return zlib.crc32(("ispbill:" + name).encode()) - 2**31
