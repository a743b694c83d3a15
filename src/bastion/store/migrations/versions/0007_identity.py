"""Identity: forge accounts of users, login sessions, logins in progress, repository permissions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

``forge_accounts`` links a user to the forge account they log in with (one each way) and keeps
the OAuth token that reads their permissions, encrypted. ``sessions`` holds browser sessions
by the hash of their id, with the hash of their CSRF token and their idle and absolute ends.
``login_states`` holds OAuth logins in progress and one-time local login links, by hash, used
once. ``repo_permissions`` holds each user's scopes on a repository, mirrored from the forge
or granted by an administrator. Columns are spelled out rather than imported (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "forge_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("forge", sa.String(length=32), nullable=False),
        sa.Column("forge_user_id", sa.String(length=255), nullable=False),
        sa.Column("forge_login", sa.String(length=255), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=True),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        _user_fk("forge_accounts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forge_accounts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_forge_accounts_user_id")),
        sa.UniqueConstraint(
            "forge", "forge_user_id", name=op.f("uq_forge_accounts_forge_forge_user_id")
        ),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_hash", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        _user_fk("sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("hash", name=op.f("uq_sessions_hash")),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"])
    op.create_table(
        "login_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("forge", sa.String(length=32), nullable=False),
        sa.Column("verifier", sa.LargeBinary(), nullable=True),
        sa.Column("next_url", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        _user_fk("login_states"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_states")),
        sa.UniqueConstraint("hash", name=op.f("uq_login_states_hash")),
    )
    op.create_index(op.f("ix_login_states_expires"), "login_states", ["expires"])
    op.create_table(
        "repo_permissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("fetched", sa.BigInteger(), nullable=False),
        _user_fk("repo_permissions"),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repos.id"],
            name=op.f("fk_repo_permissions_repo_id_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repo_permissions")),
        sa.UniqueConstraint("user_id", "repo_id", name=op.f("uq_repo_permissions_user_id_repo_id")),
    )
    op.create_index(op.f("ix_repo_permissions_user_id"), "repo_permissions", ["user_id"])
    op.create_index(op.f("ix_repo_permissions_repo_id"), "repo_permissions", ["repo_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_repo_permissions_repo_id"), table_name="repo_permissions")
    op.drop_index(op.f("ix_repo_permissions_user_id"), table_name="repo_permissions")
    op.drop_table("repo_permissions")
    op.drop_index(op.f("ix_login_states_expires"), table_name="login_states")
    op.drop_table("login_states")
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("forge_accounts")
