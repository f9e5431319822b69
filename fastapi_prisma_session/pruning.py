"""Deleting expired sessions: batches through the `expiresAt` index, one pruner at a time, and the
background loop that runs them every `check_period` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .deadlines import async_library, not_on_asyncio
from .durations import utcnow
from .exceptions import StoreUnavailableError

if TYPE_CHECKING:
    from .deleter import Deleter
    from .executor import Executor, Transaction

# The pace of a prune, when neither `prune_batch_size` nor `prune_pause` fixes it (docs/pruning.md):
# each batch is sized to take about BATCH_BUDGET seconds, between MIN_BATCH and MAX_BATCH rows, and
# after it the pruner rests in proportion to how busy the app keeps the database.
BATCH_BUDGET = 0.05
START_BATCH = 500
SHRINK_AFTER = 4
MIN_BATCH = 50
MAX_BATCH = 20_000
# The rest after a batch, in units of the batch's own time: REST_SHARE on an idle database, plus one for
# every APP_RATE transactions a second the app runs (2,000 a second: a tenth of the time pruning), plus
# BACKOFF for each time slower per row than its best beyond SLOWDOWN_SLACK; at most MAX_PAUSE seconds.
REST_SHARE = 0.1
APP_RATE = 200.0
BACKOFF = 3.0
SLOWDOWN_SLACK = 0.5
MAX_PAUSE = 1.0
# Until the app's rate is known (LOAD_WINDOW seconds into the prune) the pruner rests as long as it works.
LOAD_WINDOW = 1.0
UNKNOWN_LOAD_REST = 1.0
# How much of a new window's rate counts against the windows before it: the database's counters move in
# steps (PostgreSQL publishes a backend's counts about once a second).
LOAD_SMOOTHING = 0.5
# The best pace seen is forgotten slowly (this much a batch: half of it in about 350 batches, several
# seconds), so that a fast start (cached pages) does not count forever, nor a long busy spell too soon.
BEST_DRIFT = 0.002
# Smoothing of the pace per row, so that one slow batch (a checkpoint, a page fault) is not a trend.
SMOOTHING = 0.3
# Each wait is the period give or take this fraction, so workers started together do not prune together.
JITTER = 0.1

Log = Callable[..., None]


class Trend:
    """A measure smoothed over the last few batches, against the best it has been lately."""

    def __init__(self) -> None:
        self._recent: float | None = None
        self._best: float | None = None

    def slowdown(self, value: float) -> float:
        """How many times slower than its best the measure is now, after adding `value` (0 at best)."""
        recent = value if self._recent is None else (1 - SMOOTHING) * self._recent + SMOOTHING * value
        self._recent = recent
        best = recent if self._best is None else min(recent, self._best * (1 + BEST_DRIFT))
        self._best = best
        return max(0.0, recent / best - 1) if best > 0 else 0.0


class AppLoad:
    """How many transactions a second the app runs on the database, read off a counter the database
    keeps (`SQLDialect.activity()`) at each batch, less the pruner's own: `rate` over the last windows of
    at least `LOAD_WINDOW` seconds (None until the first closes), `average` over the whole prune."""

    def __init__(self, own_per_batch: int) -> None:
        self._own_per_batch = own_per_batch
        self._first: tuple[float, int, int] | None = None  # (when, counter, batches) at the first batch
        self._window: tuple[float, int, int] | None = None  # the same at the current window's start
        self._batches = 0
        self.rate: float | None = None
        self.average: float | None = None

    def add(self, counter: int, now: float) -> float | None:
        """Count one batch whose reading of the counter was `counter` at `now`; the rate so far."""
        self._batches += 1
        reading = (now, counter, self._batches)
        if self._first is None or self._window is None:
            self._first = self._window = reading
            return self.rate
        if now - self._window[0] >= LOAD_WINDOW:
            rate = self._since(self._window, reading)
            if self.rate is not None:
                rate = (1 - LOAD_SMOOTHING) * self.rate + LOAD_SMOOTHING * rate
            self.rate, self._window = rate, reading
            self.average = self._since(self._first, reading)
        return self.rate

    def _since(self, start: tuple[float, int, int], end: tuple[float, int, int]) -> float:
        own = (end[2] - start[2]) * self._own_per_batch
        return max(0.0, (end[1] - start[1] - own) / (end[0] - start[0]))


class Pace:
    """The size of each prune batch and the rest after it: fixed when given, else learned from how
    the database answers. A batch is sized to take about `BATCH_BUDGET`. The rest grows with the app's
    own rate of transactions on the database (`AppLoad`), so a prune runs at close to full speed on an
    idle database and makes way for a busy one, and with the time a row takes to delete when that grows
    well past its best (a database slowed by what no counter shows: other databases, other hosts).
    """

    def __init__(self, batch_size: int | None, pause: float | None) -> None:
        self._fixed_size = batch_size
        self._fixed_pause = pause
        self.size = batch_size or START_BATCH
        self._per_row = Trend()

    def rest(self, removed: int, seconds: float, app_rate: float | None = 0.0) -> float:
        """The pause after a batch that removed `removed` rows in `seconds` while the app ran `app_rate`
        transactions a second (None: not known yet); sizes the next batch."""
        if self._fixed_size is None and 0 < seconds < BATCH_BUDGET:
            self.size = int(min(MAX_BATCH, self.size * min(2.0, BATCH_BUDGET / seconds)))
        elif self._fixed_size is None and seconds > SHRINK_AFTER * BATCH_BUDGET:
            # Only a batch far over budget shrinks the next: each batch pays a fixed cost (its transaction's
            # round trips), so smaller batches cost more per row, which would read as a slower database.
            self.size = int(max(MIN_BATCH, self.size * max(0.5, BATCH_BUDGET / seconds)))
        if self._fixed_pause is not None:
            return self._fixed_pause
        slowdown = max(0.0, self._per_row.slowdown(seconds / max(removed, 1)) - SLOWDOWN_SLACK)
        load = UNKNOWN_LOAD_REST if app_rate is None else app_rate / APP_RATE
        return min(MAX_PAUSE, seconds * (REST_SHARE + load + BACKOFF * slowdown))


class Pruner:
    """Deletes the expired rows of one table, batch by batch, at the pace `Pace` sets."""

    def __init__(
        self,
        executor: Executor,
        deleter: Deleter,
        *,
        batch_size: int | None,
        pause: float | None,
        log: Log,
    ) -> None:
        self._executor = executor
        self._deleter = deleter
        self._batch_size = batch_size
        self._pause = pause
        self._log = log
        self._table_name = executor.table_name
        self.lock_key = advisory_lock_key(f"fastapi_prisma_session prune {executor.table_name}")
        #: True when the last run found another process pruning and did nothing.
        self.last_skipped = False
        #: The app's transactions a second on average over the last run (None: too short a run to tell, or
        #: a database with no counter), and the share of that run spent resting.
        self.last_app_rate: float | None = None
        self.last_rest_share = 0.0

    async def run(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete the expired rows, batch by batch, each batch a transaction of its own (within
        `operation_timeout`) that first takes the pruning lock for itself: the lock ends with the
        transaction (or its connection), so it never outlives a batch, not even behind a transaction
        pooler (PgBouncer), where a session lock could stay on an idle server connection for good. A run
        that finds the lock taken does nothing more: another process is pruning. So does one whose batch
        keeps losing conflicts to another pruner (on another Galera node, whose lock is not this one's)."""
        started = time.monotonic()
        sql = self._executor.sql
        now = utcnow()
        pace = Pace(self._batch_size, self._pause)
        load = AppLoad(sql.own_activity_per_batch)
        # Not known until the first window of the database's counter closes; never where it keeps none
        # (SQLite, whose readers wait for each batch's commit): the pruner then rests as long as it works.
        app_rate: float | None = None
        rested = 0.0
        total = 0
        self.last_skipped = False
        while True:
            size = pace.size
            batch_started = time.perf_counter()

            async def batch(transaction: Transaction, size: int = size) -> int | None:
                nonlocal app_rate
                if not await self._lock(transaction):
                    return None
                activity = sql.activity()
                if activity is not None:
                    counter = await transaction.fetch(activity, {})
                    app_rate = load.add(sum(int(row[-1]) for row in counter), time.monotonic())
                params = {"now": now, "batch_size": size}
                removed = await self._deleter.delete(
                    sql.prune_batch, sql.prune_batch_returning, params, transaction
                )
                await self._unlock(transaction)
                return removed

            try:
                removed = await self._executor.transaction(batch)
            except StoreUnavailableError as error:
                # On a multi-primary cluster (Galera) the lock is each node's own, and a pruner on another
                # node deleting the same rows makes this batch lose, attempt after attempt: that pruner
                # goes on, as if this one had found the lock taken.
                if not self._executor.conflicted(error):
                    raise
                removed = None
            if removed is None:
                self.last_skipped = total == 0
                self._log(logging.INFO, "another process is pruning %s; this run stops", self._table_name)
                break
            total += removed
            if progress is not None:
                progress(total)
            if removed < size:
                break
            pause = pace.rest(removed, time.perf_counter() - batch_started, app_rate)
            if pause:
                rested += pause
                await asyncio.sleep(pause)
        elapsed = time.monotonic() - started
        self.last_app_rate, self.last_rest_share = load.average, rested / elapsed if elapsed else 0.0
        app = "" if load.average is None else f", for the app's {load.average:.0f} transactions a second"
        self._log(
            logging.INFO,
            "pruned %d expired sessions from %s in %.2f s (%.0f%% of it resting%s)",
            total,
            self._table_name,
            elapsed,
            100 * self.last_rest_share,
            app,
        )
        return total

    async def _lock(self, transaction: Transaction) -> bool:
        """Whether this batch may prune: the dialect's lock taken (always, where it needs none)."""
        lock = self._executor.sql.prune_lock()
        if lock is None:
            return True
        rows = await transaction.fetch(lock, {"key": self.lock_key})
        return bool(rows and rows[0][0])

    async def _unlock(self, transaction: Transaction) -> None:
        """Release a lock that outlives transactions (MySQL's GET_LOCK). A batch that fails does not: its
        connection is closed, which releases it."""
        unlock = self._executor.sql.prune_unlock()
        if unlock is not None:
            await transaction.fetch(unlock, {"key": self.lock_key})


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
            if async_library() is not None:  # async code, on trio: the drivers need asyncio
                raise not_on_asyncio() from None
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
