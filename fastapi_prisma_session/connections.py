"""The request path's PostgreSQL connections: a small pool of asyncpg connections, and deadlines.

Why not asyncpg's own `Pool`: measured on this project's benchmark machine (2 cores, uvloop), its
acquire and release cost about 50 µs of CPU per statement, on top of about 60 µs for the statement
itself on a free list, and `asyncio.timeout` another 15 µs: with them a read request fell from 1.07 to
0.85 times the throughput of the raw asyncpg floor (BENCHMARKS.md, 2026-11-28). So the pool is a plain
free list, and all deadlines share one timer.

The pool opens connections as concurrent requests need them (running the `setup` SQL on each), up
to `max_size`, and closes those idle for `idle_timeout` seconds, so a quiet worker holds none. A
caller that finds every connection busy waits for one: a connection given back goes straight to the
caller that has waited longest, and one that fails to open wakes the next waiter. Every call ends
within its deadline: whatever is still pending then (waiting for a connection, opening one, the
statement) is cancelled and the caller gets `TimeoutError`; a statement cut off is cancelled on the
server before that. A pool belongs to one event loop: used from another loop (each test with its
own loop, say), it drops the old loop's connections and opens new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from .deadlines import Deadlines

T = TypeVar("T")

# A statement (with the wait for its connection) gets this share of the deadline; the rest is for the
# server to confirm that it cancelled one that ran out of time, before its connection is closed instead.
STATEMENT_SHARE = 0.85
# A read found its idle connection dead (after a restart, every idle one is): it tries this many more.
DEAD_CONNECTION_RETRIES = 3
LOST = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
# What asyncpg reports as a PostgresError although the connection is gone: lost, not refused.
ENDED = (
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


def wake_first(waiters: deque[asyncio.Future[T]], value: T) -> bool:
    """Resolve the first future of `waiters` still waiting (the ones cancelled meanwhile are dropped)
    with `value`; whether there was one. The queues of the pool and of a session's writers."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(value)
            return True
    return False


class RequestPool:
    """Runs single statements on pooled asyncpg connections, each call ending within `deadline` seconds.

    `connect` and `refused` (the errors of a statement the server refused, after which the connection
    is fine) let it pool another driver's connections that offer the same methods (MySQL's, in
    mysql_connections.py)."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        setup: str | None = None,
        *,
        max_size: int,
        idle_timeout: float,
        deadline: float,
        deadlines: Deadlines | None = None,
        connect: Callable[..., Awaitable[Any]] = asyncpg.connect,
        refused: tuple[type[BaseException], ...] = (asyncpg.PostgresError,),
    ) -> None:
        self._driver_connect = connect
        self._refused = refused
        self.max_size = max_size
        self.deadline = deadline
        self.deadlines = deadlines or Deadlines()
        self._connect_kwargs = dict(connect_kwargs)
        self._setup = setup  # SQL run once on each new connection
        self._idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[tuple[asyncpg.Connection, float]] = []  # (connection, idle since); newest last
        self._mine: set[asyncpg.Connection] = set()  # open on this loop, busy or idle
        self._opened = 0  # open or opening
        # Callers waiting for a connection, first come first served: a released connection is handed to
        # the first of them (its future's result); None wakes one to look again (a slot to open one).
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self._query_loggers: list[Callable[[Any], None]] = []

    @property
    def open_connections(self) -> int:
        """How many connections the pool holds now, busy or idle."""
        return self._opened

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """Have `callback(asyncpg LoggedQuery)` called for every statement of connections opened from now."""
        self._query_loggers.append(callback)

    async def run(self, method: str, sql: str, args: Sequence[Any], *, retry: bool = False) -> Any:
        """`await connection.<method>(sql, *args)` on a pooled connection; asyncpg prepares the statement
        once per connection and caches it.

        With `retry` (a read, safe to repeat), a statement whose connection turns out to be dead (the
        server restarted, or closed it while it sat idle) runs again on another, a few times, within the
        same deadline. A timeout is never retried."""
        # `deadlines.within` spelled out with start/end: no context manager and its coroutines per statement.
        deadlines = self.deadlines
        started = deadlines.start(self.deadline * STATEMENT_SHARE)
        try:
            if self._loop is not asyncio.get_running_loop():
                self._move_to_this_loop()
            for _ in range(DEAD_CONNECTION_RETRIES if retry else 0):
                try:
                    result = await self._run_once(method, sql, args)
                    break
                except TimeoutError:
                    raise  # an OSError too, but one that must not be tried again
                except LOST:
                    pass  # that connection is closed now; the next try gets another, or a new one
            else:
                result = await self._run_once(method, sql, args)
        except asyncio.CancelledError as error:
            if deadlines.end(started, cancelled=True):
                raise TimeoutError from error
            raise
        except BaseException:
            deadlines.end(started, cancelled=False)
            raise
        deadlines.end(started, cancelled=False)
        return result

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back. Used again, the pool
        opens new ones."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        self._mine, self._opened = set(), 0  # what is in use now is not the pool's any more
        if self._loop is asyncio.get_running_loop():
            for connection, _ in idle:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
        else:
            self._abandon(idle)

    async def _run_once(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        # An idle connection is taken here, without the coroutine `_acquire` is: the common case.
        connection = self._take_idle() or await self._acquire()
        try:
            result = await getattr(connection, method)(sql, *args)
        except self._refused as error:
            if connection.is_closed() or isinstance(error, ENDED):
                # Not a refusal: the server ended the connection (a restart, pg_terminate_backend), which
                # asyncpg reports as a PostgresError too. Lost, and tried again on another where allowed.
                self._discard(connection)
                raise ConnectionResetError(f"the server closed the connection: {error}") from error
            self._release(connection)  # the server refused the statement; the connection is fine
            raise
        except asyncio.CancelledError:
            # The deadline (or the caller) cut the statement off, and asyncpg has asked the server to
            # cancel it. Wait, briefly, until the server confirms, so that a write reported as failed
            # does not go through later, when the lock it waited for is released.
            await self._settle(connection)
            raise
        except BaseException:
            self._discard(connection)  # broken: never used again
            raise
        self._release(connection)
        return result

    def _take_idle(self) -> asyncpg.Connection | None:
        """The most recently used idle connection that is still open, or None."""
        while self._idle:
            connection, _ = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._forget(connection)  # the server closed it while it sat idle
        return None

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            connection = self._take_idle()
            if connection is not None:
                return connection
            if self._opened < self.max_size:
                self._opened += 1
                # close() or a move to another loop while this one opens starts a new set (and count):
                # then the connection is not the pool's, and serves this caller only.
                mine = self._mine
                try:
                    connection = await self._open()
                except BaseException:
                    if mine is self._mine:
                        self._opened -= 1
                    self._hand_over(None)  # a waiter may open one, or fail quickly, in its turn
                    raise
                if mine is not self._mine:
                    return connection
                mine.add(connection)
                for callback in self._query_loggers:
                    connection.add_query_logger(callback)
                return connection
            waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection (or a wake-up) just as it was cancelled: pass it on.
                    handed = waiter.result()
                    if handed is None:
                        self._hand_over(None)
                    else:
                        self._release(handed)
                raise
            if handed is not None:
                return handed

    async def _open(self) -> asyncpg.Connection:
        connection = await self._driver_connect(**self._connect_kwargs)
        if self._setup is not None:
            try:
                await connection.execute(self._setup)
            except BaseException:
                connection.terminate()
                raise
        return connection

    def _release(self, connection: asyncpg.Connection) -> None:
        # Not the pool's (opened before close(), or on an event loop the pool has left), or lost as its
        # statement ended (the server's goodbye came with the result): a waiter handed it would fail,
        # where a new connection would serve it.
        if connection not in self._mine or connection.is_closed():
            self._discard(connection)
            return
        # Straight to the caller that has waited longest. Put back among the idle ones with the waiter only
        # woken, it was taken by whoever ran first (often the caller that gave it back, going on to its
        # next statement), and the waiter queued again at the back: /write's p99 was three times the
        # floor's (48-55 ms against 16-18 ms under wrk, 2026-12-06), 13-14 ms with the hand-over.
        if wake_first(self._waiters, connection):
            return
        loop = asyncio.get_running_loop()
        self._idle.append((connection, loop.time()))
        if self._reaper is None:
            self._reaper = loop.call_later(self._idle_timeout, self._reap, loop)

    def _discard(self, connection: asyncpg.Connection) -> None:
        self._abandon([(connection, 0.0)])
        self._forget(connection)
        self._hand_over(None)

    def _forget(self, connection: asyncpg.Connection) -> None:
        if connection in self._mine:
            self._mine.discard(connection)
            self._opened -= 1

    async def _settle(self, connection: asyncpg.Connection) -> None:
        grace = self.deadline * (1 - STATEMENT_SHARE)
        try:
            # A new statement waits for asyncpg's pending cancel request to be answered.
            async with asyncio.timeout(grace):
                await connection.execute("SELECT 1")
        except BaseException:
            self._discard(connection)
        else:
            self._release(connection)

    def _hand_over(self, connection: asyncpg.Connection | None) -> bool:
        """Give `connection` to the caller that has waited longest, or with None wake it to look again
        (a slot to open one is free); whether anyone was waiting."""
        return wake_first(self._waiters, connection)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections idle for longer than `idle_timeout`; look again while some are idle."""
        cutoff = loop.time() - self._idle_timeout
        stale = [connection for connection, since in self._idle if since <= cutoff]
        self._idle = [(connection, since) for connection, since in self._idle if since > cutoff]
        for connection in stale:
            self._forget(connection)
            connection.terminate()
        self._reaper = loop.call_later(self._idle_timeout, self._reap, loop) if self._idle else None

    def _move_to_this_loop(self) -> None:
        """Forget the connections of another event loop (they cannot be used, or closed politely, here)."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self._abandon(self._idle)
        self._idle, self._mine, self._opened, self._waiters = [], set(), 0, deque()
        self._loop = asyncio.get_running_loop()

    @staticmethod
    def _abandon(idle: list[tuple[asyncpg.Connection, float]]) -> None:
        for connection, _ in idle:
            with contextlib.suppress(RuntimeError):  # its loop is closed already; its sockets went with it
                connection.terminate()
