"""A throwaway database for one benchmark run.

SQLite: a file in a temporary directory. PostgreSQL: ``ispbill_bench_<label>_<pid>``
created on the server of the given URL and dropped at exit; the database named in the
URL is only used for its host, port and user, never written to.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit


def use_throwaway_database(url: str | None, *, label: str, keep: bool = False) -> str:
    """Point this process (``DATABASE_URL``, ``ISPBILL_DATA_DIR``) at a new, empty
    database and return a description of it. ``keep`` leaves it behind and says where."""
    data_dir = tempfile.mkdtemp(prefix=f"ispbill-bench-{label}-")
    os.environ["ISPBILL_DATA_DIR"] = data_dir  # also where the generated secret key lands
    if not (url or "").startswith(("postgres://", "postgresql://")):
        os.environ.pop("DATABASE_URL", None)  # settings default to DATA_DIR/ispbill.sqlite3
        if keep:
            print(f"keeping {data_dir}")
        else:
            atexit.register(shutil.rmtree, data_dir, True)
        return f"sqlite at {data_dir}/ispbill.sqlite3"
    atexit.register(shutil.rmtree, data_dir, True)
    import psycopg

    parts = urlsplit(url)
    name = f"ispbill_bench_{label}_{os.getpid()}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if keep:
        print(f"keeping database {name}")
    else:
        atexit.register(drop)
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    return f"postgresql database {name} on {parts.hostname}:{parts.port or 5432} (created for this run)"
