"""Errors of the store. Database driver and SQLAlchemy exceptions never leave the store: they
are translated here, at the boundary, with the original kept as ``__cause__``.

::

    StoreError            the database failed or holds something it should not
    ├── NotFound          the user / repository / build / stage ... does not exist
    └── Conflict          it exists already, or a concurrent change won (unique key)

Messages name the object ("repository acme/web already exists") and never contain secret
values, token hashes or SQL parameters. The server maps NotFound to 404 and Conflict to 409.
"""

from __future__ import annotations


class StoreError(Exception):
    """The database failed, or a stored value could not be read back."""


class NotFound(StoreError):  # noqa: N818 - the name reads better at call sites
    """The object the call refers to does not exist."""


class Conflict(StoreError):  # noqa: N818
    """The object exists already, or a unique key is taken."""
