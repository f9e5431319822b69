"""The request path's connection pool (asyncpg's own), on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore
from fastapi_prisma_session.connections import RequestPool
from fastapi_prisma_session.deadlines import Deadlines
from fastapi_prisma_session.dialects.postgresql.driver import Driver as PostgresDriver
from tests.helpers import ADMIN_URL, wait_until


class Driver(PostgresDriver):
    """PostgreSQL's driver, connecting through `connect` when given one."""

    def __init__(self, connect: Callable[..., Awaitable[Any]] | None = None) -> None:
        self._connect = connect or asyncpg.connect

    async def connect(self, **kwargs: Any) -> Any:
        return await self._connect(**kwargs)


def pool_for(
    postgres_url: str, *, connect: Callable[..., Awaitable[Any]] | None = None, **options: Any
) -> RequestPool:
    url = make_url(postgres_url)
    kwargs = {"host": url.host, "port": url.port, "user": url.username, "database": url.database}
    settings: dict[str, Any] = {"max_size": 2, "idle_timeout": 60.0, "deadline": 5.0, **options}
    return RequestPool(Driver(connect), kwargs, **settings)


async def test_connections_are_opened_as_needed_and_reused(postgres_url: str) -> None:
    pool = pool_for(postgres_url)
    assert pool.open_connections == 0  # nothing is opened before the first request
    pids = [await pool.run("fetchval", "SELECT pg_backend_pid()", []) for _ in range(5)]
    assert len(set(pids)) == 1
    assert pool.open_connections == 1
    await pool.close()
    assert pool.open_connections == 0


async def test_concurrent_callers_beyond_the_size_wait_and_all_succeed(postgres_url: str) -> None:
    pool = pool_for(postgres_url, max_size=2)
    results = await asyncio.gather(*(pool.run("fetchval", "SELECT $1::int", [n]) for n in range(50)))
    assert results == list(range(50))
    assert pool.open_connections <= 2
    await pool.close()


def on_next_release(
    pool: RequestPool,
    *,
    before: Callable[[asyncpg.Connection], object] = lambda _: None,
    after: Callable[[asyncpg.Connection], object] = lambda _: None,
) -> None:
    """Run `before` and `after` around the pool's next release of a connection, in the same step."""
    release = pool._release

    def around(connection: asyncpg.Connection) -> None:
        pool._release = release  # type: ignore[method-assign]
        before(connection)
        release(connection)
        after(connection)

    pool._release = around  # type: ignore[method-assign]


async def test_waiting_callers_get_connections_first_come_first_served(postgres_url: str) -> None:
    """A caller that runs a second statement as soon as its first returns (a /write request: its load,
    then its save) does not take the connection it just gave back from those already waiting."""
    pool = pool_for(postgres_url, max_size=1)
    order: list[str] = []

    async def two_statements() -> None:
        await pool.run("execute", "SELECT pg_sleep(0.2)", [])
        await pool.run("execute", "SELECT 1", [])
        order.append("first caller's second statement")

    async def waiter(name: str) -> None:
        await pool.run("execute", "SELECT 1", [])
        order.append(name)

    first = asyncio.create_task(two_statements())
    await wait_until(lambda: pool.open_connections == 1)
    waiters = []
    for name in ("second caller", "third caller"):
        waiters.append(asyncio.create_task(waiter(name)))
        await asyncio.sleep(0.02)  # queued in this order, while the first caller's statement runs
    await asyncio.gather(first, *waiters)
    assert order == ["second caller", "third caller", "first caller's second statement"]
    await pool.close()


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_passes_it_on(postgres_url: str) -> None:
    pool = pool_for(postgres_url, max_size=1)
    holder = asyncio.create_task(pool.run("execute", "SELECT pg_sleep(0.2)", []))
    await wait_until(lambda: pool.open_connections == 1)
    cancelled = asyncio.create_task(pool.run("fetchval", "SELECT 1", []))
    await asyncio.sleep(0.02)
    served = asyncio.create_task(pool.run("fetchval", "SELECT 2", []))
    await asyncio.sleep(0.02)
    # The holder's statement returns and the connection is handed to `cancelled`, which is cancelled in
    # the same step, before it runs: the connection must go on to `served`, not be lost with it.
    on_next_release(pool, after=lambda _: cancelled.cancel())
    await holder
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(served, 5) == 2
    assert pool.open_connections == 1
    assert await pool.run("fetchval", "SELECT 3", []) == 3
    await pool.close()


async def test_a_connection_lost_as_it_is_given_back_is_not_handed_to_a_waiter(
    postgres_url: str,
) -> None:
    """The connection closes just as its statement returns: the caller waiting for it gets a new one
    (a write is not retried, so a dead connection handed over would fail it)."""
    pool = pool_for(postgres_url, max_size=1)
    holder = asyncio.create_task(pool.run("fetchval", "SELECT pg_backend_pid() FROM pg_sleep(0.2)", []))
    await wait_until(lambda: pool.open_connections == 1)
    waiting = asyncio.create_task(pool.run("fetchval", "SELECT pg_backend_pid()", []))
    await asyncio.sleep(0.02)
    on_next_release(pool, before=lambda connection: connection.terminate())
    first_pid = await holder
    assert await asyncio.wait_for(waiting, 5) != first_pid
    assert pool.open_connections == 1
    await pool.close()


@pytest.mark.parametrize("opens", [True, False])
async def test_close_while_a_connection_opens_keeps_the_count(postgres_url: str, opens: bool) -> None:
    """A connection that finishes opening (or fails to) after close() serves its caller and is not
    counted among the pool's: the next caller opens and counts one of its own."""
    gate = asyncio.Event()
    attempts: list[int] = []

    async def slow_connect(**kwargs: Any) -> asyncpg.Connection:
        attempts.append(1)
        if len(attempts) == 1:  # the first one waits, then opens or fails
            await gate.wait()
            if not opens:
                raise ConnectionRefusedError("refused after close()")
        return await asyncpg.connect(**kwargs)

    pool = pool_for(postgres_url, max_size=1, connect=slow_connect)
    opening = asyncio.create_task(pool.run("fetchval", "SELECT 1", []))
    await wait_until(lambda: pool.open_connections == 1)
    await pool.close()
    assert pool.open_connections == 0
    gate.set()
    if opens:
        assert await opening == 1
    else:
        with pytest.raises(ConnectionRefusedError):
            await opening
    assert pool.open_connections == 0
    assert await pool.run("fetchval", "SELECT 2", []) == 2
    assert pool.open_connections == 1
    await pool.close()


async def test_a_read_whose_connection_ends_mid_statement_runs_again(postgres_url: str) -> None:
    """The server ends the connection while the statement runs (asyncpg reports that as a PostgresError,
    like a refusal): the connection is dropped and the read runs again on a new one."""
    pool = pool_for(postgres_url, max_size=1)
    pid = await pool.run("fetchval", "SELECT pg_backend_pid()", [])

    async def terminate_soon() -> None:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await wait_until_async_active(admin, pid)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    killer = asyncio.create_task(terminate_soon())
    value = await pool.run("fetchval", "SELECT 7 FROM pg_sleep(0.5)", [], retry=True)
    await killer
    assert value == 7
    assert await pool.run("fetchval", "SELECT pg_backend_pid()", []) != pid  # on a new connection
    assert pool.open_connections == 1
    await pool.close()


async def test_a_write_whose_connection_ends_is_reported_lost_not_refused(postgres_url: str) -> None:
    pool = pool_for(postgres_url, max_size=1)
    pid = await pool.run("fetchval", "SELECT pg_backend_pid()", [])
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        running = asyncio.create_task(pool.run("execute", "SELECT pg_sleep(0.5)", []))
        await wait_until_async_active(admin, pid)
        await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    with pytest.raises(ConnectionResetError):  # not retried: a write may have gone through
        await running
    assert pool.open_connections == 0  # and the dead connection is not handed out again
    assert await pool.run("fetchval", "SELECT 1", []) == 1
    await pool.close()


async def wait_until_async_active(admin: asyncpg.Connection, pid: int) -> None:
    async def active() -> bool:
        state = await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        return bool(state == "active")

    for _ in range(200):
        if await active():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never ran the statement")


async def test_idle_connections_are_closed(postgres_url: str) -> None:
    pool = pool_for(postgres_url, idle_timeout=0.2)
    await asyncio.gather(*(pool.run("fetchval", "SELECT pg_sleep(0.05)", []) for _ in range(2)))
    assert pool.open_connections == 2
    await wait_until(lambda: pool.open_connections == 0)
    assert await pool.run("fetchval", "SELECT 1", []) == 1  # and it opens one again when needed
    await pool.close()


async def test_a_statement_past_the_deadline_is_cancelled_on_the_server(postgres_url: str) -> None:
    pool = pool_for(postgres_url, deadline=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await pool.run("execute", "SELECT pg_sleep(5) /* past the deadline */", [])
    assert time.monotonic() - started < 2
    # The server confirmed the cancellation before the call returned: nothing still runs there.
    running = await pool.run(
        "fetchval",
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%past the deadline%' "
        "AND pid <> pg_backend_pid()",
        [],
    )
    assert running == 0
    await pool.close()


async def test_a_server_error_keeps_the_connection(postgres_url: str) -> None:
    pool = pool_for(postgres_url)
    before = await pool.run("fetchval", "SELECT pg_backend_pid()", [])
    with pytest.raises(Exception, match="division by zero"):
        await pool.run("fetchval", "SELECT 1/0", [])
    assert await pool.run("fetchval", "SELECT pg_backend_pid()", []) == before
    await pool.close()


def test_each_event_loop_gets_its_own_connections(postgres_url: str) -> None:
    """Tests that each run their own loop (pytest-asyncio's default) can share one store."""
    pool = pool_for(postgres_url)

    async def pid() -> int:
        value: int = await pool.run("fetchval", "SELECT pg_backend_pid()", [])
        return value

    first_loop, second_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first = first_loop.run_until_complete(pid())
        second = second_loop.run_until_complete(pid())
        assert first != second
        second_loop.run_until_complete(pool.close())
        first_loop.run_until_complete(asyncio.sleep(0))  # the first loop finishes closing its sockets
    finally:
        first_loop.close()
        second_loop.close()


async def test_a_store_serves_more_concurrent_requests_than_connections(postgres_url: str) -> None:
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


def test_deadlines_keep_working_on_the_next_event_loop() -> None:
    deadlines = Deadlines()

    async def quick() -> None:
        async with deadlines.within(1):
            await asyncio.sleep(0)

    async def slow() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with deadlines.within(0.2):
                await asyncio.sleep(1.5)
        return time.monotonic() - started

    asyncio.run(quick())  # this loop ends with the shared timer still pending
    assert asyncio.run(slow()) < 1


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def body() -> None:
        async with deadlines.within(0.1):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                await asyncio.sleep(0.3)  # cleaning up after the deadline, when the caller cancels too
                raise

    task = asyncio.create_task(body())
    await asyncio.sleep(0.25)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_close_also_closes_the_connections_in_use(postgres_url: str) -> None:
    pool = pool_for(postgres_url)
    busy = asyncio.create_task(pool.run("execute", "SELECT pg_sleep(0.3)", []))
    await asyncio.sleep(0.1)
    await pool.close()
    await busy
    assert pool.open_connections == 0
    assert pool._idle == []  # the busy one was closed when it came back
    assert await pool.run("fetchval", "SELECT 1", []) == 1  # and the pool opens new ones when used again
    await pool.close()


async def test_setup_runs_on_each_new_connection(postgres_url: str) -> None:
    pool = pool_for(postgres_url, setup=["SET lock_timeout = '1234ms'"])
    values = await asyncio.gather(*(pool.run("fetchval", "SHOW lock_timeout", []) for _ in range(4)))
    assert values == ["1234ms"] * 4
    await pool.close()


async def test_the_server_gives_up_at_seventy_percent_of_the_deadline(postgres_url: str) -> None:
    """Said in SQL on each new connection, not as startup parameters (which PgBouncer refuses)."""
    store = PrismaSessionStore(postgres_url, operation_timeout=2)
    try:
        requests = store.executor.pool
        assert requests is not None
        for setting in ("lock_timeout", "statement_timeout"):
            assert await requests.run("fetchval", f"SHOW {setting}", []) == "1400ms"
        assert "server_settings" not in requests._connect_kwargs
    finally:
        await store.shutdown()


async def test_the_request_path_connects_with_the_engine_options_connect_args(postgres_url: str) -> None:
    """engine_options' connect_args (the docs' way to give asyncpg an ssl.SSLContext) reached only
    SQLAlchemy's connections: the request path's connected without them, TLS included."""
    connect_args = {"server_settings": {"application_name": "fps_connect_args"}}
    store = PrismaSessionStore(postgres_url, engine_options={"connect_args": connect_args})
    try:
        requests = store.executor.pool
        assert requests is not None
        assert await requests.run("fetchval", "SHOW application_name", []) == "fps_connect_args"
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("SHOW application_name")).scalar() == "fps_connect_args"
    finally:
        await store.shutdown()
