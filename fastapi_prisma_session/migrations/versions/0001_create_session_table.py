"""Create the Session table, as `prisma migrate` creates it for prisma-session-store's model.

Its expiry column is `expiresAt` (3.x's model), or `expires` (2.x's) with `--expires-column expires`.

A table that is already there is left as it is and only recorded, as adopted: one `prisma migrate` made
(when someone runs the migration anyway), or one this revision made when the repository's Alembic
recorded its revisions in `alembic_version` (before 0.2). It must have the session table's columns (with
the expiry column named as asked): any other table of that name is refused, and nothing is changed. The
downgrade drops only a table this revision created; an adopted one stays, with its rows.

Revision ID: 0001_session_table
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy import inspect

from fastapi_prisma_session import migration

revision: str = "0001_session_table"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table_name = migration.current_table_name()
    expires_column = migration.current_expires_column()
    if not context.is_offline_mode() and inspect(op.get_bind()).has_table(table_name):
        migration.adopt(table_name, expires_column)
        return
    migration.upgrade(table_name, expires_column)


def downgrade() -> None:
    table_name = migration.current_table_name()
    if migration.adopted(table_name):
        migration.leave_adopted(table_name)
        return
    migration.downgrade(table_name)
