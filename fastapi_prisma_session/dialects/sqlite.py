"""SQLite: ON CONFLICT upserts and plain batches; one writer at a time needs no prune lock, and matching
by data is done in Python."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, func, literal_column, select
from sqlalchemy.dialects import sqlite

from .base import NOT_INDEXED, Serialize, SQLDialect, check_user_key

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable

# SQLite's integers; json_extract gives a larger JSON integer as a float.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _encodable(text: str) -> bool:
    """Whether `text` can be bound (a lone surrogate cannot: it has no UTF-8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Dialect(SQLDialect):
    name = "sqlite"

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(sqlite.insert)

    def expired_ids(self, limit: ColumnElement[int]) -> Any:
        c = self.table.c
        return select(c.id).where(c.expiresAt <= bindparam("now")).limit(limit).scalar_subquery()

    # The user key: an expression index on json_extract, guarded by json_valid so that no text fails a
    # write. json_extract gives SQL values (true is 1, an object is its text), so the index finds
    # candidates that matching.py then compares as JSON.
    def user_key_value(self, key: str, data: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        column = self.table.c.data if data is None else data
        path: ColumnElement[str] = literal_column(f"'$.{check_user_key(key)}'")
        return case(
            (func.json_valid(column), func.json_extract(column, path)), else_=self.user_key_unreadable()
        )

    def user_key_unreadable(self) -> ColumnElement[Any]:
        # A blob: json_extract never gives one.
        return literal_column("X'00'")

    def user_key_lookup(self, value: Any, serialize: Serialize) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
            return value
        if isinstance(value, int) and abs(value) < 2**1023:
            return float(value)
        if isinstance(value, float) and math.isfinite(value):
            return value
        if isinstance(value, str) and _encodable(value):
            return value
        # JSON null is NULL to json_extract, and lists and objects are text: the index cannot find them.
        return NOT_INDEXED

    def matching(self, match: dict[str, Any], serialize: Serialize) -> None:
        # SQLite compares JSON as text ('1.0' is not '1', key order counts): matching.py compares values.
        return None
