"""API tokens (names unique per user, rotation) and failed authentications (rate limits, lockout).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

A user's live (not revoked) tokens get distinct names, so that rotate and revoke can name
them: live duplicates already stored (two CLI tokens both called "cli") are renamed
``<name>-<id>`` first. ``auth_failures`` holds one row per failed authentication, keyed by a
hash of the source address or of the account name, counted in a sliding window;
``auth_lockouts`` holds the keys locked until a time. Both are in the database, not in memory,
so a lockout holds across a restart and between two servers sharing the database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tokens = sa.table(
        "tokens",
        sa.column("id", sa.Integer()),
        sa.column("user_id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("revoked", sa.Boolean()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(tokens.c.id, tokens.c.user_id, tokens.c.name)
        .where(tokens.c.revoked.is_(False))
        .order_by(tokens.c.id)
    ).all()
    seen: set[tuple[int, str]] = set()
    for token_id, user_id, name in rows:
        if (user_id, name) in seen:
            bind.execute(
                sa.update(tokens)
                .where(tokens.c.id == token_id)
                .values(name=f"{name[:200]}-{token_id}")
            )
        else:
            seen.add((user_id, name))
    op.create_index(
        "uq_tokens_user_name_live",
        "tokens",
        ["user_id", "name"],
        unique=True,
        sqlite_where=sa.text("revoked = 0"),
        postgresql_where=sa.text("NOT revoked"),
    )

    op.create_table(
        "auth_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_failures")),
    )
    op.create_index("ix_auth_failures_key_at", "auth_failures", ["key", "at"])
    op.create_index(op.f("ix_auth_failures_at"), "auth_failures", ["at"])

    op.create_table(
        "auth_lockouts",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("auth_lockouts")
    op.drop_index(op.f("ix_auth_failures_at"), table_name="auth_failures")
    op.drop_index("ix_auth_failures_key_at", table_name="auth_failures")
    op.drop_table("auth_failures")
    op.drop_index("uq_tokens_user_name_live", table_name="tokens")
