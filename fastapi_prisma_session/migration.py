"""Alembic operations that create and drop the session table.

The repository's own revision calls these, and so can a revision in an application's Alembic tree::

    from fastapi_prisma_session import migration

    def upgrade() -> None:
        migration.upgrade()            # or migration.upgrade(table_name="sessions")

    def downgrade() -> None:
        migration.downgrade()
"""

from __future__ import annotations

from alembic import op

from .models import DEFAULT_TABLE_NAME, session_table


def upgrade(table_name: str = DEFAULT_TABLE_NAME) -> None:
    table = session_table(table_name)
    op.create_table(
        table.name,
        *(column._copy() for column in table.columns),
        table.primary_key._copy(),
    )
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        op.create_index(str(index.name), table.name, [c.name for c in index.columns], unique=index.unique)


def downgrade(table_name: str = DEFAULT_TABLE_NAME) -> None:
    op.drop_table(table_name)
