"""The request path's PostgreSQL connections: asyncpg's own pool, bounded in size, time and idleness.

The pool opens connections as concurrent requests need them, up to `max_size`, and closes those idle
for `idle_timeout` seconds, so a quiet worker holds none. Every operation (waiting for a connection,
opening one, running the statement) ends within one deadline; whatever is still pending then is
cancelled and the caller gets `TimeoutError`. A pool belongs to one event loop: when the store is used
from another loop (each test with its own loop, say), the old pool is dropped and a new one opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

# A statement (with the wait for its connection) gets this share of the deadline; the rest is for the
# server to confirm that it cancelled one that ran out of time, before its connection is closed instead.
STATEMENT_SHARE = 0.85
# A read found its idle connection dead (after a restart, every idle one is): it tries this many more.
DEAD_CONNECTION_RETRIES = 3


class RequestPool:
    """Runs single statements on pooled asyncpg connections, each call ending within `deadline` seconds."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        max_size: int,
        idle_timeout: float,
        deadline: float,
    ) -> None:
        self.max_size = max_size
        self.deadline = deadline
        self._connect_kwargs = dict(connect_kwargs)
        self._idle_timeout = idle_timeout
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._query_loggers: list[Callable[[Any], None]] = []

    async def run(self, method: str, sql: str, args: Sequence[Any], *, retry: bool = False) -> Any:
        """`await connection.<method>(sql, *args)` on a pooled connection; asyncpg prepares the statement
        once per connection and caches it.

        With `retry` (a read, safe to repeat), a statement whose connection turns out to be dead (the
        server restarted, or closed it while it sat idle) runs again on another, a few times, within the
        same deadline. A timeout is never retried."""
        async with asyncio.timeout(self.deadline * STATEMENT_SHARE):
            pool = self._pool if self._loop is asyncio.get_running_loop() else None
            if pool is None:
                pool = await self._open()
            for _ in range(DEAD_CONNECTION_RETRIES if retry else 0):
                try:
                    return await self._run_once(pool, method, sql, args)
                except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                    pass  # that connection is closed now; the next try gets another, or a new one
            return await self._run_once(pool, method, sql, args)

    async def _run_once(self, pool: asyncpg.Pool, method: str, sql: str, args: Sequence[Any]) -> Any:
        connection = await pool.acquire()
        try:
            result = await getattr(connection, method)(sql, *args)
        except asyncpg.PostgresError:
            await pool.release(connection)  # the server refused the statement; the connection is fine
            raise
        except asyncio.CancelledError:
            # The deadline: asyncpg has asked the server to cancel the statement. Wait (briefly) for the
            # server to confirm, so that a write reported as failed does not go through later, when the
            # lock it waited for is released. release() closes the connection if no answer comes.
            with contextlib.suppress(Exception):
                await pool.release(connection, timeout=self.deadline * (1 - STATEMENT_SHARE))
            raise
        except BaseException:
            connection.terminate()  # broken: never used again
            await pool.release(connection)
            raise
        await pool.release(connection)
        return result

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """Have `callback(asyncpg LoggedQuery)` called for every statement of connections opened from now."""
        self._query_loggers.append(callback)

    @property
    def open_connections(self) -> int:
        """How many connections the pool holds now, busy or idle."""
        return 0 if self._pool is None else self._pool.get_size()

    async def close(self) -> None:
        """Close every connection (those in use are closed when they come back)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._loop is asyncio.get_running_loop():
            await pool.close()
        else:
            _abandon(pool)

    async def _open(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._pool is not None:
                _abandon(self._pool)
                self._pool = None
            self._loop, self._opening = loop, asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self.max_size,
                    max_inactive_connection_lifetime=self._idle_timeout,
                    reset=_keep_state,
                    init=self._init if self._query_loggers else None,
                    **self._connect_kwargs,
                )
            return self._pool

    async def _init(self, connection: asyncpg.Connection) -> None:
        for callback in self._query_loggers:
            connection.add_query_logger(callback)


async def _keep_state(connection: asyncpg.Connection) -> None:
    """The request path sets no session state, so a returned connection needs no RESET ALL round trip."""


def _abandon(pool: asyncpg.Pool) -> None:
    """Drop the connections of a pool opened on another event loop: they cannot be closed politely there."""
    with contextlib.suppress(RuntimeError):  # that loop is closed already; its sockets went with it
        pool.terminate()
