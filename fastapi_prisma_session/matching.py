"""Finding sessions by what their data holds (`destroy_all(user_id=42)`, `matching(user_id=42)`).

A session matches when its data has each given key at the top level, with a value equal to the given
one as JSON values compare: `True` is not `1`, `"42"` is not `42`, `1` is `1.0`, and lists and objects
compare element by element. Where the database can say that (PostgreSQL's jsonb) it is one statement;
on SQLite, for data that is not JSON, and when a row the database cannot read as jsonb (invalid JSON,
a `\\u0000`) makes it refuse the statement, the rows are compared here in Python instead.

With the store's `user_key` option, a match on that key goes through an index on the key's value in
`data` (see the dialects' `user_key_*`): one index lookup instead of reading every row. The rows it
finds are the same: where the index's value is not the match itself (SQLite), or the database could not
read a row as JSON, the rows it finds are compared here in Python.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import DBAPIError

from .dialects.base import NOT_INDEXED, UNREADABLE_ONLY
from .durations import utcnow
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Executable, Result

    from .database import Database
    from .dialects import SQLDialect
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


class UserKeyIndex:
    """The statements that find a user's sessions through the user-key index (`user_key=`): the rows
    whose key holds a value, and the few whose data the database cannot read as JSON, which only Python
    can match. Both are index lookups."""

    def __init__(self, sql: SQLDialect, key: str) -> None:
        self.key = key
        self.exact = sql.user_key_exact
        c = sql.table.c
        value = sql.user_key_value(key)
        holds = value == sql.user_key_parameter("user_key_value")
        # Candidates: the rows holding the value and the unreadable ones, which matching.py checks.
        candidates = value.in_([sql.user_key_parameter("user_key_value"), sql.user_key_unreadable()])
        self.candidates: Executable = select(c.sid, c.data, c.expiresAt).where(candidates)
        self.live_candidates: Executable = select(c.sid, c.data, c.expiresAt).where(
            candidates, c.expiresAt > bindparam("now")
        )
        unreadable = value == sql.user_key_unreadable()
        self.unreadable: Executable = select(c.sid, c.data, c.expiresAt).where(unreadable)
        self.live_unreadable: Executable = select(c.sid, c.data, c.expiresAt).where(
            unreadable, c.expiresAt > bindparam("now")
        )
        # Where the index's value is the match itself, "log out everywhere" is one DELETE.
        self.delete: Executable = delete(sql.table).where(holds)
        self.delete_returning: Executable = sql.deleted(delete(sql.table).where(holds))


class DataMatcher:
    """Runs matches on one store's table."""

    def __init__(
        self,
        database: Database,
        serializer: Serializer,
        parse: Parse,
        log: StoreLog,
        *,
        is_json: bool,
        user_key: str | None = None,
    ) -> None:
        self._database = database
        self._serializer = serializer
        self._parse = parse
        self._log = log
        self._is_json = is_json
        self._index = None if user_key is None else UserKeyIndex(database.sql, user_key)

    def _lookup(self, match: dict[str, Any]) -> dict[str, Any] | None:
        """The user-key index's parameter for `match`; {} when only the rows it marks unreadable can
        match; None when the index cannot answer it."""
        index = self._index
        if index is None or index.key not in match:
            return None
        try:
            lookup = self._database.sql.user_key_lookup(match[index.key], self._serializer.dumps)
        except (TypeError, ValueError):  # not JSON (NaN, an object): no row holds it, as without the index
            return None
        if lookup is NOT_INDEXED:
            return None
        return {} if lookup is UNREADABLE_ONLY else {"user_key_value": lookup}

    async def _indexed(self, statement: Executable, params: dict[str, Any]) -> Result[*tuple[Any, ...]]:
        with self._index_needed():
            return await self._database.execute(statement, params)

    @contextlib.contextmanager
    def _index_needed(self) -> Iterator[None]:
        """Turns the database's "no such function" (PostgreSQL) or "no such column" (MySQL) into what to
        run to add the user-key index."""
        try:
            yield
        except DBAPIError as error:
            if self._index is None or not self._database.sql.user_key_missing(error.orig):
                raise
            key = self._index.key
            raise ConfigurationError(
                f"user_key={key!r} needs its index in the database: run `python -m fastapi_prisma_session "
                f"migrate --user-key {key}`, or call migration.add_user_key_index({key!r}) in a revision "
                "of your own Alembic project"
            ) from error

    def _matched(self, result: Result[*tuple[Any, ...]], match: dict[str, Any]) -> Found:
        found = []
        for sid, text, expires_at in result.all():
            data = self._parse(sid, text)
            if data is not None and matches(data, match):
                found.append((sid, data, expires_at))
        return found

    async def delete(self, match: dict[str, Any], delete: Delete, destroy: Destroy) -> int:
        """Deletes the matching rows, expired or not, with `delete` in one statement where SQL can match
        them, else with `destroy(sids)`; returns how many went."""
        lookup = self._lookup(match)
        if lookup is not None:
            return await self._delete_indexed(match, lookup, delete, destroy)
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

    async def _delete_indexed(
        self, match: dict[str, Any], lookup: dict[str, Any], delete: Delete, destroy: Destroy
    ) -> int:
        index = self._index
        assert index is not None
        removed = 0
        if not lookup:  # a value only the rows the index cannot read can hold
            others = self._matched(await self._indexed(index.unreadable, {}), match)
        elif index.exact and len(match) == 1:
            with self._index_needed():
                removed = await delete(index.delete, index.delete_returning, lookup)
            others = self._matched(await self._indexed(index.unreadable, {}), match)
        else:
            others = self._matched(await self._indexed(index.candidates, lookup), match)
        sids = [sid for sid, *_ in others]
        if sids:
            await destroy(sids)
        return removed + len(sids)

    async def select(self, match: dict[str, Any]) -> Found:
        """The live matching rows: (sid, data, expiresAt)."""
        lookup = self._lookup(match)
        if lookup is not None:
            assert self._index is not None
            params = {**lookup, "now": utcnow()}
            statement = self._index.live_candidates if lookup else self._index.live_unreadable
            return self._matched(await self._indexed(statement, params), match)
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
        # An expiry that cannot be read (None, or text the driver could not make a datetime) is no live
        # session.
        return [
            found
            for found in self._matched(result, match)
            if not live_only or (isinstance(found[2], datetime) and found[2] > now)
        ]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
