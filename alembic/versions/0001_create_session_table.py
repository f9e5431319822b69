"""Create the Session table, as `prisma migrate` creates it for prisma-session-store's model.

Revision ID: 0001_session_table
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi_prisma_session import migration

revision: str = "0001_session_table"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    migration.upgrade()


def downgrade() -> None:
    migration.downgrade()
