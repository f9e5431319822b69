"""Deleting expired sessions: batches through the `expiresAt` index, one pruner at a time, and the
background loop that runs them every `check_period` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .durations import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Executable
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .database import Database

# Batches of 200 with 10 ms between them remove ~16,000 rows a second and keep the read p99 of a busy
# app within 1.5x of its usual (BENCHMARKS.md, "Prune at scale"); pause 0 prunes at full speed.
PRUNE_BATCH_SIZE = 200
PRUNE_PAUSE = 0.01
# Each wait is the period give or take this fraction, so workers started together do not prune together.
JITTER = 0.1

#: `delete(plain, returning, params, conn)`: runs a DELETE (with RETURNING when there is a dispose to
#: call) and returns how many rows went.
DeleteRows = Callable[["Executable", "Executable", dict[str, Any], "AsyncConnection"], Awaitable[int]]
Log = Callable[..., None]


class Pruner:
    """Deletes the expired rows of one table, `batch_size` rows a statement, `pause` seconds apart."""

    def __init__(
        self, database: Database, delete: DeleteRows, *, batch_size: int, pause: float, log: Log
    ) -> None:
        self._database = database
        self._delete = delete
        self._batch_size = batch_size
        self._pause = pause
        self._log = log
        self._table_name = database.table_name
        self.lock_key = advisory_lock_key(f"fastapi_prisma_session prune {database.table_name}")
        #: True when the last run found another process pruning and did nothing.
        self.last_skipped = False

    async def run(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete the expired rows, batch by batch, each batch a transaction of its own that first takes
        the pruning lock for itself: the lock ends with the transaction, so it never outlives a batch,
        not even behind a transaction pooler (PgBouncer), where a session lock could stay on an idle
        server connection for good. A run that finds the lock taken does nothing more: another process
        is pruning."""
        started = time.monotonic()
        sql = self._database.sql
        params = {"now": utcnow()}
        total = 0
        self.last_skipped = False
        while True:
            async with self._database.transaction() as conn, self._locked(conn) as locked:
                if not locked:
                    self.last_skipped = total == 0
                    self._log(logging.INFO, "another process is pruning %s; this run stops", self._table_name)
                    break
                removed = await self._delete(sql.prune_batch, sql.prune_batch_returning, params, conn)
            total += removed
            if progress is not None:
                progress(total)
            if removed < self._batch_size:
                break
            if self._pause:
                await asyncio.sleep(self._pause)
        elapsed = time.monotonic() - started
        self._log(
            logging.INFO, "pruned %d expired sessions from %s in %.2f s", total, self._table_name, elapsed
        )
        return total

    @contextlib.asynccontextmanager
    async def _locked(self, conn: AsyncConnection) -> AsyncIterator[bool]:
        """Whether this batch may prune: the dialect's lock taken on `conn` (always, where it needs
        none). A lock that outlives transactions (MySQL's GET_LOCK) is released when the batch ends,
        even when it failed: otherwise the pooled connection would keep it and stop every pruner."""
        sql, key = self._database.sql, {"key": self.lock_key}
        lock, unlock = sql.prune_lock(), sql.prune_unlock()
        locked = lock is None or bool((await self._database.execute(lock, key, conn)).scalar())
        if not locked or unlock is None:
            yield locked
            return
        try:
            yield True
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection takes the lock with it
                await self._database.execute(unlock, key, conn)
            raise
        await self._database.execute(unlock, key, conn)


class PruneLoop:
    """Runs `prune()` forever on the running event loop; a failed run is logged and the loop goes on."""

    def __init__(self, prune: Callable[[], Awaitable[int]], period: float, log: Log) -> None:
        self._prune = prune
        self._period = period
        self._log = log
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "start_interval() needs a running event loop: call it from async code, use "
                "`async with store:`, or let SessionMiddleware start it on the ASGI lifespan"
            ) from None
        self._task = loop.create_task(self._run(), name="fastapi_prisma_session prune loop")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _next_delay(self) -> float:
        return self._period * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - timing, not secrets

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            try:
                await self._prune()
            except Exception as error:
                # A connection blip or a race must not end pruning for good.
                self._log(logging.ERROR, "pruning expired sessions failed, will retry: %r", error)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
