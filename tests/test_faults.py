"""Faults: the database goes away mid-run and comes back. Requests that need the session get a quick
503, nothing is half-written, and the middleware and the prune loop recover without a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.store import utcnow
from tests.conftest import client_for, make_app
from tests.helpers import insert_row, rows
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
        for _ in range(50):
            if "expired" not in await rows(store.engine):
                break
            await asyncio.sleep(0.1)
        assert "expired" not in await rows(store.engine)
        assert len(await rows(store.engine)) == 1
