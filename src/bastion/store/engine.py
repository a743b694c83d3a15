"""Database engines for the store: SQLite (the default) and PostgreSQL, set up for a
multi-threaded server.

SQLite
    * ``journal_mode=WAL``: readers never block the writer nor each other;
    * ``foreign_keys=ON``: SQLite ignores foreign keys unless told on each connection;
    * ``busy_timeout``: a writer waits for the lock instead of failing with "database is
      locked";
    * ``check_same_thread=False``: a pooled connection is used by one thread at a time, but not
      always by the thread that opened it;
    * transactions are begun by us, not by the ``sqlite3`` module (whose legacy mode begins one
      only before INSERT/UPDATE/DELETE): ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes.
      A write transaction takes the write lock at its start, so two writers never both read
      and then fail to upgrade (``SQLITE_BUSY`` without waiting); they queue on busy_timeout,
      which is what serialises ``create_build``'s counter increment;
    * a new database file is created with mode 0600: it holds token hashes and encrypted
      secrets.
    * ``sqlite://`` (in memory) uses one shared connection; the store then serialises its
      transactions with a lock. Meant for tests.

PostgreSQL (``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` are read as
psycopg 3)
    a connection pool checked before use (``pool_pre_ping``) and recycled every 30 minutes, so
    a database restart costs one failed ping rather than one failed request.

Both: ``hide_parameters=True``, so SQL parameters (ciphertexts, hashes, log text) never appear
in exception messages or logs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 20
SQLITE_POOL_OVERFLOW = 40
WRITE_OPTION = "bastion_write"  # execution option: this transaction will write


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL for ``url``, with PostgreSQL URLs pointed at the psycopg 3 driver.

    Raises ``ValueError`` for other databases; the message never shows the password.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(
            "database URL is not valid: use sqlite:///path/to/bastion.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from exc
    # From the name, not get_driver_name(): that loads the default driver (psycopg2 for
    # postgresql://), which is not installed.
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver != "psycopg":
        # psycopg 3 is the driver we ship; plain postgresql:// would mean psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite" and driver not in ("", "pysqlite"):
        raise ValueError(f"SQLite driver {driver!r} is not supported: use sqlite:///")
    elif backend not in ("sqlite", "postgres", "postgresql"):
        raise ValueError(
            f"database {parsed.render_as_string(hide_password=True)!r} is not supported: use "
            "sqlite:///path/to/bastion.db or postgresql+psycopg://user:password@host/dbname"
        )
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    return url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:")


def create_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (see the module docstring for what is set up and why)."""
    parsed = normalize_url(url)
    if parsed.drivername.startswith("sqlite"):
        return _sqlite_engine(parsed, echo=echo)
    return sa.create_engine(
        parsed,
        echo=echo,
        hide_parameters=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=30,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "bastion"},
    )


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    memory = is_memory_sqlite(url)
    kwargs: dict[str, Any] = {}
    if memory:
        # Every new connection to ":memory:" is a new, empty database: keep exactly one.
        kwargs["poolclass"] = StaticPool
    else:
        _create_private_file(Path(str(url.database)))
        # Keep as many connections as the server has threads using them at once: with the
        # default 5, every request beyond the fifth opened (PRAGMAs included) and closed a
        # connection of its own, ~4% of the server's CPU under load. SQLite connections cost
        # a file handle and a page cache each, nothing on a server.
        kwargs["pool_size"] = SQLITE_POOL_SIZE
        kwargs["max_overflow"] = SQLITE_POOL_OVERFLOW
    engine = sa.create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level: we emit BEGIN ourselves (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across application crashes in WAL mode; only a power loss
                # can lose the last commits, which costs a CI server a rerun, not corruption.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = bool(conn.get_execution_options().get(WRITE_OPTION, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _create_private_file(path: Path) -> None:
    """Create the database file (and its folder) readable by its owner only, if missing.

    SQLite gives its -wal and -shm files the permissions of the database file.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # created concurrently: fine
    os.close(fd)
