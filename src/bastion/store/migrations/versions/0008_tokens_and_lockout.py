"""API tokens (names, scopes, expiry, rotation) and failed-authentication tracking (rate limits, lockout).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

(Being written in this session; until then it changes nothing.)
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
