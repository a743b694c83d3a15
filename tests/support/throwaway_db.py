"""A PostgreSQL database of a test's own: created empty, dropped afterwards with whatever
is still connected to it.

The drop uses ``WITH (FORCE)``. PostgreSQL then terminates the remaining sessions, which
may include an autovacuum worker that just started in the database; that needs
``pg_signal_backend`` (``scripts/postgres.sh`` grants it to the test role), and a drop that
still collides with a starting session is retried for a few seconds instead of failing the
test at teardown.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

_DROP_ATTEMPTS = 20
_DROP_PAUSE = 0.25


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new database named ``<prefix><random>``."""
    admin = make_url(admin_url)
    # psycopg takes the libpq form of the URL, without SQLAlchemy's "+psycopg".
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        for attempt in range(_DROP_ATTEMPTS):
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(drop)
                break
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if attempt == _DROP_ATTEMPTS - 1:
                    raise
                time.sleep(_DROP_PAUSE)
