"""Alembic's environment: runs the migrations on the connection ``Store.migrate()`` hands over
in ``config.attributes["connection"]``. There is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from bastion.store.models import Base

# Any constant will do: it only has to be the same for every Bastion process migrating.
_PG_MIGRATION_LOCK = 0x62617374  # "bast"


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode rewrites such changes as table copies.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two servers starting at once against one database: the second waits here and
            # then finds nothing to do, instead of both creating the same tables.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "bastion's migrations run through Store.migrate() or `python -m "
            "bastion.store.migrations`, which pass a connection; offline (--sql) mode is not "
            "supported"
        )
    run_migrations(connection)


_main()
