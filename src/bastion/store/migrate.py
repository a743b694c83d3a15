"""Running the Alembic migrations from code, from the package's own files: no alembic.ini,
no working-directory assumptions, so it works from a checkout and from an installed wheel.

Alembic (with Mako) costs a server ≈ 11 MB of memory for as long as it runs, and is needed
only when the schema is behind: it is imported inside the functions that use it, and
``Store.migrate`` skips them when the database is at ``shipped_head()`` already (revisions are
numbered, so the newest is the highest number; a test checks that Alembic agrees)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    """An Alembic config whose env.py runs on ``connection``."""
    from alembic.config import Config  # noqa: PLC0415 - see the module docstring

    config = Config()
    # Config values go through configparser interpolation: a "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema on ``connection`` to the newest revision; nothing when it is there."""
    from alembic import command  # noqa: PLC0415 - see the module docstring

    command.upgrade(alembic_config(connection), "head")


def head_revision() -> str:
    """The newest revision id of the migrations shipped with this version of Bastion, as
    Alembic reads it from the revisions' links."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see the module docstring

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _numbers() -> list[int]:
    return [
        int(m.group(1))
        for path in (MIGRATIONS_DIR / "versions").glob("*.py")
        if (m := re.match(r"^(\d{4})_", path.name))
    ]


def shipped_head() -> str:
    """The newest revision id by the files' numbers, without importing Alembic."""
    numbers = _numbers()
    if not numbers:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return f"{max(numbers):04d}"


def next_revision_id() -> str:
    """``0002`` after ``0001``: ids that sort in the order the revisions apply."""
    return f"{max(_numbers(), default=0) + 1:04d}"
