"""Network faults between the app and PostgreSQL, made by a TCP proxy the tests control (faultproxy.py):
a refused port, a silent host, reset connections, a pause, and a row locked by another transaction.

Every request that needs its session ends within the store's deadline: a 200, or a 503 when the database
cannot answer in time. Nothing hangs, nothing acknowledged is lost, and everything recovers by itself.
Each test prints its figures (requests, 503s, slowest answer, recovery) with `pytest -s`.

PostgreSQL only: the deadlines measured here are those of the request path's own asyncpg connections.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware, load_session
from fastapi_prisma_session.signing import Signer
from tests.faultproxy import FaultProxy
from tests.helpers import SECRET, client_for, free_port, make_app, wait_until

DEADLINE = 1.0
# The slowest a request may take: the deadline for its load and for its save, and scheduling slack on
# a busy 2-core machine.
SLOWEST = 2 * DEADLINE + 1.0
USERS = 30


@pytest.fixture
async def store(postgres_url: str, proxy: FaultProxy) -> AsyncIterator[PrismaSessionStore]:
    direct = PrismaSessionStore(postgres_url, table_name="custom_sessions")
    await direct.create_table()
    through_proxy = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    store = PrismaSessionStore(through_proxy, table_name="custom_sessions", operation_timeout=DEADLINE)
    try:
        yield store
    finally:
        await store.shutdown()
        async with direct.engine.begin() as conn:
            await conn.exec_driver_sql('DROP TABLE "custom_sessions"')
        await direct.shutdown()


async def log_in(client: httpx.AsyncClient, users: int) -> list[str]:
    """A session for each user, as the Cookie header that carries it."""
    cookies = []
    for n in range(users):
        client.cookies.clear()  # each user logs in from a browser of their own
        response = await client.post("/write", params={"value": f"user{n}"})
        assert response.status_code == 200
        sid = response.json()["id"]
        cookies.append("connect.sid=" + Signer([SECRET]).cookie_value(sid))
    client.cookies.clear()  # from now on every request says whose it is
    return cookies


async def timed(
    client: httpx.AsyncClient, method: str, path: str, cookie: str, **params: str
) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.request(method, path, headers={"cookie": cookie}, params=params)
    return response.status_code, time.monotonic() - started


async def everyone(
    client: httpx.AsyncClient, cookies: list[str], method: str = "GET", path: str = "/read"
) -> list[tuple[int, float]]:
    return await asyncio.gather(*(timed(client, method, path, cookie) for cookie in cookies))


def report(name: str, results: list[tuple[int, float]]) -> None:
    statuses = [status for status, _ in results]
    times = sorted(seconds for _, seconds in results)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"\n[fault] {name}: {len(results)} requests, {statuses.count(503)} answered 503, "
        f"{statuses.count(200)} answered 200, median {statistics.median(times) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, slowest {times[-1] * 1000:.0f} ms"
    )


async def recovered(client: httpx.AsyncClient, cookies: list[str]) -> float:
    """Seconds until every user reads their session again."""
    started = time.monotonic()
    while True:
        results = await everyone(client, cookies)
        if all(status == 200 for status, _ in results):
            return time.monotonic() - started
        assert time.monotonic() - started < 10, "the store did not recover"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["refuse", "blackhole", "reset"])
async def test_every_request_ends_within_the_deadline_and_the_store_recovers(
    store: PrismaSessionStore, proxy: FaultProxy, fault: str
) -> None:
    async with client_for(make_app(store)) as client:
        cookies = await log_in(client, USERS)
        assert all(status == 200 for status, _ in await everyone(client, cookies))  # connections are open

        getattr(proxy, fault)()
        reads = await everyone(client, cookies)
        writes = await everyone(client, cookies, "POST", "/write")
        report(f"{fault}, {USERS} reads then {USERS} writes", reads + writes)
        assert {status for status, _ in reads + writes} == {503}
        assert max(seconds for _, seconds in reads + writes) < SLOWEST

        async with client_for(make_app(store)) as anonymous:  # routes without a session are not affected
            assert (await anonymous.get("/noop")).status_code == 200

        proxy.forward()
        took = await recovered(client, cookies)
        print(
            f"[fault] {fault}: every user read their session again {took * 1000:.0f} ms after the fault ended"
        )
        values = [(await client.get("/read", headers={"cookie": c})).json()["value"] for c in cookies]
        assert values == [f"user{n}" for n in range(USERS)]  # what was stored before is intact


async def test_a_pause_loses_no_acknowledged_write(store: PrismaSessionStore, proxy: FaultProxy) -> None:
    """The network stalls for longer than the deadline: writes in flight get a 503 or go through, and
    every write that was answered 200 is stored."""
    async with client_for(make_app(store)) as client:
        cookies = await log_in(client, USERS)
        proxy.pause(DEADLINE * 1.5)
        results = await asyncio.gather(
            *(timed(client, "POST", "/write", cookie, value=f"paused{n}") for n, cookie in enumerate(cookies))
        )
        report(f"pause of {DEADLINE * 1.5:g} s, {USERS} writes", results)
        assert max(seconds for _, seconds in results) < SLOWEST
        await recovered(client, cookies)
        stored = [(await client.get("/read", headers={"cookie": c})).json()["value"] for c in cookies]
        acknowledged = [n for n, (status, _) in enumerate(results) if status == 200]
        assert all(stored[n] == f"paused{n}" for n in acknowledged)
        assert {status for status, _ in results} <= {200, 503}


async def test_a_locked_row_stalls_only_its_own_session(
    store: PrismaSessionStore, proxy: FaultProxy, postgres_url: str
) -> None:
    """Another transaction holds one session's row. Writes to it get a 503 within the deadline, and the
    other users, reading and writing their own sessions meanwhile, are not held up."""
    async with client_for(make_app(store)) as client:
        cookies = await log_in(client, 11)
        await everyone(client, cookies * 3)  # the pool has opened its connections before the clock starts
        locked, others = cookies[0], cookies[1:]
        sid = Signer([SECRET]).session_id(locked.split("=", 1)[1])
        blocker = await asyncpg.connect(
            make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            async with blocker.transaction():
                await blocker.execute('SELECT 1 FROM "custom_sessions" WHERE sid = $1 FOR UPDATE', sid)

                async def unrelated_user(cookie: str) -> list[tuple[int, float]]:
                    seen = []
                    for n in range(10):
                        seen.append(await timed(client, "POST", "/write", cookie, value=f"mine{n}"))
                        seen.append(await timed(client, "GET", "/read", cookie))
                    return seen

                stuck = [timed(client, "POST", "/write", locked, value="blocked") for _ in range(USERS)]
                results = await asyncio.gather(asyncio.gather(*stuck), *(unrelated_user(c) for c in others))
        finally:
            await blocker.close()
        stuck_results, unrelated = results[0], [r for user in results[1:] for r in user]
        report(f"{USERS} writes to the locked row", stuck_results)
        report(f"{len(others)} other users during the lock", unrelated)
        assert {status for status, _ in stuck_results} == {503}
        assert max(seconds for _, seconds in stuck_results) < SLOWEST
        assert {status for status, _ in unrelated} == {200}
        # Unblocked users are not queued behind the lock: one held up by it would have waited out the
        # deadline and answered 503.
        assert max(seconds for _, seconds in unrelated) < DEADLINE
        # None of the writes that answered 503 went through once the lock was released.
        assert (await client.get("/read", headers={"cookie": locked})).json()["value"] == "user0"


@asynccontextmanager
async def uvicorn_serving(app: FastAPI) -> AsyncIterator[int]:
    """`app` under uvicorn, in this event loop, with its lifespan; yields the port it listens on."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or serving.done(), within=10)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_a_websocket_that_loads_its_session_after_accepting_is_closed_with_1011(
    postgres_url: str, proxy: FaultProxy, fault: str
) -> None:
    """The endpoint accepts, then loads its session while the database is down: the server closes the
    socket with 1011 (internal error) and a reason, as it does a handshake that needs the session. It
    used to end the connection with no close frame, which a client reads as 1006 (abnormal closure).
    A real uvicorn and a real websocket client."""
    through_proxy = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    store = PrismaSessionStore(through_proxy, table_name="custom_sessions", operation_timeout=DEADLINE / 2)
    app = FastAPI()

    @app.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("accepted")
        session = await load_session(websocket)
        await websocket.send_text(f"hello {session.get('user')}")

    app.add_middleware(SessionMiddleware, store=store, secret=SECRET)
    cookie = "connect.sid=" + Signer([SECRET]).cookie_value("some-session")
    getattr(proxy, fault)()
    async with (
        uvicorn_serving(app) as port,  # its lifespan shuts the store down
        connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"cookie": cookie}) as websocket,
    ):
        assert await websocket.recv() == "accepted"
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(websocket.recv(), SLOWEST)
        elapsed = time.monotonic() - started
    assert closed.value.rcvd is not None, "closed without a close frame (1006)"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "session store unavailable")
    assert elapsed < SLOWEST
