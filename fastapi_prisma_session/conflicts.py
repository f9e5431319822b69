"""Running again what lost a conflict: a deadlock, a serialization failure, a Galera certification failure.

The database rolled the statement (or the transaction) back whole, so running it again is safe. On a
multi-primary cluster (Galera) two nodes that write one row at once keep colliding if they retry in step:
each attempt waits a random pause first, growing with the attempts (full jitter), and every attempt ends
within what is left of the operation's deadline, however many are allowed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .deadlines import Deadlines

T = TypeVar("T")

# A statement or transaction that lost a conflict runs this many times in all.
CONFLICT_ATTEMPTS = 8
# The pause before attempt n (from the second) is random, up to FIRST_PAUSE * 2 ** (n - 2), at most MAX_PAUSE.
FIRST_PAUSE = 0.004
MAX_PAUSE = 0.1


def pause(attempt: int) -> float:
    """The random wait before `attempt` (2 for the first one run again)."""
    ceiling = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (attempt - 2))
    return random.uniform(0, ceiling)  # noqa: S311 - timing, not secrets


async def run_again(
    call: Callable[[], Awaitable[T]],
    lost: Exception,
    conflict: Callable[[Exception], bool],
    *,
    deadlines: Deadlines,
    left: float,
) -> T:
    """After `call` lost a conflict (`lost`), run it again, after a pause each time, while `conflict`
    says it lost again and attempts remain, all within `left` seconds. Returns what it returns; raises
    its last error (a conflict after the last attempt, or another error), or `TimeoutError` when the
    time is up."""
    if left <= 0:
        raise lost
    async with deadlines.within(left):
        for attempt in range(2, CONFLICT_ATTEMPTS + 1):
            await asyncio.sleep(pause(attempt))
            try:
                return await call()
            except Exception as error:
                if attempt == CONFLICT_ATTEMPTS or not conflict(error):
                    raise
    raise AssertionError("unreachable")  # pragma: no cover
