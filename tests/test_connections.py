"""The leased asyncpg connections of the request path, on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore
from fastapi_prisma_session.connections import LeasedConnections


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url, pool_size=4, max_overflow=0)
    yield engine
    await engine.dispose()


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


async def test_connections_are_reused_not_checked_out_per_statement(pg_engine: AsyncEngine) -> None:
    leased = LeasedConnections(pg_engine, size=2)
    pids = [await leased.run("fetchval", "SELECT pg_backend_pid()", []) for _ in range(5)]
    assert len(set(pids)) == 1
    assert checked_out(pg_engine) == 1
    await leased.close()
    assert checked_out(pg_engine) == 0


async def test_callers_wait_when_every_connection_is_busy(pg_engine: AsyncEngine) -> None:
    leased = LeasedConnections(pg_engine, size=2)
    first, second = await leased.acquire(), await leased.acquire()
    third = asyncio.ensure_future(leased.acquire())
    await asyncio.sleep(0.05)
    assert not third.done()
    assert checked_out(pg_engine) == 2  # never more than its size
    leased.release(first)
    assert await asyncio.wait_for(third, 1) is first
    leased.release(second)
    leased.release(await third)
    await leased.close()


async def test_a_cancelled_waiter_does_not_swallow_a_wake_up(pg_engine: AsyncEngine) -> None:
    leased = LeasedConnections(pg_engine, size=1)
    only = await leased.acquire()
    cancelled = asyncio.ensure_future(leased.acquire())
    waiting = asyncio.ensure_future(leased.acquire())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    leased.release(only)
    assert await asyncio.wait_for(waiting, 1) is only
    leased.release(only)
    await leased.close()


async def test_an_interrupted_connection_is_discarded_and_replaced(pg_engine: AsyncEngine) -> None:
    leased = LeasedConnections(pg_engine, size=1)
    before = await leased.run("fetchval", "SELECT pg_backend_pid()", [])
    slow = asyncio.ensure_future(leased.run("execute", "SELECT pg_sleep(5)", []))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    after = await leased.run("fetchval", "SELECT pg_backend_pid()", [])
    assert after != before
    assert checked_out(pg_engine) == 1
    await leased.close()


async def test_concurrent_requests_beyond_the_lease_all_succeed(postgres_url: str) -> None:
    async with PrismaSessionStore(postgres_url, table_name="custom_sessions", request_connections=2) as store:
        await store.create_table()
        try:
            await asyncio.gather(*(store.set(f"s{n}", {"n": n}) for n in range(20)))
            results = await asyncio.gather(*(store.get(f"s{n % 20}") for n in range(200)))
            assert [r["n"] if r else None for r in results] == [n % 20 for n in range(200)]
        finally:
            async with store.engine.begin() as conn:
                await conn.exec_driver_sql('DROP TABLE "custom_sessions"')


def test_request_connections_must_be_positive(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="request_connections"):
        PrismaSessionStore(postgres_url, request_connections=0)
