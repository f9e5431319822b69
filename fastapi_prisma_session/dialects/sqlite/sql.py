"""SQLite: ON CONFLICT upserts and plain batches; one writer at a time needs no prune lock, and matching
by data is done in Python.

Prisma stores a DateTime on SQLite in one of two ways: integer milliseconds since the epoch (its Rust
engine, and the driver adapters' `unixepoch-ms`) or ISO-8601 text (the adapters' default, `…+00:00`, or
`…Z`). A table can hold both, and this package's rows from before 0.2 hold naive text
(`2026-11-28 06:20:13.315413`). SQLite orders every number before every text, and these texts do not
sort as the instants they stand for, so expiry is compared here as milliseconds since the epoch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, case, column, exists, func, literal_column, or_, select, table
from sqlalchemy.dialects import sqlite

from ..base import NOT_INDEXED, Serialize, SQLDialect, check_user_key, encodable, user_key_index_name

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable

# julianday() of 1970-01-01T00:00:00Z, and the milliseconds in a day (written into the SQL).
UNIX_EPOCH_JULIAN_DAY: ColumnElement[Any] = literal_column("2440587.5")
MS_PER_DAY: ColumnElement[Any] = literal_column("86400000")
# The storage classes of a number.
NUMBER: tuple[ColumnElement[Any], ...] = (literal_column("'integer'"), literal_column("'real'"))


def epoch_ms(text: ColumnElement[Any]) -> ColumnElement[Any]:
    """Milliseconds since the epoch of a date and time SQLite reads as text (NULL if it cannot)."""
    return func.round((func.julianday(text) - UNIX_EPOCH_JULIAN_DAY) * MS_PER_DAY)


# SQLite's integers; json_extract gives a larger JSON integer as a float.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Dialect(SQLDialect):
    name = "sqlite"

    def _expiry_ms(self) -> ColumnElement[Any]:
        column = self.table.c.expiresAt
        return case((func.typeof(column).in_(NUMBER), column), else_=epoch_ms(column))

    def _now(self) -> ColumnElement[Any]:
        # Bound through the column's type: the adapter's text, which julianday() reads.
        return bindparam("now", type_=self.table.c.expiresAt.type)

    def live(self) -> ColumnElement[bool]:
        return self._expiry_ms() > epoch_ms(self._now())

    def expired(self) -> ColumnElement[bool]:
        return self._expiry_ms() <= epoch_ms(self._now())

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(sqlite.insert)

    def expired_ids(self, limit: ColumnElement[int]) -> Any:
        c = self.table.c
        now = self._now()
        # Two ranges of the expiresAt index hold every expired row, so the batch never scans the table:
        # numbers up to now, and texts dated up to today (every text sorts after every number; a text
        # dated tomorrow or later is live, whether it has a T or a space after the date).
        candidates = or_(
            c.expiresAt <= epoch_ms(now),
            and_(
                c.expiresAt >= literal_column("''"), c.expiresAt < func.date(now, literal_column("'+1 day'"))
            ),
        )
        return select(c.id).where(candidates, self.expired()).limit(limit).scalar_subquery()

    # The user key: an expression index on json_extract, guarded by json_valid so that no text fails a
    # write. json_extract gives SQL values (true is 1, an object is its text), so the index finds
    # candidates that matching.py then compares as JSON.
    def user_key_value(self, key: str, data: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        column = self.table.c.data if data is None else data
        path: ColumnElement[str] = literal_column(f"'$.{check_user_key(key)}'")
        return case(
            (func.json_valid(column), func.json_extract(column, path)), else_=self.user_key_unreadable()
        )

    def user_key_index_exists(self, key: str) -> Executable:
        schema = table("sqlite_master", column("type"), column("name"))
        name = user_key_index_name(self.table.name, key)
        return select(exists().where(schema.c.type == "index", schema.c.name == name))

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
        if isinstance(value, str) and "\x00" not in value and encodable(value):
            # json_extract may cut a string short at a \u0000 (SQLite 3.40 does): such a value is matched
            # without the index.
            return value
        # JSON null is NULL to json_extract, and lists and objects are text: the index cannot find them.
        return NOT_INDEXED

    def matching(self, match: dict[str, Any], serialize: Serialize) -> None:
        # SQLite compares JSON as text ('1.0' is not '1', key order counts): matching.py compares values.
        return None
