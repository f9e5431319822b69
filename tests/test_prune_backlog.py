"""Pruning after a mass expiry, on each database: one bulk UPDATE expires most of the table (a secret
rotation, a forced logout), and the prune that follows removes every expired row and no live one, lets a
row touched meanwhile live, and shares the work with a second pruner. Its speed is benchmarks.scale's
(`--case mass-expiry`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table

MakeStore = Callable[..., PrismaSessionStore]
ROWS = 3000
EXPIRED = 2000


async def mass_expiry(engine: AsyncEngine, rows: int = ROWS, expired: int = EXPIRED) -> None:
    """`rows` live sessions s0…, then one UPDATE that expires the first `expired` of them."""
    table = session_table()
    later = utcnow() + timedelta(days=1)
    data = '{"cookie":{"originalMaxAge":null,"expires":null}}'
    async with engine.begin() as conn:
        await conn.execute(
            table.insert(),
            [{"id": f"s{n}", "sid": f"s{n}", "data": data, "expiresAt": later} for n in range(rows)],
        )
    async with engine.begin() as conn:
        doomed = [f"s{n}" for n in range(expired)]
        await conn.execute(
            update(table).where(table.c.sid.in_(doomed)).values(expiresAt=utcnow() - timedelta(hours=1))
        )


async def sids(engine: AsyncEngine) -> set[str]:
    table = session_table()
    async with engine.connect() as conn:
        return set((await conn.execute(select(table.c.sid))).scalars())


def live() -> set[str]:
    return {f"s{n}" for n in range(EXPIRED, ROWS)}


async def test_a_mass_expiry_is_pruned_whole_and_only_it(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store()
    await store.create_table()
    await mass_expiry(engine)
    assert await store.prune() == EXPIRED
    assert await sids(engine) == live()
    assert await store.prune() == 0  # nothing left behind for the next run either


async def test_a_row_touched_while_the_prune_runs_survives(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    """A touch that holds its row (an open transaction) while the prune reaches it: once committed, the
    row is live, and the prune must not delete it, whether it skipped the row or waited for it."""
    store = make_store(prune_batch_size=100)
    await store.create_table()
    await mass_expiry(engine)
    table = session_table()
    async with engine.connect() as toucher:
        await toucher.execute(
            update(table).where(table.c.sid == "s1500").values(expiresAt=utcnow() + timedelta(days=1))
        )
        prune = asyncio.ensure_future(store.prune())
        await asyncio.sleep(0.5)  # the prune meets the held row (or waits for it: SQLite, MariaDB)
        await toucher.commit()
    removed = await prune
    assert await sids(engine) == live() | {"s1500"}
    assert removed == EXPIRED - 1


async def test_touches_racing_the_prune_keep_their_rows(make_store: MakeStore, engine: AsyncEngine) -> None:
    """Touches of expired rows, committed one by one while small batches prune: every touch that found its
    row keeps it; every row no touch found is gone."""
    store = make_store(prune_batch_size=50, prune_pause=0)
    await store.create_table()
    await mass_expiry(engine)
    table = session_table()
    kept: set[str] = set()

    async def touch_one(sid: str) -> bool:
        # A touch and a prune batch may deadlock on InnoDB: the loser is rolled back whole, and is run
        # again, as the store runs its own statements again.
        for _ in range(10):
            try:
                async with engine.begin() as conn:
                    statement = update(table).where(table.c.sid == sid)
                    done = await conn.execute(statement.values(expiresAt=utcnow() + timedelta(days=1)))
                    return bool(done.rowcount)
            except DBAPIError as error:
                if "deadlock" not in str(error).lower():
                    raise
        raise AssertionError(f"the touch of {sid} lost ten deadlocks in a row")

    async def touch() -> None:
        for n in range(0, EXPIRED, 7):
            if await touch_one(f"s{n}"):
                kept.add(f"s{n}")

    removed, _ = await asyncio.gather(store.prune(), touch())
    assert await sids(engine) == live() | kept
    assert removed == EXPIRED - len(kept)


async def test_two_pruners_at_once_remove_each_row_once(make_store: MakeStore, engine: AsyncEngine) -> None:
    first, second = make_store(prune_batch_size=100), make_store(prune_batch_size=100)
    await first.create_table()
    await mass_expiry(engine)
    removed = await asyncio.gather(first.prune(), second.prune(), first.prune())
    assert sum(removed) == EXPIRED
    assert await sids(engine) == live()
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(session_table())) == ROWS - EXPIRED
