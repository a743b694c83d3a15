"""Identity: forge accounts of users, login sessions, repository permissions mirrored from the forge.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

(Being written in this session; until then it changes nothing.)
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
