"""Coalesced loads: the sessions of several requests that wait for a connection at once, read by one
statement.

A load sent while a connection is free runs alone, at once: no request ever waits for others to join
it. Only when every connection is busy (the pool would queue the load) does a load start a batch, which
waits in the pool's queue like any statement; the loads that arrive while it waits join it. As the pool
hands it a connection, the batch closes (the next load that finds the pool busy starts another) and one
statement reads every session in it. Each request then gets the row of its own sid, found by the sid the
row holds (never by position), or None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .connections import Connection, RequestPool

Row = Sequence[Any]
# The most sessions one statement loads; a batch that is full leaves the next load to start another.
BATCH_LIMIT = 64


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
        *,
        limit: int = BATCH_LIMIT,
    ) -> None:
        self._pool = pool
        self._many = many
        self._limit = limit
        self._open: _Batch | None = None  # waiting for a connection, open to loads that arrive
        self._running: set[asyncio.Task[None]] = set()

    def batching(self) -> bool:
        """Whether a load sent now joins a batch (one is waiting for a connection), or would wait for a
        connection and so starts one; else it runs alone, at once."""
        return self._open is not None or self._pool.saturated

    async def load(self, sid: str) -> Row | None:
        """The row of `sid`, read with the other loads of its batch, or None when there is none."""
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is None or batch.loop is not loop or len(batch.waiters) >= self._limit:
            batch = self._open = _Batch(loop)
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        waiter: asyncio.Future[Row | None] = loop.create_future()
        batch.waiters.append((sid, waiter))
        return await waiter

    async def _run(self, batch: _Batch) -> None:
        """Send `batch` once the pool gives it a connection, and hand each request its row."""

        async def read(connection: Connection) -> dict[str, Row]:
            if self._open is batch:
                self._open = None  # from here on, a load that finds the pool busy starts another batch
            sids = list(dict.fromkeys(sid for sid, waiter in batch.waiters if not waiter.done()))
            return await self._many(connection, sids) if sids else {}

        try:
            # A read: on a connection found dead, it runs again on another, within the same deadline.
            rows: dict[str, Row] = await self._pool.run("", "", (), retry=True, work=read)
        except BaseException as error:
            if self._open is batch:
                self._open = None
            for _, waiter in batch.waiters:
                if not waiter.done():
                    if isinstance(error, asyncio.CancelledError):
                        waiter.cancel()
                    else:
                        waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for sid, waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(rows.get(sid))
