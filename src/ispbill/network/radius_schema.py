"""The FreeRADIUS 3.2 SQL tables the RADIUS driver writes and reads, for PostgreSQL and SQLite.

Production FreeRADIUS installations create these from their own
``mods-config/sql/main/<dialect>/schema.sql``; ispbill never migrates a FreeRADIUS
database. These statements exist for tests, demos and development machines
(:func:`ensure_schema`). Column names and types follow the FreeRADIUS 3.2 schema, so the
server's default ``queries.conf`` runs against them unchanged — including the tables
only the server writes (``radpostauth`` after each authentication, ``nasreload`` on
Accounting-On).

Every statement is ``IF NOT EXISTS``: applying the schema twice changes nothing.
"""

from __future__ import annotations

__all__ = ["POSTGRESQL", "SQLITE", "ensure_schema", "statements"]

_SQLITE_TABLES = {
    "radcheck": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username varchar(64) NOT NULL DEFAULT '',
        attribute varchar(64) NOT NULL DEFAULT '',
        op char(2) NOT NULL DEFAULT '==',
        value varchar(253) NOT NULL DEFAULT ''""",
    "radreply": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username varchar(64) NOT NULL DEFAULT '',
        attribute varchar(64) NOT NULL DEFAULT '',
        op char(2) NOT NULL DEFAULT '=',
        value varchar(253) NOT NULL DEFAULT ''""",
    "radgroupcheck": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        groupname varchar(64) NOT NULL DEFAULT '',
        attribute varchar(64) NOT NULL DEFAULT '',
        op char(2) NOT NULL DEFAULT '==',
        value varchar(253) NOT NULL DEFAULT ''""",
    "radgroupreply": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        groupname varchar(64) NOT NULL DEFAULT '',
        attribute varchar(64) NOT NULL DEFAULT '',
        op char(2) NOT NULL DEFAULT '=',
        value varchar(253) NOT NULL DEFAULT ''""",
    "radusergroup": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username varchar(64) NOT NULL DEFAULT '',
        groupname varchar(64) NOT NULL DEFAULT '',
        priority int NOT NULL DEFAULT 1""",
    "radacct": """
        radacctid INTEGER PRIMARY KEY AUTOINCREMENT,
        acctsessionid varchar(64) NOT NULL DEFAULT '',
        acctuniqueid varchar(32) NOT NULL DEFAULT '',
        username varchar(64) NOT NULL DEFAULT '',
        realm varchar(64) DEFAULT '',
        nasipaddress varchar(15) NOT NULL DEFAULT '',
        nasportid varchar(32) DEFAULT NULL,
        nasporttype varchar(32) DEFAULT NULL,
        acctstarttime datetime NULL DEFAULT NULL,
        acctupdatetime datetime NULL DEFAULT NULL,
        acctstoptime datetime NULL DEFAULT NULL,
        acctinterval int DEFAULT NULL,
        acctsessiontime int DEFAULT NULL,
        acctauthentic varchar(32) DEFAULT NULL,
        connectinfo_start varchar(128) DEFAULT NULL,
        connectinfo_stop varchar(128) DEFAULT NULL,
        acctinputoctets bigint DEFAULT NULL,
        acctoutputoctets bigint DEFAULT NULL,
        calledstationid varchar(50) NOT NULL DEFAULT '',
        callingstationid varchar(50) NOT NULL DEFAULT '',
        acctterminatecause varchar(32) NOT NULL DEFAULT '',
        servicetype varchar(32) DEFAULT NULL,
        framedprotocol varchar(32) DEFAULT NULL,
        framedipaddress varchar(15) NOT NULL DEFAULT '',
        framedipv6address varchar(45) NOT NULL DEFAULT '',
        framedipv6prefix varchar(45) NOT NULL DEFAULT '',
        framedinterfaceid varchar(44) NOT NULL DEFAULT '',
        delegatedipv6prefix varchar(45) NOT NULL DEFAULT '',
        class varchar(64) DEFAULT NULL""",
    "radpostauth": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username varchar(64) NOT NULL DEFAULT '',
        pass varchar(64) NOT NULL DEFAULT '',
        reply varchar(32) NOT NULL DEFAULT '',
        authdate timestamp NOT NULL,
        class varchar(64) DEFAULT NULL""",
    "nas": """
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        nasname varchar(128) NOT NULL,
        shortname varchar(32),
        type varchar(30) DEFAULT 'other',
        ports int,
        secret varchar(60) DEFAULT 'secret' NOT NULL,
        server varchar(64),
        community varchar(50),
        description varchar(200) DEFAULT 'RADIUS Client'""",
    "nasreload": """
        nasipaddress varchar(15) PRIMARY KEY,
        reloadtime datetime NOT NULL""",
}

_POSTGRESQL_TABLES = {
    "radcheck": """
        id serial PRIMARY KEY,
        username text NOT NULL DEFAULT '',
        attribute text NOT NULL DEFAULT '',
        op varchar(2) NOT NULL DEFAULT '==',
        value text NOT NULL DEFAULT ''""",
    "radreply": """
        id serial PRIMARY KEY,
        username text NOT NULL DEFAULT '',
        attribute text NOT NULL DEFAULT '',
        op varchar(2) NOT NULL DEFAULT '=',
        value text NOT NULL DEFAULT ''""",
    "radgroupcheck": """
        id serial PRIMARY KEY,
        groupname text NOT NULL DEFAULT '',
        attribute text NOT NULL DEFAULT '',
        op varchar(2) NOT NULL DEFAULT '==',
        value text NOT NULL DEFAULT ''""",
    "radgroupreply": """
        id serial PRIMARY KEY,
        groupname text NOT NULL DEFAULT '',
        attribute text NOT NULL DEFAULT '',
        op varchar(2) NOT NULL DEFAULT '=',
        value text NOT NULL DEFAULT ''""",
    "radusergroup": """
        id serial PRIMARY KEY,
        username text NOT NULL DEFAULT '',
        groupname text NOT NULL DEFAULT '',
        priority integer NOT NULL DEFAULT 0""",
    "radacct": """
        radacctid bigserial PRIMARY KEY,
        acctsessionid text NOT NULL,
        acctuniqueid text NOT NULL UNIQUE,
        username text,
        realm text,
        nasipaddress inet NOT NULL,
        nasportid text,
        nasporttype text,
        acctstarttime timestamp with time zone,
        acctupdatetime timestamp with time zone,
        acctstoptime timestamp with time zone,
        acctinterval bigint,
        acctsessiontime bigint,
        acctauthentic text,
        connectinfo_start text,
        connectinfo_stop text,
        acctinputoctets bigint,
        acctoutputoctets bigint,
        calledstationid text,
        callingstationid text,
        acctterminatecause text,
        servicetype text,
        framedprotocol text,
        framedipaddress inet,
        framedipv6address inet,
        framedipv6prefix inet,
        framedinterfaceid text,
        delegatedipv6prefix inet,
        class text""",
    "radpostauth": """
        id bigserial PRIMARY KEY,
        username text NOT NULL,
        pass text,
        reply text,
        calledstationid text,
        callingstationid text,
        authdate timestamp with time zone NOT NULL DEFAULT now(),
        class text""",
    "nas": """
        id serial PRIMARY KEY,
        nasname text NOT NULL,
        shortname text NOT NULL,
        type text NOT NULL DEFAULT 'other',
        ports integer,
        secret text NOT NULL,
        server text,
        community text,
        description text""",
    "nasreload": """
        nasipaddress inet PRIMARY KEY,
        reloadtime timestamp with time zone NOT NULL""",
}

# (index name, table, columns[, partial condition]): the lookups the server and the driver make.
_SQLITE_INDEXES = [
    ("radcheck_username", "radcheck", "username"),
    ("radreply_username", "radreply", "username"),
    ("radgroupcheck_groupname", "radgroupcheck", "groupname"),
    ("radgroupreply_groupname", "radgroupreply", "groupname"),
    ("radusergroup_username", "radusergroup", "username"),
    ("radacct_acctuniqueid", "radacct", "acctuniqueid", "", True),
    ("radacct_username", "radacct", "username"),
    ("radacct_acctsessionid", "radacct", "acctsessionid"),
    ("radacct_framedipaddress", "radacct", "framedipaddress"),
    ("radacct_acctstarttime", "radacct", "acctstarttime"),
    ("radacct_acctstoptime", "radacct", "acctstoptime"),
    ("radacct_nasipaddress", "radacct", "nasipaddress"),
    ("radpostauth_username", "radpostauth", "username"),
    ("nas_nasname", "nas", "nasname"),
]
_POSTGRESQL_INDEXES = [
    ("radcheck_username", "radcheck", "username, attribute"),
    ("radreply_username", "radreply", "username, attribute"),
    ("radgroupcheck_groupname", "radgroupcheck", "groupname, attribute"),
    ("radgroupreply_groupname", "radgroupreply", "groupname, attribute"),
    ("radusergroup_username", "radusergroup", "username"),
    ("radacct_active_session", "radacct", "acctuniqueid", "acctstoptime IS NULL"),
    ("radacct_bulk_close", "radacct", "nasipaddress, acctstarttime", "acctstoptime IS NULL"),
    ("radacct_open_user", "radacct", "username", "acctstoptime IS NULL"),
    ("radacct_start_user", "radacct", "acctstarttime, username"),
    ("radpostauth_username", "radpostauth", "username"),
    ("nas_nasname", "nas", "nasname"),
]


def _build(tables: dict[str, str], indexes: list[tuple]) -> tuple[str, ...]:
    out = [f"CREATE TABLE IF NOT EXISTS {name} ({columns}\n)" for name, columns in tables.items()]
    for name, table, columns, *rest in indexes:
        where = rest[0] if rest else ""
        unique = "UNIQUE " if len(rest) > 1 and rest[1] else ""
        out.append(
            f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {table} ({columns})" + (f" WHERE {where}" if where else "")
        )
    return tuple(out)


SQLITE: tuple[str, ...] = _build(_SQLITE_TABLES, _SQLITE_INDEXES)
POSTGRESQL: tuple[str, ...] = _build(_POSTGRESQL_TABLES, _POSTGRESQL_INDEXES)


def statements(dialect: str) -> tuple[str, ...]:
    """The CREATE statements for ``"sqlite"`` or ``"postgresql"``."""
    if dialect == "sqlite":
        return SQLITE
    if dialect == "postgresql":
        return POSTGRESQL
    raise ValueError(f"no FreeRADIUS schema for dialect {dialect!r}")


def ensure_schema(url: str) -> None:
    """Create the FreeRADIUS tables in the database at ``url`` (``postgresql://…`` or
    ``sqlite:///…``) unless they exist. For demos, tests and development only."""
    from ispbill.network.drivers.radius import RadiusDatabase

    db = RadiusDatabase(url)
    conn = db.connect(create=True)
    try:
        cur = conn.cursor()
        cur.execute("BEGIN")  # the connection autocommits; all tables or none
        for sql in statements(db.dialect):
            cur.execute(sql)
        cur.execute("COMMIT")
    finally:
        conn.close()
