"""PostgreSQL: jsonb merges and containment, ON CONFLICT upserts, SKIP LOCKED prune batches, and an
advisory lock so that one process prunes at a time across processes and hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Text, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql

from .base import Serialize, SQLDialect

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import ColumnElement, Executable

MERGE = (
    "UPDATE {table} SET "
    "data = ((data::jsonb - CAST(:removed AS text[])) || CAST(:patch AS jsonb))::text, "
    '"expiresAt" = :expires WHERE sid = :session_id'
)


class Dialect(SQLDialect):
    name = "postgresql"

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(postgresql.insert)

    def build_merge(self) -> Executable:
        return self.merge_statement(MERGE, postgresql.ARRAY(Text))

    def merge_params(self, sid: str, patch: str, removed: list[str], expires: datetime) -> dict[str, Any]:
        return {"session_id": sid, "patch": patch, "removed": removed, "expires": expires}

    def expired_ids(self, limit: int) -> Any:
        c = self.table.c
        # SKIP LOCKED: concurrent pruners share the work instead of waiting on each other's rows.
        return (
            select(c.id)
            .where(c.expiresAt <= bindparam("now"))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    def matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[ColumnElement[Any], dict[str, Any]]:
        match_json = cast(bindparam("match", type_=Text), postgresql.JSONB)
        return cast(self.table.c.data, postgresql.JSONB).op("@>")(match_json), {"match": serialize(match)}

    def prune_lock(self) -> tuple[Executable, Executable]:
        key = bindparam("key", type_=BigInteger)
        return select(func.pg_try_advisory_lock(key)), select(func.pg_advisory_unlock(key))
