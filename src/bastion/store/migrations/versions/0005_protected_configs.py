"""Protected repositories: a configuration signing key per repository, and why a build is held.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

``repos.signing_key`` is the AES-GCM ciphertext (associated data ``repo-signing-key:<id>``)
of the key that signs the repository's configuration (``bastion sign`` / ``drone sign``); it
is made on first use, so existing repositories need nothing. ``builds.hold`` says why a
``blocked`` build waits for an approval (``signature`` for now; "" for a build that is not
held), which decides who may approve it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("repos", sa.Column("signing_key", sa.LargeBinary(), nullable=True))
    op.add_column(
        "builds",
        sa.Column("hold", sa.String(length=32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it), not a batch operation: on
    # SQLite a batch re-creates the table, and re-creating ``repos`` would cascade-delete every
    # row that refers to it (secrets, builds...).
    op.execute(sa.text("ALTER TABLE builds DROP COLUMN hold"))
    op.execute(sa.text("ALTER TABLE repos DROP COLUMN signing_key"))
