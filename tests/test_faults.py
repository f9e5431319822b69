"""Faults: the database goes away mid-run and comes back. Requests that need the session get a quick
503, nothing is half-written, and the middleware and the prune loop recover without a restart.

PostgreSQL only: the tests stop and start a throwaway PostgreSQL server of their own. On MariaDB,
test_mariadb.py covers an unreachable server and a write stuck behind a row lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, insert_row, make_app, rows, wait_until, websocket_that_loads
from tests.throwaway_postgres import ThrowawayPostgres


@pytest.fixture
def server(postgres_url: str) -> Iterator[ThrowawayPostgres]:
    # postgres_url: the same rule as every PostgreSQL test, skip locally and fail under CI without it.
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


async def test_an_outage_gives_fast_503s_and_everything_recovers(
    server: ThrowawayPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    store = PrismaSessionStore(server.url, check_period=0.1)
    await store.create_table()
    app = make_app(store)
    async with store, client_for(app) as client:
        await client.post("/write", params={"value": "before"})
        assert (await client.get("/read")).json()["value"] == "before"

        await asyncio.to_thread(server.stop)
        with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
            started = time.monotonic()
            read = await client.get("/read")
            write = await client.post("/write", params={"value": "during"})
            elapsed = time.monotonic() - started
            async with client_for(app) as anonymous:
                noop = await anonymous.get("/noop")
            await asyncio.sleep(0.3)  # a few prune runs fail meanwhile
        assert read.status_code == 503
        assert write.status_code == 503
        assert read.headers["retry-after"] == "5"
        assert "Session store unavailable" in read.text
        assert elapsed < 5, "requests must fail fast, not hang"
        assert noop.status_code == 200  # a route that does not need the session keeps working
        assert "session store unavailable, answering 503" in caplog.text
        assert "pruning expired sessions failed" in caplog.text
        assert store.interval_running

        await asyncio.to_thread(server.start)
        read = await client.get("/read")
        assert read.status_code == 200
        assert read.json()["value"] == "before"  # the failed write left nothing behind
        write = await client.post("/write", params={"value": "after"})
        assert write.status_code == 200
        assert (await client.get("/read")).json()["value"] == "after"

        # The prune loop came back too: an expired row goes without a manual call.
        await insert_row(store.engine, "expired", {}, utcnow() - timedelta(seconds=1))

        async def pruned() -> bool:
            return "expired" not in await rows(store.engine)

        await wait_until(pruned)
        assert len(await rows(store.engine)) == 1


async def test_an_unreachable_database_answers_503_without_hanging(postgres_url: str) -> None:
    """A host that accepts the connection and then says nothing (a black hole), not one that refuses."""
    held: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answer

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    store = PrismaSessionStore(url, operation_timeout=1)
    try:
        async with client_for(make_app(store)) as client:
            cookie = {"cookie": "connect.sid=" + Signer([SECRET]).cookie_value("some-session")}
            started = time.monotonic()
            response = await client.get("/read", headers=cookie)
            elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert elapsed < 2.5, f"took {elapsed:.1f} s"

        # A websocket handshake that needs the session is closed with 1011, not answered with HTTP.
        sent = await websocket_that_loads(store, cookie["cookie"])
        assert sent == [{"type": "websocket.close", "code": 1011, "reason": "session store unavailable"}]
    finally:
        await store.shutdown()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_database_that_stops_answering_gives_503_not_a_hung_request(postgres_url: str) -> None:
    """The row is locked by another transaction, so the write waits: the deadline ends the wait."""
    store = PrismaSessionStore(postgres_url, table_name="custom_sessions", operation_timeout=1)
    await store.create_table()
    try:
        async with client_for(make_app(store)) as client:
            await client.post("/write", params={"value": "before"})
            sid = next(iter(await rows(store.engine, "custom_sessions")))
            blocker = await asyncpg.connect(
                make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
            )
            try:
                transaction = blocker.transaction()
                await transaction.start()
                await blocker.execute('SELECT 1 FROM "custom_sessions" WHERE sid = $1 FOR UPDATE', sid)
                started = time.monotonic()
                response = await client.post("/write", params={"value": "blocked"})
                elapsed = time.monotonic() - started
                await transaction.rollback()
            finally:
                await blocker.close()
            assert response.status_code == 503
            assert elapsed < 2.5, f"took {elapsed:.1f} s"
            assert (await client.get("/read")).json()["value"] == "before"
            assert (await client.post("/write", params={"value": "after"})).status_code == 200
    finally:
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql('DROP TABLE "custom_sessions"')
        await store.shutdown()
