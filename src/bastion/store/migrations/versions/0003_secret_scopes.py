"""Secret scopes and filters: organisation and global secrets, branch / event / image filters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

``repo_secrets`` gains its filters (JSON lists: ``branches``, ``events``, ``images``; empty
means "no restriction"), when and by which build it was last handed out, and when its value
last changed (``rotated``; 0 for older rows, whose ``updated`` stands in). Existing secrets
get empty filters, so they reach exactly the builds they reached before, and their ciphertexts
need no change: a repository secret without filters may still carry the associated data of
revisions 0001 / 0002, which the store tries after the current one (see ``secret_store``).
``shared_secrets`` holds organisation (scope ``org``, namespace = repository owner) and global
(scope ``global``, namespace ``""``) secrets, with the same filters.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FILTERS = ("branches", "events", "images")


def upgrade() -> None:
    with op.batch_alter_table("repo_secrets") as batch:
        for name in _FILTERS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("last_used", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("last_build", sa.String(length=526), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("rotated", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "shared_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("pull_request", sa.Boolean(), nullable=False),
        *[sa.Column(name, sa.JSON(), nullable=False) for name in _FILTERS],
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("last_used", sa.BigInteger(), nullable=False),
        sa.Column("last_build", sa.String(length=526), nullable=False),
        sa.Column("rotated", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shared_secrets")),
        sa.UniqueConstraint(
            "scope", "namespace", "name", name=op.f("uq_shared_secrets_scope_namespace_name")
        ),
    )
    op.create_index(
        op.f("ix_shared_secrets_namespace"), "shared_secrets", ["namespace"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_shared_secrets_namespace"), table_name="shared_secrets")
    op.drop_table("shared_secrets")
    # Repository secrets stored with filters are bound to them by their associated data:
    # without the columns they could never be decrypted again (nor be restricted), so they go.
    op.execute(
        sa.text(
            "DELETE FROM repo_secrets WHERE CAST(branches AS TEXT) <> '[]' "
            "OR CAST(events AS TEXT) <> '[]' OR CAST(images AS TEXT) <> '[]'"
        )
    )
    with op.batch_alter_table("repo_secrets") as batch:
        for name in ("rotated", "last_build", "last_used", *reversed(_FILTERS)):
            batch.drop_column(name)
