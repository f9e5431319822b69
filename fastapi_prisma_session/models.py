"""The `Session` table, column for column the one `prisma migrate` creates for the seed's model.

Each database gets Prisma's own types for it: on PostgreSQL `TEXT` and `TIMESTAMP(3)`; on MySQL and
MariaDB `VARCHAR(191)` (Prisma's `String`: the longest key an InnoDB index of utf8mb4 held), the
`MEDIUMTEXT` that prisma-session-store's README asks for as `@db.MediumText`, `DATETIME(3)`, and the
table in `utf8mb4` / `utf8mb4_unicode_ci`; on SQLite `TEXT` and `DATETIME`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, MetaData, PrimaryKeyConstraint, Table, Text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import quoted_name
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .dialects.mysql import NAMES as MYSQL_NAMES
from .dialects.sqlite.datetimes import EPOCH, parse_sqlite_datetime, sqlite_datetime_text
from .sqltext import DEFAULT_TABLE_NAME, EXPIRES, EXPIRES_AT, check_names


class _StoredSQLiteDateTime(sqlite.DATETIME):
    """SQLite's DATETIME column type, with the value handed over as stored (text or a number), not
    through SQLAlchemy's text-only conversion."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class SQLiteDateTime(TypeDecorator[datetime]):
    """Prisma's DateTime on SQLite: writes Prisma's adapter text, reads every encoding Prisma writes."""

    impl = _StoredSQLiteDateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return sqlite_datetime_text(value) if isinstance(value, datetime) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else parse_sqlite_datetime(value)


MYSQL_DIALECTS = MYSQL_NAMES
# Prisma's DateTime: TIMESTAMP(3) without time zone on PostgreSQL, DATETIME(3) on MySQL, holding UTC; on
# SQLite a DATETIME column holding text or integer milliseconds.
PrismaDateTime = (
    DateTime()
    .with_variant(postgresql.TIMESTAMP(precision=3), "postgresql")
    .with_variant(mysql.DATETIME(fsp=3), *MYSQL_DIALECTS)
    .with_variant(SQLiteDateTime(), "sqlite")
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
        Index(f"{DEFAULT_TABLE_NAME}_{EXPIRES_AT}_idx", EXPIRES_AT),
        MYSQL_TABLE_OPTIONS,
    )

    id: str = Field(sa_column=Column("id", PrismaString, nullable=False))
    sid: str = Field(sa_column=Column("sid", PrismaString, nullable=False))
    data: str = Field(sa_column=Column("data", PrismaLongString, nullable=False))
    expires_at: datetime = Field(sa_column=Column(EXPIRES_AT, PrismaDateTime, nullable=False))


def session_table(
    name: str = DEFAULT_TABLE_NAME, metadata: MetaData | None = None, expires_column: str = EXPIRES_AT
) -> Table:
    """The session table under `name`, with Prisma's constraint and index names derived from it.

    `expires_column` is the expiry column's name in the database (`expires` for prisma-session-store
    2.x's model); its key stays `expiresAt`, so `table.c.expiresAt` is the expiry column either way."""
    check_names(name, expires_column)
    base: Table = SessionRecord.__table__  # type: ignore[attr-defined]
    if name == DEFAULT_TABLE_NAME and metadata is None and expires_column == EXPIRES_AT:
        return base
    options: dict[str, Any] = MYSQL_TABLE_OPTIONS
    columns = [
        Column(expires_column, PrismaDateTime, key=EXPIRES_AT, nullable=False)
        if column.key == EXPIRES_AT
        else column._copy()
        for column in base.columns
    ]
    table = Table(
        name,
        metadata if metadata is not None else MetaData(),
        *columns,
        PrimaryKeyConstraint("id", name=f"{name}_pkey"),
        **options,
    )
    for index in base.indexes:
        # Prisma names an index after the table and the database names of its columns.
        keys = [column.key for column in index.columns]
        suffix = "_".join(table.c[key].name for key in keys) + ("_key" if index.unique else "_idx")
        Index(
            quoted_name(f"{name}_{suffix}", quote=None), *(table.c[key] for key in keys), unique=index.unique
        )
    return table


__all__ = [
    "DEFAULT_TABLE_NAME",
    "EPOCH",
    "EXPIRES",
    "EXPIRES_AT",
    "MYSQL_DIALECTS",
    "PrismaDateTime",
    "SQLiteDateTime",
    "SessionRecord",
    "parse_sqlite_datetime",
    "session_table",
    "sqlite_datetime_text",
]
