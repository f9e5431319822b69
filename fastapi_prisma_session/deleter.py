"""Deleting rows, and calling the store's `dispose` for each session deleted: one piece that logouts,
`clear`, pruning and matching share."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import MOVED_KEY

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy import Executable

    from .executor import Executor
    from .rows import DisposeFunction, RowFormat, SessionData


class Runs(Protocol):
    """Where statements run: the executor, or one of its transactions."""

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[Sequence[Any]]: ...

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int: ...


class Deleter:
    """Deletes rows through one store's executor; with a `dispose`, hands it every session that went."""

    def __init__(self, executor: Executor, rows: RowFormat, dispose: DisposeFunction | None) -> None:
        self._executor = executor
        self._rows = rows
        self._dispose = dispose

    @property
    def disposes(self) -> bool:
        return self._dispose is not None

    async def delete(
        self, plain: Executable, returning: Executable, params: dict[str, Any], on: Runs | None = None
    ) -> int:
        """Run a DELETE (on `on`, a transaction, if given); with a `dispose`, its `returning` form, so
        that each deleted session is disposed. Returns how many rows went."""
        if self._dispose is None:
            return await (on or self._executor).execute(plain, params)
        rows = await self.deleted_rows(returning, params, on)
        for sid, text in rows:
            await self.dispose(sid, text)
        return len(rows)

    async def deleted_rows(
        self, returning: Executable, params: dict[str, Any], on: Runs | None = None
    ) -> list[tuple[str, str]]:
        """Delete rows and hand back their (sid, data), through the dialect's `deleted()` statement: a
        DELETE ... RETURNING, or a SELECT ... FOR UPDATE followed by a DELETE of those ids in the same
        transaction (MySQL has no RETURNING)."""
        executor = self._executor
        sql = executor.sql
        if sql.deletes_returning:
            return [(row[0], row[1]) for row in await (on or executor).fetch(returning, params)]
        if on is None:
            return await executor.transaction(
                lambda transaction: self.deleted_rows(returning, params, transaction)
            )
        found = await on.fetch(returning, params)
        if found:
            await on.execute(sql.delete_ids, {"ids": [row[2] for row in found]})
        return [(row[0], row[1]) for row in found]

    async def dispose(self, sid: str, text: str) -> None:
        """Call `dispose` for the session a deleted row held, unless it is unreadable or no session (the
        marker `regenerate(keep_data=True)` leaves under the old id)."""
        if self._dispose is None:
            return
        data = self._rows.parse(sid, text)
        if data is not None and MOVED_KEY not in data:
            await self.call(sid, data)

    async def call(self, sid: str, data: SessionData) -> None:
        outcome = self._dispose(sid, data) if self._dispose is not None else None
        if inspect.isawaitable(outcome):
            await outcome
