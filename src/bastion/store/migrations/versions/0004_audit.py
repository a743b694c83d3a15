"""Audit events: the ``audit_events`` table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Key ids of encrypted values need no column: format 2 of ``bastion.crypto.secretbox`` carries
the id of its key inside the ciphertext, so existing rows (format 1) stay valid as they are and
``bastion secret rekey`` moves them to the current key and format 2 when the operator asks.
Columns are spelled out rather than imported from the models (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("repo", sa.String(length=511), nullable=False),
        sa.Column("build", sa.Integer(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=255), nullable=False),
        sa.Column("runner", sa.String(length=255), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created"), "audit_events", ["created"])
    op.create_index(op.f("ix_audit_events_kind"), "audit_events", ["kind"])
    op.create_index(op.f("ix_audit_events_repo"), "audit_events", ["repo"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_repo"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_kind"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_created"), table_name="audit_events")
    op.drop_table("audit_events")
