"""Set-based writes that stay fast on both databases.

PostgreSQL gets ``COPY``; SQLite gets ``executemany`` (C speed, inside the caller's
transaction). Callers pass plain tuples in column order.
"""

from __future__ import annotations

import weakref
import zlib
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Callable, Iterable, Iterator, Sequence

from django.db import connection, models


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def bulk_insert(model: type[models.Model], columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) in one statement.

    On PostgreSQL this is a binary ``COPY`` when every column has a plain type and the
    first row's values have the matching Python types (int, str, date, aware datetime,
    bool, Decimal; ``None`` anywhere); otherwise a text ``COPY``. Each column must hold
    one Python type throughout ``rows``.
    """
    if not rows:
        return
    table = model._meta.db_table
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    if is_postgres():
        oids = _binary_copy_types(table, columns, rows)
        with connection.cursor() as cursor:
            if oids is None:
                with cursor.cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                with cursor.cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(oids)
                    write_row = copy.write_row
                    for row in rows:
                        write_row(row)
    else:
        marks = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})", _sqlite_values(rows))


def _sqlite_values(rows: Sequence[tuple]) -> Sequence[tuple]:
    """Dates and instants in the text form Django's SQLite backend stores and compares
    (naive UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]``); other values pass through.

    Each distinct value is converted once: a billing run stamps every row with the same
    instant and a handful of dates.
    """
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

    converted: dict = {}  # a date never equals a datetime, so one dict serves both
    out = []
    for row in rows:
        row = list(row)
        for i in positions:
            v = row[i]
            try:
                row[i] = converted[v]
            except KeyError:
                row[i] = converted[v] = convert(v)
        out.append(row)
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v) -> bool:
    return isinstance(v, str)  # choices (str enums) are dumped as their value


def _is_date(v) -> bool:
    return isinstance(v, date) and not isinstance(v, datetime)


def _is_aware(v) -> bool:
    return isinstance(v, datetime) and v.tzinfo is not None


# Column type oid -> the Python values its binary COPY dumper takes (checked on the first row).
_BINARY_COPY_OIDS: dict[int, Callable[[object], bool]] = {
    16: lambda v: isinstance(v, bool),  # boolean
    20: _is_int,  # bigint
    21: _is_int,  # smallint
    23: _is_int,  # integer
    25: _is_str,  # text
    1043: _is_str,  # varchar
    1082: _is_date,  # date
    1184: _is_aware,  # timestamp with time zone
    1700: lambda v: isinstance(v, Decimal),  # numeric
}
# Catalog facts (column types, serial sequences) per open PostgreSQL connection: a new
# connection, e.g. after migrations in another process, looks them up again.
_catalog: "weakref.WeakKeyDictionary[object, dict[tuple, object]]" = weakref.WeakKeyDictionary()


def _catalog_lookup(key: tuple, sql: str, params: list, convert: Callable[[list], object]):
    connection.ensure_connection()
    cache = _catalog.setdefault(connection.connection, {})
    if key not in cache:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            cache[key] = convert(cursor.fetchall())
    return cache[key]


def _binary_copy_types(table: str, columns: Sequence[str], rows: Sequence[tuple]) -> list[int] | None:
    """The column type oids for a binary COPY of ``rows``, or ``None`` to use text."""
    types = _catalog_lookup(
        ("columns", table),
        "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [connection.ops.quote_name(table)],
        dict,
    )
    oids = []
    first = rows[0]
    for column, value in zip(columns, first):
        oid = types.get(column)
        accepts = _BINARY_COPY_OIDS.get(oid)
        if accepts is None or (value is not None and not accepts(value)):
            return None
        oids.append(oid)
    return oids if len(oids) == len(columns) == len(first) else None


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
            # The sequence is looked up once: inside the query it would be resolved per row.
            seq = _catalog_lookup(("sequence", table, pk), "SELECT pg_get_serial_sequence(%s, %s)", [table, pk], lambda r: r[0][0])
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [seq, count])
            return [r[0] for r in cursor.fetchall()]
        qn = connection.ops.quote_name
        cursor.execute(f"SELECT COALESCE(MAX({qn(pk)}), 0) FROM {qn(table)}")
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


@contextmanager
def overlapped() -> Iterator[None]:
    """Let the PostgreSQL server run the statements issued inside while Python carries on.

    The block runs in psycopg's pipeline mode: ``execute`` returns at once and the
    statements run on the server in order, in the caller's transaction as usual; the
    block's end waits for them and raises their errors. Meant for writes whose results
    nobody reads: reading one inside waits for everything sent before it, and ``COPY``
    (:func:`bulk_insert`) is not allowed inside. Elsewhere (SQLite) statements simply
    run as they are issued.
    """
    if not is_postgres():
        yield
        return
    from psycopg import Pipeline

    if not Pipeline.is_supported():  # libpq older than 14: run them one by one
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors:
        with connection.connection.pipeline():
            yield


#: Parameters per statement for :func:`insert_objects` (SQLite allows 32,766).
_MAX_PARAMS = 30_000
#: From this many rows :func:`insert_objects` uses ``COPY`` on PostgreSQL: about 40% less
#: client CPU per row than a multi-row ``INSERT`` for a batch of 32 payments, the same
#: below 8 rows, where the extra round trip for the keys costs what ``COPY`` saves.
_COPY_FROM_ROWS = 8


def insert_objects(objs: Sequence[models.Model], *, return_ids: bool = False) -> None:
    """Insert new model instances (all of one model) in one statement.

    ``bulk_create`` for the few dozen rows of one batch, without its per-value
    expression machinery, which costs more than the insert for rows like these. Values
    are prepared by each field (``pre_save``, ``get_db_prep_save``) as ``save`` would; an
    automatic primary key left unset is assigned by the database and, with
    ``return_ids``, set on the objects. From :data:`_COPY_FROM_ROWS` rows on,
    PostgreSQL gets a ``COPY`` (:func:`bulk_insert`, with the keys drawn first by
    :func:`reserve_ids`); otherwise, and on SQLite, one multi-row ``INSERT … RETURNING``.
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    auto = meta.pk if all(getattr(obj, meta.pk.attname) is None for obj in objs) else None
    fields = [f for f in meta.concrete_fields if f is not auto]
    rows = [tuple([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]) for obj in objs]
    if is_postgres() and len(objs) >= _COPY_FROM_ROWS:
        columns = [f.column for f in fields]
        if return_ids and auto is not None:
            ids = reserve_ids(model, len(objs))
            rows = [(pk, *row) for pk, row in zip(ids, rows)]
            columns.insert(0, auto.column)
            for obj, pk in zip(objs, ids):
                setattr(obj, auto.attname, pk)
        bulk_insert(model, columns, rows)
    else:
        qn = connection.ops.quote_name
        per_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        head = f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES "
        tail = f" RETURNING {qn(meta.pk.column)}" if return_ids and auto is not None else ""
        size = max(1, _MAX_PARAMS // len(fields))
        with connection.cursor() as cursor:
            for start in range(0, len(objs), size):
                part = rows[start:start + size]
                cursor.execute(head + ", ".join([per_row] * len(part)) + tail, [v for row in part for v in row])
                if tail:
                    for obj, (pk,) in zip(objs[start:start + size], cursor.fetchall()):
                        setattr(obj, meta.pk.attname, pk)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of model instances (all of one model) back to their rows: one
    ``UPDATE … WHERE pk`` per row, sent together with ``executemany`` (in one round trip on
    PostgreSQL, psycopg's pipeline). What ``bulk_update`` does, without building a
    ``CASE`` per row and field, which costs more than the writes for a few dozen rows."""
    if not objs:
        return
    meta = objs[0]._meta
    qn = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(c.column)} = %s' for c in columns)}"
        f" WHERE {qn(meta.pk.column)} = %s"
    )
    params = [[c.get_db_prep_save(getattr(obj, c.attname), connection) for c in columns] + [obj.pk] for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def id_chunks(ids: Sequence[int], *, reserve_params: int = 0) -> Iterable[Sequence[int]]:
    """``ids`` split so each part fits one :func:`in_ids` clause plus ``reserve_params`` more.

    PostgreSQL binds a whole list as one array parameter; SQLite binds one parameter per
    id and stays under Django's conservative ``max_query_params`` (999).
    """
    size = 50_000 if is_postgres() else max(1, connection.features.max_query_params - reserve_params)
    return chunks(ids, size)


def in_ids(column: str, ids: Sequence[int]) -> tuple[str, list]:
    """SQL ``column IN ids`` and its parameters, without per-id ORM work.

    PostgreSQL: ``column = ANY(%s::bigint[])`` with one parameter, the array written
    out as text (a 5,000-id IN list costs more to build and parse than the query does to
    run, and so does adapting a Python list element by element). SQLite: a plain
    placeholder list; pass parts from :func:`id_chunks`.
    """
    col = connection.ops.quote_name(column)
    if is_postgres():
        return f"{col} = ANY(%s::bigint[])", ["{" + ",".join([str(int(i)) for i in ids]) + "}"]
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
