"""Finding sessions by what their data holds (`destroy_all(user_id=42)`, `matching(user_id=42)`).

A session matches when its data has each given key at the top level, with a value equal to the given
one as JSON values compare: `True` is not `1`, `"42"` is not `42`, `1` is `1.0`, and lists and objects
compare element by element. Where the database can say that (PostgreSQL's jsonb) it is one statement;
on SQLite, for data that is not JSON, and when a row the database cannot read as jsonb (invalid JSON,
a `\\u0000`) makes it refuse the statement, the rows are compared here in Python instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from .durations import utcnow

if TYPE_CHECKING:
    from .database import Database
    from .logs import StoreLog
    from .rows import SessionData
    from .serializers import Serializer

# PostgreSQL refusing to read a row as jsonb: invalid JSON text (22P02), a \u0000 it cannot hold (22P05).
UNREADABLE_AS_JSONB = ("22P02", "22P05")

Parse = Callable[[str, str], "SessionData | None"]
#: `delete(plain, returning, params)`: runs a DELETE and returns how many rows went.
Delete = Callable[[Any, Any, dict[str, Any]], Awaitable[int]]
Destroy = Callable[[list[str]], Awaitable[None]]
Found = list[tuple[str, "SessionData", datetime]]


def check_match(match: dict[str, Any], method: str, instead: str) -> None:
    if not match:
        raise ValueError(f"{method}() needs at least one key=value to match; {instead}")


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values, by JSON's types: a bool is not a number, a number not a string."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    return False


def matches(data: SessionData, match: dict[str, Any]) -> bool:
    return all(key in data and json_equal(data[key], value) for key, value in match.items())


class DataMatcher:
    """Runs matches on one store's table."""

    def __init__(
        self, database: Database, serializer: Serializer, parse: Parse, log: StoreLog, *, is_json: bool
    ) -> None:
        self._database = database
        self._serializer = serializer
        self._parse = parse
        self._log = log
        self._is_json = is_json

    async def delete(self, match: dict[str, Any], delete: Delete, destroy: Destroy) -> int:
        """Deletes the matching rows, expired or not, with `delete` in one statement where SQL can match
        them, else with `destroy(sids)`; returns how many went."""
        sql = self._database.sql
        in_sql = sql.delete_matching(match, self._serializer.dumps) if self._is_json else None
        if in_sql is not None:
            statement, params = in_sql
            try:
                return await delete(statement, sql.deleted(statement), params)  # type: ignore[arg-type]
            except DBAPIError as error:
                self._unless_unreadable(error)
        sids = [sid for sid, *_ in await self._in_python(match, live_only=False)]
        if sids:
            await destroy(sids)
        return len(sids)

    async def select(self, match: dict[str, Any]) -> Found:
        """The live matching rows: (sid, data, expiresAt)."""
        in_sql = self._database.sql.select_matching(match, self._serializer.dumps) if self._is_json else None
        if in_sql is not None:
            statement, params = in_sql
            try:
                result = await self._database.execute(statement, {**params, "now": utcnow()})
            except DBAPIError as error:
                self._unless_unreadable(error)
            else:
                found = []
                for sid, text, expires_at in result.all():
                    data = self._parse(sid, text)
                    if data is not None and expires_at is not None:  # None: an unreadable expiry
                        found.append((sid, data, expires_at))
                return found
        return await self._in_python(match, live_only=True)

    def _unless_unreadable(self, error: DBAPIError) -> None:
        """Re-raise `error` unless it is PostgreSQL refusing to read some row as jsonb."""
        if getattr(error.orig, "sqlstate", None) not in UNREADABLE_AS_JSONB:
            raise error
        # One such row fails the whole statement there: the caller matches in Python instead.
        table = self._database.table_name
        self._log(logging.WARNING, "a %s row cannot be read as jsonb; matching in Python", table)

    async def _in_python(self, match: dict[str, Any], *, live_only: bool) -> Found:
        sql = self._database.sql
        if self._is_json:
            # Only rows whose text names the first key can match: let the database skip the others.
            pattern = "%" + _like_escape(self._serializer.dumps(next(iter(match)))) + "%"
            result = await self._database.execute(sql.rows_with_keys_like, {"pattern": pattern})
        else:
            result = await self._database.execute(sql.all_rows, {})
        now = utcnow()
        found = []
        for sid, text, expires_at in result.all():
            if live_only and (not isinstance(expires_at, datetime) or expires_at <= now):
                continue
            data = self._parse(sid, text)
            if data is not None and matches(data, match):
                found.append((sid, data, expires_at))
        return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
