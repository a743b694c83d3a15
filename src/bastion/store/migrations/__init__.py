"""Alembic migrations of the store's schema, run by ``Store.migrate()`` (no alembic.ini).

To write a new revision, change ``bastion/store/models.py``, then let Alembic compare it with
an up-to-date database and review what it wrote::

    .venv/bin/python -m bastion.store.migrations revision "add foo" sqlite:///tmp/dev.db

Revisions are numbered ``0002_…``, ``0003_…``; each one must work on SQLite (Alembic's batch
mode is on, so ALTERs become table copies there) and on PostgreSQL.
"""
