"""Looking at the session table once, before the store's first statement: which expiry column it has
(`expiresAt` or 2.x's `expires`), and that its columns are ones the store can use."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from .dialects import for_database
from .exceptions import StoreSetupError
from .models import EXPIRES, EXPIRES_AT, session_table

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .executor import Executor

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="Checked")


class Checked(Protocol):
    """An object whose methods run statements on a table: a store."""

    executor: Executor
    table_check: TableCheck


# The columns every generation of prisma-session-store's model has, besides its expiry column.
ROW_COLUMNS = ("id", "sid", "data")


class TableCheck:
    """The look at one store's table: `await check.ensure()` before its first statement."""

    def __init__(
        self, executor: Executor, table: Table, *, expires_column: str | None, prune_batch_size: int
    ) -> None:
        self._executor = executor
        self.table = table
        self._expires_column = expires_column
        self._prune_batch_size = prune_batch_size
        #: True once the table's expiry column is known.
        self.done = False
        # The look in flight: calls that arrive meanwhile wait for it, not for turns.
        self._checking: asyncio.Future[None] | None = None

    async def ensure(self) -> None:
        """Look at the table's columns, once. Calls that arrive while the look is under way share it.
        Raises StoreSetupError when the table lacks a column the store needs, TableMissingError when
        there is no table, and StoreUnavailableError when the database does not answer; the next call
        then looks again."""
        checking = self._checking
        if (
            checking is None
            or checking.get_loop() is not asyncio.get_running_loop()
            or (checking.done() and (checking.cancelled() or checking.exception() is not None))
        ):
            checking = self._checking = asyncio.ensure_future(self._look())
        try:
            await asyncio.shield(checking)
        except BaseException:
            if checking.done() and self._checking is checking:
                self._checking = None  # failed (or cancelled): the next call looks again
            raise

    async def create(self, engine: AsyncEngine, user_key: str | None) -> None:
        """Create the table through `engine` if it is missing, with the `user_key` index if asked."""
        async with engine.begin() as conn:
            await conn.run_sync(self.table.create, checkfirst=True)
            if user_key is not None:
                for statement in self._executor.sql.user_key_ddl(user_key, if_exists=True)[0]:
                    await conn.execute(statement)

    async def _look(self) -> None:
        executor = self._executor
        described = dict(await executor.describe(self.table.name))
        expires_column = self._expiry_column(list(described))
        executor.driver.check_columns(self.table.name, described, expires_column)
        if expires_column != self.table.c.expiresAt.name:
            self.table = session_table(self.table.name, expires_column=expires_column)
            name = executor.dialect.name
            executor.use(for_database(name, self.table, prune_batch_size=self._prune_batch_size))
        self.done = True

    def _expiry_column(self, columns: list[str]) -> str:
        """The expiry column among the table's `columns`; ConfigurationError if a column is missing."""
        name = self.table.name
        where = f'the session table "{name}" (columns: {", ".join(columns)})'
        missing = [column for column in ROW_COLUMNS if column not in columns]
        if missing:
            raise StoreSetupError(
                f"{where} lacks {', '.join(missing)}: it is not prisma-session-store's Session model"
            )
        if self._expires_column is not None:
            if self._expires_column not in columns:
                raise StoreSetupError(f'{where} has no column "{self._expires_column}" (expires_column)')
            return self._expires_column
        found = [column for column in (EXPIRES_AT, EXPIRES) if column in columns]
        if len(found) != 1:
            has = "has both" if found else "has neither"
            raise StoreSetupError(
                f'{where} {has} "{EXPIRES_AT}" (prisma-session-store 3.x) and "{EXPIRES}" (2.x): name the '
                'expiry column with PrismaSessionStore(..., expires_column="...")'
            )
        return found[0]


def on_the_table(
    method: Callable[Concatenate[C, P], Awaitable[R]],
) -> Callable[Concatenate[C, P], Coroutine[Any, Any, R]]:
    """A store method that runs statements: the first one looks at the table's columns first, the look
    and the method within one `operation_timeout`."""

    async def checked_first(store: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with store.executor.operation():
            await store.table_check.ensure()
            return await method(store, *args, **kwargs)

    # Not a coroutine function itself: once the table is checked, the call is the method's own coroutine,
    # with no second one around it (each one more object per request in flight for the collector).
    @functools.wraps(method)
    def on_the_table(store: C, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        if store.table_check.done:
            return method(store, *args, **kwargs)  # type: ignore[return-value]
        return checked_first(store, *args, **kwargs)

    return on_the_table


def operation(
    method: Callable[Concatenate[C, P], Awaitable[R]],
) -> Callable[Concatenate[C, P], Coroutine[Any, Any, R]]:
    """A public operation of several statements: the table looked at first if need be, and all of it
    within one `operation_timeout`."""

    @functools.wraps(method)
    async def within_the_deadline(store: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with store.executor.operation():
            if not store.table_check.done:
                await store.table_check.ensure()
            return await method(store, *args, **kwargs)

    return within_the_deadline
