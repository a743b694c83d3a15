"""Running the Alembic migrations from code, from the package's own files: no alembic.ini,
no working-directory assumptions, so it works from a checkout and from an installed wheel."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    """An Alembic config whose env.py runs on ``connection``."""
    config = Config()
    # Config values go through configparser interpolation: a "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema on ``connection`` to the newest revision; nothing when it is there."""
    command.upgrade(alembic_config(connection), "head")


def head_revision() -> str:
    """The newest revision id of the migrations shipped with this version of Bastion."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def next_revision_id() -> str:
    """``0002`` after ``0001``: ids that sort in the order the revisions apply."""
    numbers = [
        int(m.group(1))
        for path in (MIGRATIONS_DIR / "versions").glob("*.py")
        if (m := re.match(r"^(\d{4})_", path.name))
    ]
    return f"{max(numbers, default=0) + 1:04d}"
