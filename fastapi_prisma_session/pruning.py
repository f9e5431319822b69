"""The background loop that deletes expired sessions every `check_period` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

# Each wait is the period give or take this fraction, so workers started together do not prune together.
JITTER = 0.1


class PruneLoop:
    """Runs `prune()` forever on the running event loop; a failed run is logged and the loop goes on."""

    def __init__(
        self,
        prune: Callable[[], Awaitable[int]],
        period: float,
        log: Callable[..., None],
    ) -> None:
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
