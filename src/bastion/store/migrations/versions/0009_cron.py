"""Cron jobs: the ``crons`` table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

One row per repository cron job (name unique within the repository). ``next`` is when it
fires next (Unix seconds, indexed for the due-jobs query); ``prev`` when it last fired;
``error`` why the last run made no build. Columns are spelled out rather than imported from
the models (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("expr", sa.String(length=255), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("next", sa.BigInteger(), nullable=False),
        sa.Column("prev", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repos.id"],
            name=op.f("fk_crons_repo_id_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crons")),
        sa.UniqueConstraint("repo_id", "name", name=op.f("uq_crons_repo_id_name")),
    )
    op.create_index(op.f("ix_crons_next"), "crons", ["next"])


def downgrade() -> None:
    op.drop_index(op.f("ix_crons_next"), table_name="crons")
    op.drop_table("crons")
