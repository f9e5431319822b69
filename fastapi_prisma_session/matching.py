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
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .dialects.common import NOT_INDEXED, UNREADABLE_ONLY
from .dialects.driver import Fault
from .durations import utcnow
from .exceptions import ConfigurationError
from .executor import StatementError

if TYPE_CHECKING:
    from sqlalchemy import Executable

    from .deleter import Deleter
    from .dialects.base import SQLDialect
    from .executor import Executor, Transaction
    from .logs import StoreLog
    from .rows import SessionData
    from .serializers import Serializer

Parse = Callable[[str, str], "SessionData | None"]
Found = list[tuple[str, "SessionData", datetime]]
Row = Sequence[Any]


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
        from sqlalchemy import bindparam, delete, select

        self.key = key
        self.exact = sql.user_key_exact
        c = sql.table.c
        value = sql.user_key_value(key)
        holds = value == sql.user_key_parameter("user_key_value")
        # Candidates: the rows holding the value and the unreadable ones, which matching.py checks.
        candidates = value.in_([sql.user_key_parameter("user_key_value"), sql.user_key_unreadable()])
        # (sid, data, expiresAt, id): what destroy_all deletes by id if it matches.
        self.candidates: Executable = select(c.sid, c.data, c.expiresAt, c.id).where(candidates)
        self.live_candidates: Executable = select(c.sid, c.data, c.expiresAt).where(
            candidates, c.expiresAt > bindparam("now")
        )
        unreadable = value == sql.user_key_unreadable()
        self.unreadable: Executable = select(c.sid, c.data, c.expiresAt, c.id).where(unreadable)
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
        executor: Executor,
        deleter: Deleter,
        serializer: Serializer,
        parse: Parse,
        log: StoreLog,
        *,
        is_json: bool,
        user_key: str | None = None,
        moves_change_ids: bool = False,
    ) -> None:
        self._executor = executor
        self._deleter = deleter
        self._serializer = serializer
        self._parse = parse
        self._log = log
        self._is_json = is_json
        self._user_key = user_key
        self._built_index: UserKeyIndex | None = None
        # A move (regenerate(keep_data=True)) gives a row a new id: the row ids derive from the sid.
        self._moves_change_ids = moves_change_ids
        # The candidates' statements FOR UPDATE, by the statement's id (`_delete_scanning`).
        self._locked: dict[int, Executable] = {}

    @property
    def _index(self) -> UserKeyIndex | None:
        """The user-key index's statements, built (with SQLAlchemy) on first use."""
        if self._user_key is not None and self._built_index is None:
            self._built_index = UserKeyIndex(self._executor.sql.full, self._user_key)
        return self._built_index

    def _lookup(self, match: dict[str, Any]) -> dict[str, Any] | None:
        """The user-key index's parameter for `match`; {} when only the rows it marks unreadable can
        match; None when the index cannot answer it."""
        index = self._index
        if index is None or index.key not in match:
            return None
        try:
            lookup = self._executor.sql.user_key_lookup(match[index.key], self._serializer.dumps)
        except (TypeError, ValueError):  # not JSON (NaN, an object): no row holds it, as without the index
            return None
        if lookup is NOT_INDEXED:
            return None
        return {} if lookup is UNREADABLE_ONLY else {"user_key_value": lookup}

    @contextlib.contextmanager
    def _index_needed(self) -> Iterator[None]:
        """Turns the database's "no such function" (PostgreSQL) or "no such column" (MySQL) into what to
        run to add the user-key index."""
        try:
            yield
        except StatementError as error:
            if self._index is None or error.fault is not Fault.MISSING_INDEX:
                raise
            key = self._index.key
            raise ConfigurationError(
                f"user_key={key!r} needs its index in the database: run `python -m fastapi_prisma_session "
                f"migrate --user-key {key}`, or call migration.add_user_key_index({key!r}) in a revision "
                "of your own Alembic project"
            ) from error

    def _matched(self, rows: list[Row], match: dict[str, Any]) -> list[Row]:
        """The rows (sid, data, expiresAt, ...) whose data matches."""
        found = []
        for row in rows:
            data = self._parse(row[0], row[1])
            if data is not None and matches(data, match):
                found.append(row)
        return found

    async def delete(self, match: dict[str, Any]) -> int:
        """Deletes the matching rows, expired or not, atomically: in one statement where SQL can match
        them, else in one transaction that locks the candidates, matches them here and deletes them by
        id. Returns how many went."""
        lookup = self._lookup(match)
        index = self._index
        if lookup is not None and index is not None:
            if not lookup:  # a value only the rows the index cannot read can hold
                with self._index_needed():
                    return await self._delete_in_python(index.unreadable, {}, match)
            if index.exact and len(match) == 1:
                with self._index_needed():
                    removed = await self._deleter.delete(index.delete, index.delete_returning, lookup)
                    return removed + await self._delete_in_python(index.unreadable, {}, match)
            with self._index_needed():
                return await self._delete_in_python(index.candidates, lookup, match)
        sql = self._executor.sql.full
        in_sql = sql.delete_matching(match, self._serializer.dumps) if self._is_json else None
        if in_sql is not None:
            statement, params = in_sql
            try:
                return await self._deleter.delete(statement, sql.deleted(statement), params)
            except StatementError as error:
                self._unless_unreadable(error)
        statement, params = self._candidates(match)
        return await self._delete_in_python(statement, params, match)

    async def _delete_in_python(
        self, statement: Executable, params: dict[str, Any], match: dict[str, Any]
    ) -> int:
        """Delete the rows among `statement`'s candidates whose data matches, in a transaction that locks
        only them: the candidates are read and matched first, then locked by id, matched again (another
        request may have changed them) and deleted. A session moved meanwhile keeps its id, and goes too."""
        executor = self._executor
        sql = executor.sql.full
        if self._moves_change_ids:
            return await self._delete_scanning(statement, params, match)
        ids = [row[3] for row in self._matched(await executor.fetch(statement, params), match)]
        if not ids:
            return 0

        async def matched_and_deleted(transaction: Transaction) -> list[Row]:
            found = self._matched(await transaction.fetch(sql.locked_rows_by_ids, {"ids": ids}), match)
            if found:
                await transaction.execute(sql.delete_ids, {"ids": [row[3] for row in found]})
            return found

        return await self._disposed(await executor.transaction(matched_and_deleted))

    async def _delete_scanning(
        self, statement: Executable, params: dict[str, Any], match: dict[str, Any]
    ) -> int:
        """`_delete_in_python` where a move gives a row a new id (the row ids derive from the sid): the
        candidates are read and locked in the transaction itself, and on MySQL read twice, since InnoDB's
        scan can miss a row whose primary key a move that committed while it waited changed."""
        sql = self._executor.sql.full
        locked = self._locked.get(id(statement))
        if locked is None:
            locked = self._locked[id(statement)] = statement.with_for_update()  # type: ignore[attr-defined]
        looks = 2 if sql.scans_miss_moved_keys else 1

        async def matched_and_deleted(transaction: Transaction) -> list[Row]:
            found: list[Row] = []
            for _ in range(looks):
                seen = self._matched(await transaction.fetch(locked, params), match)
                if seen:
                    await transaction.execute(sql.delete_ids, {"ids": [row[3] for row in seen]})
                found += seen
            return found

        return await self._disposed(await self._executor.transaction(matched_and_deleted))

    async def _disposed(self, found: list[Row]) -> int:
        for row in found:
            await self._deleter.dispose(row[0], row[1])
        return len(found)

    async def select(self, match: dict[str, Any]) -> Found:
        """The live matching rows: (sid, data, expiresAt)."""
        lookup = self._lookup(match)
        if lookup is not None:
            assert self._index is not None
            params = {**lookup, "now": utcnow()}
            statement = self._index.live_candidates if lookup else self._index.live_unreadable
            with self._index_needed():
                rows = await self._executor.fetch(statement, params)
            return [(row[0], self._parse(row[0], row[1]) or {}, row[2]) for row in self._matched(rows, match)]
        in_sql = self._executor.sql.select_matching(match, self._serializer.dumps) if self._is_json else None
        if in_sql is not None:
            statement, params = in_sql
            try:
                rows = await self._executor.fetch(statement, {**params, "now": utcnow()})
            except StatementError as error:
                self._unless_unreadable(error)
            else:
                found = []
                for sid, text, expires_at in rows:
                    data = self._parse(sid, text)
                    if data is not None and expires_at is not None:  # None: an unreadable expiry
                        found.append((sid, data, expires_at))
                return found
        statement, params = self._candidates(match)
        now = utcnow()
        # An expiry that cannot be read (None, or text the driver could not make a datetime) is no live
        # session.
        return [
            (row[0], self._parse(row[0], row[1]) or {}, row[2])
            for row in self._matched(await self._executor.fetch(statement, params), match)
            if isinstance(row[2], datetime) and row[2] > now
        ]

    def _unless_unreadable(self, error: StatementError) -> None:
        """Re-raise `error` unless it is the database refusing to read some row's data as JSON."""
        if error.fault is not Fault.UNREADABLE:
            raise error
        # One such row fails the whole statement there: the caller matches in Python instead.
        table = self._executor.table_name
        self._log(logging.WARNING, "a %s row cannot be read as jsonb; matching in Python", table)

    def _candidates(self, match: dict[str, Any]) -> tuple[Executable, dict[str, Any]]:
        """A SELECT of (sid, data, expiresAt, id) of the rows that may match: where the data is JSON, only
        those whose text names the first key."""
        sql = self._executor.sql.full
        if self._is_json:
            pattern = "%" + _like_escape(self._serializer.dumps(next(iter(match)))) + "%"
            return sql.rows_with_keys_like, {"pattern": pattern}
        return sql.all_rows, {}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
