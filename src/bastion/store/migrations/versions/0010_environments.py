"""Deployment environments: the targets builds are promoted or rolled back to, each with the
branches that may be deployed there and who must approve a deployment.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

A repository without an ``environments`` row for a target promotes to it as Drone does
(write access, no approval); a row adds the rules: ``branches`` (globs; empty = any),
``approval`` (deployments wait for an approval) and ``approvers`` (logins; empty = anyone
with write access but the promoter).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("branches", sa.JSON(), nullable=False),
        sa.Column("approval", sa.Boolean(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repos.id"],
            name=op.f("fk_environments_repo_id_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("repo_id", "name", name=op.f("uq_environments_repo_id_name")),
    )


def downgrade() -> None:
    op.drop_table("environments")
