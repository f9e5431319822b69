"""How Starlette apps are run and tested, beyond uvicorn on asyncio.

Starlette runs on anyio, with asyncio or trio; the store's drivers need asyncio, so under trio it says so
(at the lifespan's startup, else at the store's first use) instead of failing inside a driver. And
Starlette's habit in tests, `TestClient(app)` without `with`, runs every request on an event loop of its
own and never runs the lifespan that would close the store: the pool closes a loop's connections as that
loop ends, so nothing is left to the garbage collector's ResourceWarnings.

Starlette 1.10's TestClient warns at import that it wants `httpx2`; the import below filters that one
warning, as a user of TestClient with httpx would, and everything else runs under `-W error`.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.exceptions import StarletteDeprecationWarning

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware
from tests.helpers import SECRET, scratch_database

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # "install httpx2 instead"
    from starlette.testclient import TestClient

# What the refusal says: the reason, and what to do.
REFUSED = r"needs asyncio, and this app runs on trio: the database drivers .* Run the app on asyncio"


def counter_app(store: PrismaSessionStore) -> FastAPI:
    """request.session as Starlette's users write it: autoload, and a route that counts visits."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET, autoload=True)

    @app.post("/count")
    async def count(request: Request) -> dict[str, Any]:
        request.session["n"] = request.session.get("n", 0) + 1
        return dict(request.session)

    return app


async def with_table(url: str) -> None:
    async with PrismaSessionStore(url) as store:
        await store.create_table()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(with_table(url))
    return url


@pytest.fixture
def postgres_scratch() -> Iterator[str]:
    """A database of this test's own, so that its server-side connections can be counted."""
    with scratch_database("fps_habits") as url:
        yield url


def no_warnings_after(work: Any) -> None:
    """Run `work()`, collect the garbage, and fail on any warning: an unclosed connection, socket or
    transport (ResourceWarning), or a coroutine never awaited (RuntimeWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        work()
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


# -- trio ---------------------------------------------------------------------------------------------


def test_under_trio_a_request_fails_with_the_reason_not_inside_a_driver(sqlite_url: str) -> None:
    store = PrismaSessionStore(sqlite_url)
    app = counter_app(store)

    async def request() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            with pytest.raises(ConfigurationError, match=REFUSED):
                await client.post("/count")

    no_warnings_after(lambda: anyio.run(request, backend="trio"))

    async def on_asyncio() -> dict[str, Any]:
        async with store, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return dict((await c.post("/count")).json())

    # Nothing of the refused attempt stays behind: the same store serves on asyncio.
    assert anyio.run(on_asyncio, backend="asyncio") == {"n": 1}


def test_under_trio_the_lifespan_startup_fails_with_the_reason(sqlite_url: str) -> None:
    app = counter_app(PrismaSessionStore(sqlite_url))
    sent: list[dict[str, Any]] = []

    async def lifespan() -> None:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with pytest.raises(ConfigurationError, match=REFUSED):
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    no_warnings_after(lambda: anyio.run(lifespan, backend="trio"))
    # What a server prints before it stops (Hypercorn serves trio), as Starlette reports startup errors.
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith("ConfigurationError: fastapi_prisma_session needs asyncio")


def test_under_trio_the_store_itself_refuses_clearly(sqlite_url: str) -> None:
    store = PrismaSessionStore(sqlite_url, check_period=60)

    async def use() -> None:
        with pytest.raises(ConfigurationError, match=REFUSED):
            await store.get("some-id")
        with pytest.raises(ConfigurationError, match=REFUSED):
            await store.set("some-id", {"cookie": {"originalMaxAge": None}})
        with pytest.raises(ConfigurationError, match=REFUSED):
            store.start_interval()
        with pytest.raises(ConfigurationError, match=REFUSED):
            await store.shutdown()

    no_warnings_after(lambda: anyio.run(use, backend="trio"))
    assert not store.interval_running


# -- TestClient(app) without `with` -------------------------------------------------------------------


def visits_without_lifespan(url: str) -> PrismaSessionStore:
    """Three requests through TestClient without `with`: each on a loop of its own, no lifespan."""
    store = PrismaSessionStore(url)
    client = TestClient(counter_app(store))
    assert [client.post("/count").json() for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    return store


def test_testclient_without_with_leaves_no_connection_on_sqlite(sqlite_url: str) -> None:
    stores: list[PrismaSessionStore] = []
    no_warnings_after(lambda: stores.append(visits_without_lifespan(sqlite_url)))
    # The last request's loop ended, and took the pool's connections with it.
    assert stores[0].executor.pool.open_connections == 0


async def backends(url: str) -> int:
    """The server's connections to the database of `url`, besides this one."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


def test_testclient_without_with_leaves_no_connection_on_postgresql(postgres_scratch: str) -> None:
    stores: list[PrismaSessionStore] = []
    no_warnings_after(lambda: stores.append(visits_without_lifespan(postgres_scratch)))
    assert stores[0].executor.pool.open_connections == 0

    # Closed on the server too, not only forgotten: its backends end.
    asyncio.run(wait_until_zero(postgres_scratch))


async def wait_until_zero(url: str) -> None:
    for _ in range(100):
        if await backends(url) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await backends(url)} connection(s) still open on the server")
