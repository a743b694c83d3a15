"""Persistence: SQLAlchemy 2 models, Alembic migrations, repository functions returning the
dataclasses of ``bastion.store.types``. SQLite (WAL) by default, PostgreSQL supported.

``Store`` (``repository.py``) is the whole interface; ``models``, ``engine`` and ``migrate``
are its internals and nothing outside this package uses them.
"""

from bastion.store.errors import Conflict, NotFound, StoreError
from bastion.store.repository import Store

__all__ = ["Conflict", "NotFound", "Store", "StoreError"]
