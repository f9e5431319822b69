"""SQLite: ON CONFLICT upserts and plain batches; one writer at a time needs no prune lock, and matching
by data is done in Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite

from .base import Serialize, SQLDialect

if TYPE_CHECKING:
    from sqlalchemy import Executable


class Dialect(SQLDialect):
    name = "sqlite"

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(sqlite.insert)

    def expired_ids(self, limit: int) -> Any:
        c = self.table.c
        return select(c.id).where(c.expiresAt <= bindparam("now")).limit(limit).scalar_subquery()

    def matching(self, match: dict[str, Any], serialize: Serialize) -> None:
        # SQLite compares JSON as text ('1.0' is not '1', key order counts): matching.py compares values.
        return None
