"""Approval modes: which builds of a repository wait for an approval, and who may give it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

``repos.approval_mode`` is ``none``, ``forks``, ``pull_requests`` or ``all_events``, or ""
for the server's default (``BASTION_APPROVAL_MODE``, itself ``forks`` unless set); existing
repositories get "" and so follow the server. ``repos.approvers``: the logins that may
approve (empty: anyone with write access). ``repos.prevent_self_approval`` (default true):
the author or sender of a change may not approve it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "repos",
        sa.Column("approval_mode", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column("repos", sa.Column("approvers", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "repos",
        sa.Column("prevent_self_approval", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    # Plain DROP COLUMN, not a batch: re-creating ``repos`` on SQLite would cascade-delete
    # the rows that refer to it (see 0005).
    for column in ("prevent_self_approval", "approvers", "approval_mode"):
        op.execute(sa.text(f"ALTER TABLE repos DROP COLUMN {column}"))
