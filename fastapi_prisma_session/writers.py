"""One write of a session at a time in this process: `WriterQueue.one(sid)`.

Writes of the same session (a save and a touch of two tabs' requests, a logout) wait here for their turn,
rather than each holding a connection that waits on the same row lock while every other user waits for
a connection. The wait and the write end within one deadline, `operation_timeout`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .connections import wake_first
from .exceptions import StoreUnavailableError
from .logs import redact

if TYPE_CHECKING:
    from .deadlines import Deadlines


class WriterQueue:
    """The writers of each session, queued: `async with queue.one(sid):` lets one write of session `sid`
    at a time run. A write that runs out of time raises StoreUnavailableError."""

    def __init__(self, deadlines: Deadlines, deadline: float) -> None:
        self.deadlines = deadlines
        self.deadline = deadline
        # The session's writers: None while one writes and nobody waits, else the waiters' futures, each
        # resolved by the writer before it when done.
        self.writers: dict[str, deque[asyncio.Future[None]] | None] = {}

    def one(self, sid: str) -> OneWriter:
        return OneWriter(self, sid)

    def busy(self, sid: str) -> bool:
        """Whether a write of session `sid` runs now in this process."""
        return sid in self.writers


class OneWriter:
    """`WriterQueue.one(sid)`. An uncontended write, nearly every write, allocates nothing but this object.

    Everything from entering to leaving ends within one deadline. A writer that waits starts it on
    entering. One that does not wait starts none: its statement has the pool's own deadline, and
    `bound()` starts one, for what is left of it, before any further statements (a merge after a lost
    compare-and-set)."""

    __slots__ = ("_entered", "_queue", "_sid", "_started")

    def __init__(self, queue: WriterQueue, sid: str) -> None:
        self._queue, self._sid = queue, sid
        self._started: tuple[asyncio.Task[Any], int] | None = None

    async def __aenter__(self) -> OneWriter:
        queue, sid = self._queue, self._sid
        writers = queue.writers
        if sid not in writers:
            writers[sid] = None  # this write holds the session; nobody waits
            self._entered = asyncio.get_running_loop().time()
            return self
        self._started = queue.deadlines.start(queue.deadline)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = writers[sid]
        if waiting is None:
            waiting = writers[sid] = deque()
        waiting.append(waiter)
        try:
            await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self._hand_over()  # handed the session just as it was cancelled: pass it on
            self._end(type(error))
            raise
        return self

    def bound(self) -> None:
        """Start the deadline, if it is not running yet, for what is left of it since entering."""
        if self._started is None:
            queue = self._queue
            left = queue.deadline - (asyncio.get_running_loop().time() - self._entered)
            self._started = queue.deadlines.start(max(left, 0.0))

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._hand_over()
        self._end(kind)

    def _hand_over(self) -> None:
        """Wake the next waiting writer, or leave the session free."""
        writers, sid = self._queue.writers, self._sid
        waiting = writers.get(sid)
        if not (waiting and wake_first(waiting, None)):
            del writers[sid]

    def _end(self, kind: type[BaseException] | None) -> None:
        """End the deadline; a write it cut off (or whose statement ran out of time) is unavailable."""
        queue, started = self._queue, self._started
        expired = started is not None and queue.deadlines.end(started, kind is asyncio.CancelledError)
        if expired or (kind is not None and issubclass(kind, TimeoutError)):
            message = f"writing session {redact(self._sid)} did not finish within {queue.deadline:g} s"
            raise StoreUnavailableError(message) from None
