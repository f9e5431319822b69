"""Coalesced loads: the sessions of several requests that wait for a connection at once, read by one
statement.

A load sent while the database is not busy runs alone, at once: no request ever waits for others to
join it, and no timer delays one. Loads hold at most a few of the pool's connections at a time (their
lanes: a quarter of the pool, at least one), which leaves the rest to writes. A load that finds every
lane taken, or the pool itself busy, starts a batch; the loads that arrive while it waits for a lane and
then a connection join it. As the pool hands it a connection, the batch closes (the next load that finds
the lanes or the pool busy starts another) and one statement reads every session in it. Each request
then gets the row of its own sid, found by the sid the row holds (never by position), or None.

Under load, a few statements in flight each read many sessions rather than many statements one each:
the database parses, plans and answers fewer statements, and the app's process handles fewer results.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .connections import STATEMENT_SHARE, Connection, RequestPool

Row = Sequence[Any]
# The most sessions one statement loads; a batch that is full leaves the next load to start another.
BATCH_LIMIT = 64


def lanes_for(pool_size: int) -> int:
    """How many load statements may be in flight at once on a pool of `pool_size` connections."""
    return max(1, pool_size // 4)


def padded_arity(count: int) -> int:
    """The number of sids a batch of `count` is sent with where each is a parameter of its own (`IN`):
    the next power of two, so that a few statements serve every batch (and stay in the driver's cache)."""
    arity = 1
    while arity < count:
        arity *= 2
    return arity


class _Batch:
    """The loads of one batch: each sid and the future its request waits on."""

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[tuple[str, asyncio.Future[Row | None]]] = []


class LoadCoalescer:
    """Loads sessions by sid on `pool` in batches (`many`: the rows of the given sids, by sid, read on the
    connection given), for the loads that `batching()` sends here; the others run alone."""

    def __init__(
        self,
        pool: RequestPool,
        many: Callable[[Connection, list[str]], Awaitable[dict[str, Row]]],
        failure: Callable[[Exception], Exception],
        *,
        limit: int = BATCH_LIMIT,
        lanes: int | None = None,
    ) -> None:
        self._pool = pool
        self._many = many
        self._failure = failure
        self._limit = limit
        self._lanes = lanes_for(pool.max_size) if lanes is None else lanes
        self._in_flight = 0  # load statements sent and not yet answered, alone or batched
        # Batches waiting for a lane, first come first served: a lane given up is handed to the first.
        self._lane_waiters: deque[asyncio.Future[None]] = deque()
        self._open: _Batch | None = None  # waiting for a lane or a connection, open to loads that arrive
        self._running: set[asyncio.Task[None]] = set()

    def batching(self) -> bool:
        """Whether a load sent now joins a batch (one is waiting), or would wait for a lane or a
        connection and so starts one; else it runs alone, at once (through `alone`)."""
        return self._open is not None or self._in_flight >= self._lanes or self._pool.saturated

    async def alone(self, load: Awaitable[Row | None]) -> Row | None:
        """`load`, one session's statement sent alone, on a lane of its own."""
        self._in_flight += 1
        try:
            return await load
        finally:
            self.done()

    def done(self) -> None:
        """A load statement was answered (or failed): its lane goes to the first batch waiting, if any."""
        waiters = self._lane_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the count of lanes in flight stays the same
                return
        self._in_flight -= 1

    async def _take_lane(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for a lane (the caller's deadline bounds the wait; a statement in flight ends within
        its own)."""
        if self._in_flight < self._lanes:
            self._in_flight += 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._lane_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.done()  # the lane was handed over as the wait ended: pass it on
            else:
                waiter.cancel()
            raise

    def load(self, sid: str) -> asyncio.Future[Row | None]:
        """The row of `sid`, read with the other loads of its batch, or None when there is none. The
        future itself, not a coroutine around it: the request awaits its row with nothing in between."""
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is None or batch.loop is not loop or len(batch.waiters) >= self._limit:
            batch = self._open = _Batch(loop)
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        waiter: asyncio.Future[Row | None] = loop.create_future()
        batch.waiters.append((sid, waiter))
        return waiter

    async def _run(self, batch: _Batch) -> None:
        """Send `batch` once the pool gives it a connection, and hand each request its row."""

        async def read(connection: Connection) -> dict[str, Row]:
            if self._open is batch:
                self._open = None  # from here on, a load that finds the pool busy starts another batch
            sids = list(dict.fromkeys(sid for sid, waiter in batch.waiters if not waiter.done()))
            return await self._many(connection, sids) if sids else {}

        pool = self._pool
        try:
            # The wait for a lane and the statement share one deadline, as the wait for a connection and
            # the statement do in the pool: the pool's own deadline, nested inside, bounds the statement.
            async with pool.deadlines.within(pool.deadline * STATEMENT_SHARE):
                await self._take_lane(batch.loop)
                try:
                    # A read: on a connection found dead, it runs again on another, within the deadline.
                    rows: dict[str, Row] = await pool.using(read, retry=True)
                finally:
                    self.done()
        except BaseException as error:
            if self._open is batch:
                self._open = None
            for _, waiter in batch.waiters:
                if not waiter.done():
                    if isinstance(error, Exception):
                        waiter.set_exception(self._failure(error))  # the package's error, one each
                    elif isinstance(error, asyncio.CancelledError):
                        waiter.cancel()
                    else:
                        waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for sid, waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(rows.get(sid))
