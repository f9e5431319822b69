"""The `Session` table, column for column the one `prisma migrate` creates for the seed's model.

Each database gets Prisma's own types for it: on PostgreSQL `TEXT` and `TIMESTAMP(3)`; on MySQL and
MariaDB `VARCHAR(191)` (Prisma's `String`: the longest key an InnoDB index of utf8mb4 held), the
`MEDIUMTEXT` that prisma-session-store's README asks for as `@db.MediumText`, `DATETIME(3)`, and the
table in `utf8mb4` / `utf8mb4_unicode_ci`; on SQLite `TEXT` and `DATETIME`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, MetaData, PrimaryKeyConstraint, Table, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.sql.elements import quoted_name
from sqlmodel import Field, SQLModel

from .exceptions import ConfigurationError

DEFAULT_TABLE_NAME = "Session"

MYSQL_DIALECTS = ("mysql", "mariadb")
# Prisma's DateTime: TIMESTAMP(3) without time zone on PostgreSQL, DATETIME(3) on MySQL, holding UTC.
PrismaDateTime = (
    DateTime()
    .with_variant(postgresql.TIMESTAMP(precision=3), "postgresql")
    .with_variant(mysql.DATETIME(fsp=3), *MYSQL_DIALECTS)
)
# Prisma's String: TEXT, but VARCHAR(191) on MySQL, where a key cannot be TEXT.
PrismaString = Text().with_variant(mysql.VARCHAR(191), *MYSQL_DIALECTS)
# The `data` column: `String @db.MediumText` on MySQL (TEXT there holds only 64 KiB).
PrismaLongString = Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL_DIALECTS)
# Prisma's table options on MySQL.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


class SessionRecord(SQLModel, table=True):
    """One stored session. Named `SessionRecord` so that `Session` stays the request's session object."""

    __tablename__ = DEFAULT_TABLE_NAME
    # Prisma's names: <table>_pkey, <table>_<field>_key for @unique, <table>_<field>_idx for @@index.
    __table_args__ = (
        PrimaryKeyConstraint("id", name=f"{DEFAULT_TABLE_NAME}_pkey"),
        Index(f"{DEFAULT_TABLE_NAME}_sid_key", "sid", unique=True),
        Index(f"{DEFAULT_TABLE_NAME}_expiresAt_idx", "expiresAt"),
        MYSQL_TABLE_OPTIONS,
    )

    id: str = Field(sa_column=Column("id", PrismaString, nullable=False))
    sid: str = Field(sa_column=Column("sid", PrismaString, nullable=False))
    data: str = Field(sa_column=Column("data", PrismaLongString, nullable=False))
    expires_at: datetime = Field(sa_column=Column("expiresAt", PrismaDateTime, nullable=False))


def session_table(name: str = DEFAULT_TABLE_NAME, metadata: MetaData | None = None) -> Table:
    """The session table under `name`, with Prisma's constraint and index names derived from it."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError("table_name must be a non-empty string")
    base: Table = SessionRecord.__table__  # type: ignore[attr-defined]
    if name == DEFAULT_TABLE_NAME and metadata is None:
        return base
    table = base.to_metadata(metadata if metadata is not None else MetaData(), name=name)
    table.primary_key.name = f"{name}_pkey"
    for index in table.indexes:
        index.name = quoted_name(name + str(index.name).removeprefix(DEFAULT_TABLE_NAME), quote=None)
    return table
