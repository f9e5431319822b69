"""PostgreSQL: matching by jsonb, ON CONFLICT upserts, SKIP LOCKED prune batches, and an
advisory lock so that one process prunes at a time across processes and hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Text, and_, bindparam, case, cast, func, literal_column, null, select
from sqlalchemy.dialects import postgresql

from .base import Serialize, SQLDialect

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable


class Dialect(SQLDialect):
    name = "postgresql"

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(postgresql.insert)

    def readable_expiry(self) -> ColumnElement[Any]:
        # TIMESTAMP reaches 4713 BC and 294276 AD, Python's datetime years 1 to 9999: asyncpg fails the
        # whole statement (OverflowError) on such a row. ±infinity it reads as datetime.min and max.
        column = self.table.c.expiresAt
        year = func.extract("year", column)
        outside = and_(func.isfinite(column), ~year.between(literal_column("1"), literal_column("9999")))
        return case((outside, null()), else_=column).label(column.key)

    def expired_ids(self, limit: int) -> Any:
        c = self.table.c
        # SKIP LOCKED: concurrent pruners share the work instead of waiting on each other's rows.
        return (
            select(c.id)
            .where(self.expired())
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    def matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[ColumnElement[Any], dict[str, Any]]:
        # Each key's value equals the given one as jsonb: true is not 1 and "42" is not 42, and unlike
        # containment (@>) ["admin"] does not match ["admin", "user"].
        data = cast(self.table.c.data, postgresql.JSONB)
        params: dict[str, Any] = {}
        checks = []
        for n, (key, value) in enumerate(match.items()):
            params[f"key{n}"], params[f"value{n}"] = key, serialize(value)
            value_json = cast(bindparam(f"value{n}", type_=Text), postgresql.JSONB)
            checks.append(data.op("->")(bindparam(f"key{n}", type_=Text)) == value_json)
        return and_(*checks), params

    def prune_lock(self) -> Executable:
        # A transaction-level lock: it ends with the batch's transaction, whatever the pooler does.
        return select(func.pg_try_advisory_xact_lock(bindparam("key", type_=BigInteger)))
