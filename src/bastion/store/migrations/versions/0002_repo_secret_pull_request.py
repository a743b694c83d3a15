"""Repository secrets: the ``pull_request`` flag (may pull_request builds receive it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Existing secrets get ``false``: they stay out of pull_request builds, as before. Their
ciphertexts need no change: a secret without the flag keeps the associated data
``repo:<repo_id>:<name>``; only secrets stored with the flag set use ``repo-pr:...``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "repo_secrets",
        sa.Column("pull_request", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Secrets stored with the flag set are encrypted with the flag in their associated data:
    # without the column they could never be decrypted again, so they go with it.
    op.execute(sa.text("DELETE FROM repo_secrets WHERE pull_request"))
    with op.batch_alter_table("repo_secrets") as batch:
        batch.drop_column("pull_request")
