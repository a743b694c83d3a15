"""Secret scopes and filters: organisation and global secrets, branch / event / image filters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

(Being written in this session by the secrets-scopes work; until then it changes nothing.)
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
