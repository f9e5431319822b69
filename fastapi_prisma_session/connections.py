"""The asyncpg connections the request path keeps leased from the engine's pool.

Checking a connection out of SQLAlchemy's async pool and back costs two greenlet switches, about 20 µs,
which is as much as the rest of the middleware. The store therefore leases up to `size` connections
from the engine's pool once and hands them to requests from a plain free list. They stay the engine's
connections: they count against its pool size, and `close()` returns them to it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.util.concurrency import greenlet_spawn

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import PoolProxiedConnection


class LeasedConnections:
    """A free list of up to `size` pooled connections; callers wait when all are in use."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self._engine = engine
        self.size = size
        self._idle: deque[PoolProxiedConnection] = deque()
        self._leased = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def run(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        """`await connection.<method>(sql, *args)` on a leased connection (asyncpg caches the prepared
        statement per connection)."""
        connection = await self.acquire()
        try:
            result = await getattr(connection.driver_connection, method)(sql, *args)
        except asyncpg.PostgresError:
            self.release(connection)  # the server refused the statement; the connection is fine
            raise
        except BaseException:
            # A broken or interrupted connection must not be used again.
            await self.discard(connection)
            raise
        self.release(connection)
        return result

    async def acquire(self) -> PoolProxiedConnection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not _is_closed(connection):
                    return connection
                await self.discard(connection)  # the server closed it while it sat idle
            if self._leased < self.size:
                self._leased += 1
                try:
                    return await self._engine.raw_connection()
                except BaseException:
                    self._leased -= 1
                    raise
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on to the next waiter
                raise

    def release(self, connection: PoolProxiedConnection) -> None:
        self._idle.append(connection)
        self._wake_one()

    async def discard(self, connection: PoolProxiedConnection) -> None:
        """Drop a broken connection: the engine's pool forgets it and a new one can be leased."""
        self._leased -= 1
        self._wake_one()
        await greenlet_spawn(connection.invalidate)

    async def close(self) -> None:
        """Return every idle connection to the engine's pool."""
        while self._idle:
            connection = self._idle.pop()
            self._leased -= 1
            await greenlet_spawn(connection.close)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _is_closed(connection: PoolProxiedConnection) -> bool:
    driver: Any = connection.driver_connection
    return driver is None or bool(driver.is_closed())
