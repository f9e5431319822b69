"""Deadlines: `asyncio.timeout` for many calls at once, on one shared timer.

Every call that runs statements ends within its deadline. A timer per call (asyncio.timeout) would add
its own cost to every statement of the request path, so all deadlines share one timer that ticks while
calls are running.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from .exceptions import ConfigurationError

# How often the shared deadline timer looks for calls past their deadline, while there are calls.
DEADLINE_TICK = 0.05


class Deadlines:
    """`async with deadlines.within(seconds)`: like `asyncio.timeout`, but every call shares one timer
    that ticks every DEADLINE_TICK seconds while calls are running, instead of a timer per call. Used
    from another event loop than before, it starts afresh there."""

    def __init__(self) -> None:
        self._running: dict[asyncio.Task[Any], list[float]] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def within(self, seconds: float) -> _Within:
        return _Within(self, seconds)

    def start(self, seconds: float) -> tuple[asyncio.Task[Any], int]:
        """Start a deadline `seconds` from now for the current task; what `end` takes. For a caller on
        the hot path that would rather not pay for `within`'s context manager and its coroutines."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            # No asyncio loop in a coroutine: another async library (trio, through anyio) runs it. Said
            # here, the first thing every store operation does, before a driver fails obscurely; the
            # `try` costs nothing when the loop is there.
            raise not_on_asyncio() from None
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        loop = task.get_loop()
        if loop is not self._loop:
            # The tasks and the timer of a loop that is gone (or not running here) are of no use.
            self._running, self._expired, self._timer, self._loop = {}, set(), None, loop
        self._running.setdefault(task, []).append(loop.time() + seconds)
        if self._timer is None:
            self._timer = loop.call_later(DEADLINE_TICK, self._tick, loop)
        return task, task.cancelling()

    def end(self, started: tuple[asyncio.Task[Any], int], cancelled: bool) -> bool:
        """End the deadline `start` gave; whether a CancelledError in its task (`cancelled`) was this
        deadline's doing alone (and is now a TimeoutError), as `asyncio.timeout` decides it: another
        cancellation of the task is passed on as it is."""
        task, cancelling = started
        stack = self._running.get(task)
        if stack:
            stack.pop()
            if not stack:
                del self._running[task]
        if task in self._expired:
            self._expired.discard(task)
            return task.uncancel() <= cancelling and cancelled
        return False

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        for task, deadlines in self._running.items():
            if min(deadlines) <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(DEADLINE_TICK, self._tick, loop) if self._running else None


def async_library() -> str | None:
    """The async library running the current code as sniffio tells it (trio, asyncio), or None when
    sniffio is not installed or nothing runs."""
    try:
        import sniffio  # optional: Starlette's anyio no longer needs it, trio does
    except ImportError:
        return None
    try:
        return str(sniffio.current_async_library())
    except sniffio.AsyncLibraryNotFoundError:
        return None


def not_on_asyncio() -> ConfigurationError:
    """The error for the store used from async code that asyncio does not run: its drivers need asyncio."""
    library = async_library() or "an async library other than asyncio"
    return ConfigurationError(
        f"fastapi_prisma_session needs asyncio, and this app runs on {library}: the database drivers "
        "(asyncpg, asyncmy, sqlite3 on its thread) work only on an asyncio event loop. Run the app on "
        "asyncio, e.g. uvicorn's default loop (Hypercorn without --worker-class trio; "
        "TestClient without backend='trio')."
    )


class _Within:
    __slots__ = ("_deadlines", "_seconds", "_started")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines, self._seconds = deadlines, seconds

    async def __aenter__(self) -> None:
        self._started = self._deadlines.start(self._seconds)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._deadlines.end(self._started, kind is asyncio.CancelledError):
            raise TimeoutError from error
