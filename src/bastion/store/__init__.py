"""Persistence: SQLAlchemy 2 models, Alembic migrations, repository functions returning the
dataclasses of ``bastion.store.types``. SQLite (WAL) by default, PostgreSQL supported."""
