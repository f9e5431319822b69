"""The store's connections: a small pool over any driver's connections, every call within a deadline.

Every statement the store sends at run time runs here, on connections its dialect's driver opens
(`dialects/<database>/driver.py`), which offer the small `Connection` protocol below (asyncpg's own
methods; the MySQL and SQLite connections offer the same).

Why not a driver's own pool: asyncpg's `Pool` spends almost as much CPU on acquire and release as the
statement itself costs on a free list, and a timer per call adds more, which shows in a read request's
throughput against the raw asyncpg floor (docs/benchmarks.md). So the pool is a plain free list, and all
deadlines share one timer (deadlines.py).

The pool opens connections as concurrent requests need them (running the `setup` statements on each), up
to `max_size`, and closes those idle for `idle_timeout` seconds, so a quiet worker holds none. A
caller that finds every connection busy waits for one: a connection given back goes straight to the
caller that has waited longest, and one that fails to open wakes the next waiter. Every call ends
within its deadline: whatever is still pending then (waiting for a connection, opening one, the
statement) is cancelled and the caller gets `TimeoutError`; a statement cut off is ended on the
server before that (the driver's `settle`). A pool belongs to one event loop: used from another loop
(each test with its own loop, say), it drops the old loop's connections and opens new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .deadlines import Deadlines, not_on_asyncio
from .statistics import Statistics

if TYPE_CHECKING:
    from .dialects.driver import Driver

T = TypeVar("T")

# A statement (with the wait for its connection) gets this share of the deadline; the rest is for the
# server to confirm that it ended one that ran out of time, before its connection is closed instead.
STATEMENT_SHARE = 0.85
# A read found its idle connection dead (after a restart, every idle one is): it tries this many more.
DEAD_CONNECTION_RETRIES = 3


class Connection(Protocol):
    """What the pool and the executor use of a driver's connection: asyncpg's methods of these names.
    `execute` returns the statement's status, such as `DELETE 3`."""

    def is_closed(self) -> bool: ...

    async def fetchrow(self, sql: str, *args: Any) -> Sequence[Any] | None: ...

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]: ...

    async def execute(self, sql: str, *args: Any) -> str: ...

    def terminate(self) -> None: ...

    async def close(self, *, timeout: float | None = None) -> None: ...  # noqa: ASYNC109 - asyncpg's


def _finish(watch: AsyncIterator[None] | None) -> None:
    """Run a pool's `_until_loop_ends` to its end now, synchronously (its `finally` awaits nothing)."""
    if watch is not None:
        with contextlib.suppress(StopIteration, RuntimeError):  # RuntimeError: it has ended already
            watch.aclose().send(None)  # type: ignore[attr-defined]


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
    """Runs statements on pooled connections of one driver, each call ending within `deadline` seconds."""

    def __init__(
        self,
        driver: Driver,
        connect_kwargs: Mapping[str, Any],
        setup: Sequence[str] = (),
        *,
        max_size: int,
        idle_timeout: float,
        deadline: float,
        deadlines: Deadlines | None = None,
    ) -> None:
        self._driver = driver
        self.max_size = max_size
        self.deadline = deadline
        self.deadlines = deadlines or Deadlines()
        self._connect_kwargs = dict(connect_kwargs)
        self._setup = tuple(setup)  # statements run once on each new connection
        self._idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[tuple[Connection, float]] = []  # (connection, idle since); newest last
        self._mine: set[Connection] = set()  # open on this loop, busy or idle
        self._opened = 0  # open or opening
        # Callers waiting for a connection, first come first served: a released connection is handed to
        # the first of them (its future's result); None wakes one to look again (a slot to open one).
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self._watch: AsyncIterator[None] | None = None  # closes the connections when their loop ends
        self.statistics = Statistics()  # the pool counts its statements; a unit of work counts its own
        #: told the seconds each call waited for its connection (0: one was idle), when telemetry is on
        self.waited: Callable[[float], None] | None = None

    @property
    def open_connections(self) -> int:
        """How many connections the pool holds now, busy or idle."""
        return self._opened

    @property
    def saturated(self) -> bool:
        """Whether a statement sent now would wait for a connection (none idle, no more may open)."""
        return bool(self._waiters) or (not self._idle and self._opened >= self.max_size)

    async def run(
        self,
        method: str,
        sql: str,
        args: Sequence[Any],
        *,
        retry: bool = False,
        work: Callable[[Connection], Awaitable[Any]] | None = None,
    ) -> Any:
        """`await connection.<method>(sql, *args)` on a pooled connection (asyncpg prepares the
        statement once per connection and caches it), or with `work`, `await work(connection)`.

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
                    result = await self._run_once(method, sql, args, work)
                    break
                except TimeoutError:
                    raise  # an OSError too, but one that must not be tried again
                except self._driver.lost:
                    pass  # that connection is closed now; the next try gets another, or a new one
            else:
                result = await self._run_once(method, sql, args, work)
        except asyncio.CancelledError as error:
            if deadlines.end(started, cancelled=True):
                raise TimeoutError from error
            raise
        except BaseException:
            deadlines.end(started, cancelled=False)
            raise
        deadlines.end(started, cancelled=False)
        return result

    async def using(self, work: Callable[[Connection], Awaitable[T]], *, retry: bool = False) -> T:
        """`await work(connection)` on one pooled connection, within the deadline: several statements
        (a transaction). If `work` fails in any way the connection is closed, not reused, so that nothing
        it left open (a transaction, a lock) outlives it."""
        result: T = await self.run("", "", (), retry=retry, work=work)
        return result

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back. Used again, the pool
        opens new ones."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        self._mine, self._opened = set(), 0  # what is in use now is not the pool's any more
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise not_on_asyncio() from None  # `await store.shutdown()` under trio
        if self._loop is loop:
            for connection, _ in idle:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
        else:
            self._abandon(idle)

    async def _run_once(
        self,
        method: str,
        sql: str,
        args: Sequence[Any],
        work: Callable[[Connection], Awaitable[Any]] | None,
    ) -> Any:
        # An idle connection is taken here, without the coroutine `_acquire` is: the common case.
        connection = self._take_idle()
        if connection is None:
            connection = await (self._acquire() if self.waited is None else self._timed_acquire(self.waited))
        elif self.waited is not None:
            self.waited(0.0)
        try:
            if work is None:
                self.statistics.statements += 1
                result = await getattr(connection, method)(sql, *args)
            else:
                result = await work(connection)
        except asyncio.CancelledError:
            # The deadline (or the caller) cut the statement off. Have the server end it, briefly, so that
            # a write reported as failed does not go through later, when the lock it waited for is released.
            if work is None:
                await self._settle(connection)
            else:
                self._discard(connection)
            raise
        except BaseException as error:
            if connection.is_closed() or self._driver.ended(error, connection):
                # The server ended the connection (a restart, pg_terminate_backend), which a driver may
                # report as a refusal. Lost, and tried again on another where allowed.
                self._discard(connection)
                raise ConnectionResetError(f"the server closed the connection: {error}") from error
            if work is not None or not self._driver.refused(error):
                self._discard(connection)  # broken, or a unit of work left unfinished: never used again
            else:
                self._release(connection)  # the server refused the statement; the connection is fine
            raise
        self._release(connection)
        return result

    def _take_idle(self) -> Connection | None:
        """The most recently used idle connection that is still open, or None."""
        while self._idle:
            connection, _ = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._forget(connection)  # the server closed it while it sat idle
        return None

    async def _acquire(self) -> Connection:
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
                return connection
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
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

    async def _timed_acquire(self, waited: Callable[[float], None]) -> Connection:
        """`_acquire`, its wait reported to `waited` however it ends (a timeout is a wait too)."""
        started = time.monotonic()
        try:
            return await self._acquire()
        finally:
            waited(time.monotonic() - started)

    async def _open(self) -> Connection:
        connection = await self._driver.connect(**self._connect_kwargs)
        try:
            for statement in self._setup:
                self.statistics.statements += 1
                await connection.execute(statement)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def _release(self, connection: Connection) -> None:
        # Not the pool's (opened before close(), or on an event loop the pool has left), or lost as its
        # statement ended (the server's goodbye came with the result): a waiter handed it would fail,
        # where a new connection would serve it.
        if connection not in self._mine or connection.is_closed():
            self._discard(connection)
            return
        # Straight to the caller that has waited longest. Put back among the idle ones with the waiter only
        # woken, it would be taken by whoever ran first (often the caller that gave it back, going on to
        # its next statement), and the waiter would queue again at the back: an unfair queue, which
        # under load multiplies the slowest requests' wait.
        if wake_first(self._waiters, connection):
            return
        loop = asyncio.get_running_loop()
        self._idle.append((connection, loop.time()))
        if self._reaper is None:
            self._reaper = loop.call_later(self._idle_timeout, self._reap, loop)

    def _discard(self, connection: Connection) -> None:
        self._abandon([(connection, 0.0)])
        self._forget(connection)
        self._hand_over(None)

    def _forget(self, connection: Connection) -> None:
        if connection in self._mine:
            self._mine.discard(connection)
            self._opened -= 1

    async def _settle(self, connection: Connection) -> None:
        grace = self.deadline * (1 - STATEMENT_SHARE)
        try:
            usable = await self._driver.settle(connection, grace)
        except BaseException:
            usable = False
        if usable:
            self._release(connection)
        else:
            self._discard(connection)

    def _hand_over(self, connection: Connection | None) -> bool:
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
        """Forget the connections of another event loop (they cannot be used, or closed politely, here),
        and have this loop's connections closed when this loop ends."""
        _finish(self._watch)  # closes the previous loop's idle connections, if it has not ended them
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self._idle, self._mine, self._opened, self._waiters = [], set(), 0, deque()
        self._loop = loop = asyncio.get_running_loop()
        # A loop that ends as asyncio.run, asyncio.Runner and anyio end one (a TestClient without `with`
        # runs each request on a loop of its own, and no lifespan closes the store) closes its live async
        # generators while it still runs: this one closes the pool's connections then, rather than
        # leaving them to the garbage collector's ResourceWarnings once the loop is gone.
        # Its first step registers it with the loop (the firstiter hook), without the loop's finalizer:
        # dropped unfinished, it is closed on the spot, never handed to a loop that may be closed by then.
        self._watch = watch = self._until_loop_ends(loop)
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(hooks.firstiter, None)
        try:
            watch.__anext__().send(None)  # type: ignore[attr-defined]  # runs to its `yield`
        except StopIteration:
            pass
        finally:
            sys.set_asyncgen_hooks(*hooks)

    async def _until_loop_ends(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # No await here: it also runs synchronously (_finish), outside any loop.
            if self._loop is loop:
                if self._reaper is not None:
                    self._reaper.cancel()
                    self._reaper = None
                self._abandon(self._idle)
                self._idle, self._mine, self._opened = [], set(), 0

    @staticmethod
    def _abandon(idle: list[tuple[Connection, float]]) -> None:
        for connection, _ in idle:
            with contextlib.suppress(RuntimeError):  # its loop is closed already; its sockets went with it
                connection.terminate()
