"""``python -m bastion.store.migrations revision MESSAGE DATABASE_URL``: autogenerate the next
revision from the difference between ``models.py`` and the database at ``DATABASE_URL``
(which is first migrated to the current head)."""

from __future__ import annotations

import sys

from alembic import command

from bastion.store.engine import create_engine
from bastion.store.migrate import alembic_config, next_revision_id


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "revision":
        print(__doc__, file=sys.stderr)
        return 2
    _, message, url = argv
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            command.revision(config, message=message, autogenerate=True, rev_id=next_revision_id())
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
