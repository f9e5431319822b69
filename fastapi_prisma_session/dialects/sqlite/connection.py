"""SQLite connections for the store's pool: the standard library's `sqlite3`, each connection on a
thread of its own, seen through asyncpg's `fetchrow`/`fetch`/`execute`.

The threads are daemons and end with their connection, or with the object when it is dropped unclosed,
so a store that is never shut down neither warns nor keeps the interpreter from exiting. A statement cut
off by a deadline is interrupted (`sqlite3.Connection.interrupt`), which rolls it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

_STOP = object()
Job = tuple["asyncio.Future[Any] | None", Callable[[], Any]]


def _deliver(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _work(jobs: queue.SimpleQueue[Job | object]) -> None:
    while True:
        job = jobs.get()
        if job is _STOP:
            return
        future, function = cast("Job", job)
        try:
            outcome, failed = function(), False
        except BaseException as error:  # handed to the waiting coroutine
            outcome, failed = error, True
        if future is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody waits any more
                future.get_loop().call_soon_threadsafe(_deliver, future, outcome, failed)


def _close_on(jobs: queue.SimpleQueue[Job | object], connection: sqlite3.Connection) -> None:
    jobs.put((None, connection.close))
    jobs.put(_STOP)


class SQLiteConnection:
    """One sqlite3 connection in autocommit mode, its statements run on its own thread."""

    def __init__(self, connection: sqlite3.Connection, jobs: queue.SimpleQueue[Job | object]) -> None:
        self._connection = connection
        self._jobs = jobs
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_on, jobs, connection)

    @classmethod
    async def connect(cls, database: str, *, busy_timeout: float, uri: bool = False) -> SQLiteConnection:
        jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        threading.Thread(
            target=_work, args=(jobs,), name="fastapi_prisma_session sqlite", daemon=True
        ).start()

        def open_it() -> sqlite3.Connection:
            return sqlite3.connect(
                database, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
            )

        future: asyncio.Future[sqlite3.Connection] = asyncio.get_running_loop().create_future()
        jobs.put((future, open_it))
        try:
            connection = await future
        except BaseException:
            jobs.put(_STOP)
            raise
        return cls(connection, jobs)

    def is_closed(self) -> bool:
        return self._closed

    async def fetchrow(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = await self._run(sql, args, lambda cursor: cursor.fetchone())
        return row

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._run(sql, args, lambda cursor: cursor.fetchall())
        return rows

    async def describe(self, sql: str) -> list[tuple[str, Any]]:
        """The (name, None) of the columns of the query `sql`, which is run (make it LIMIT 0)."""
        columns: list[tuple[str, Any]] = await self._run(
            sql, (), lambda cursor: [(column[0], None) for column in cursor.description or ()]
        )
        return columns

    async def execute(self, sql: str, *args: Any) -> str:
        """Runs a statement; returns its status as asyncpg does (`DELETE 3`)."""
        count: int = await self._run(sql, args, lambda cursor: cursor.rowcount)
        return f"{sql.split(None, 1)[0].upper()} {count}"

    def interrupt(self) -> None:
        """End the statement running now (from any thread); it is rolled back."""
        if not self._closed:
            self._connection.interrupt()

    def terminate(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.interrupt()
            self._finalizer()

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's signature
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, self._connection.close))
        self._jobs.put(_STOP)
        async with asyncio.timeout(timeout):
            await future

    async def _run(self, sql: str, args: Sequence[Any], read: Callable[[sqlite3.Cursor], Any]) -> Any:
        if self._closed:
            raise ConnectionResetError("the SQLite connection is closed")
        connection = self._connection

        def statement() -> Any:
            cursor = connection.execute(sql, args)
            try:
                return read(cursor)
            finally:
                cursor.close()

        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, statement))
        return await future
