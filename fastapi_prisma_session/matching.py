"""Finding sessions by what their data holds (`destroy_all(user_id=42)`, `matching(user_id=42)`).

The database's own JSON operators do it in one statement where they can; when the data is not JSON, or a
corrupt row makes the database refuse the statement, the rows are matched here in Python instead.
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

INVALID_TEXT_REPRESENTATION = "22P02"  # PostgreSQL: the text is not valid JSON

Parse = Callable[[str, str], "SessionData | None"]
#: `delete(plain, returning, params)`: runs a DELETE and returns how many rows went.
Delete = Callable[[Any, Any, dict[str, Any]], Awaitable[int]]
Destroy = Callable[[list[str]], Awaitable[None]]


def check_match(match: dict[str, Any], method: str, instead: str) -> None:
    if not match:
        raise ValueError(f"{method}() needs at least one key=value to match; {instead}")


class DataMatcher:
    """Runs matches on one store's table."""

    def __init__(
        self, database: Database, serializer: Serializer, parse: Parse, log: StoreLog, *, in_sql: bool
    ) -> None:
        self._database = database
        self._serializer = serializer
        self._parse = parse
        self._log = log
        self._in_sql = in_sql

    async def delete(self, match: dict[str, Any], delete: Delete, destroy: Destroy) -> int:
        """Deletes the matching rows, expired or not, with `delete` in one statement where SQL can match
        them, else with `destroy(sids)`; returns how many went."""
        if self._in_sql:
            sql = self._database.sql
            statement, params = sql.delete_matching(match, self._serializer.dumps)
            try:
                return await delete(statement, statement.returning(*sql.returned), params)  # type: ignore[attr-defined]
            except DBAPIError as error:
                self._unless_invalid_json(error)
        sids = [sid for sid, *_ in await self._in_python(match, live_only=False)]
        if sids:
            await destroy(sids)
        return len(sids)

    async def select(self, match: dict[str, Any]) -> list[tuple[str, SessionData, datetime, str]]:
        """The live matching rows: (sid, data, expiresAt, data as text)."""
        if self._in_sql:
            statement, params = self._database.sql.select_matching(match, self._serializer.dumps)
            try:
                result = await self._database.execute(statement, {**params, "now": utcnow()})
            except DBAPIError as error:
                self._unless_invalid_json(error)
            else:
                found = []
                for sid, text, expires_at in result.all():
                    data = self._parse(sid, text)
                    if data is not None:
                        found.append((sid, data, expires_at, text))
                return found
        return await self._in_python(match, live_only=True)

    def _unless_invalid_json(self, error: DBAPIError) -> None:
        """Re-raise `error` unless it is PostgreSQL refusing to cast a corrupt row to jsonb."""
        if getattr(error.orig, "sqlstate", None) != INVALID_TEXT_REPRESENTATION:
            raise error
        # One corrupt row fails the whole statement there: the caller matches in Python instead.
        self._log(
            logging.WARNING, "a %s row holds invalid JSON; matching in Python", self._database.table_name
        )

    async def _in_python(
        self, match: dict[str, Any], *, live_only: bool
    ) -> list[tuple[str, SessionData, datetime, str]]:
        sql = self._database.sql
        if self._in_sql:
            # Only rows whose text names the first key can match: let the database skip the others.
            pattern = "%" + _like_escape(self._serializer.dumps(next(iter(match)))) + "%"
            result = await self._database.execute(sql.rows_with_keys_like, {"pattern": pattern})
        else:
            result = await self._database.execute(sql.all_rows, {})
        now = utcnow()
        found = []
        for sid, text, expires_at in result.all():
            if live_only and expires_at <= now:
                continue
            data = self._parse(sid, text)
            if data is not None and all(key in data and data[key] == value for key, value in match.items()):
                found.append((sid, data, expires_at, text))
        return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
