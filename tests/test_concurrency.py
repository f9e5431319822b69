"""Concurrent requests of one session: different keys all survive, the same key keeps the last write,
and a logout is never undone. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from tests.helpers import StatementLog, client_for, make_app, rows

COOKIE = {"originalMaxAge": 60_000, "expires": None, "httpOnly": True, "path": "/"}

WRITERS = 50


async def stored_data(engine: AsyncEngine, sid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((await rows(engine))[sid]["data"])
    return data


async def test_a_merge_writes_only_the_changed_and_removed_keys(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"cookie": COOKIE, "a": 1, "b": 2})
    await store.set("s", {"cookie": COOKIE, "a": 1, "b": 2, "c": 3})  # another request added c
    fresh_cookie = {**COOKIE, "originalMaxAge": 120_000}
    stale_copy = {"cookie": fresh_cookie, "a": 10}  # this request set a and deleted b
    assert await store.update("s", stale_copy, changed={"a"}, removed={"b"}) is True
    assert await stored_data(engine, "s") == {"cookie": fresh_cookie, "a": 10, "c": 3}


async def test_a_merge_keeps_every_json_type(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    kept = {
        "t": True,
        "f": False,
        "none": None,
        "n": 1.5,
        "big": 2**53,
        "s": 'q"uote ✓',
        "arr": [1, [2]],
        "o": {"x": {}},
    }
    await store.set("s", {"cookie": COOKIE, **kept})
    written = {"t2": True, "none2": None, "o2": {"y": [False]}, "s2": "é"}
    await store.update("s", {"cookie": COOKIE, **written}, changed=set(written))
    assert await stored_data(engine, "s") == {"cookie": COOKIE, **kept, **written}


async def test_a_merge_replaces_a_nested_value_instead_of_merging_it(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"cookie": COOKIE, "prefs": {"theme": "dark", "lang": "en"}})
    await store.update("s", {"cookie": COOKIE, "prefs": {"lang": "fr"}}, changed={"prefs"})
    assert (await stored_data(engine, "s"))["prefs"] == {"lang": "fr"}


async def test_a_merge_does_not_revive_a_deleted_row(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    assert await store.update("gone", {"cookie": COOKIE, "a": 1}, changed={"a"}) is False
    assert await rows(engine) == {}


async def test_concurrent_writers_of_different_keys_all_keep_their_changes(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with client_for(make_app(store)) as client:
        sid = (await client.post("/write", params={"key": "first", "value": "0"})).json()["id"]
        responses = await asyncio.gather(
            *(client.post("/write", params={"key": f"k{n}", "value": str(n)}) for n in range(WRITERS))
        )
    assert {r.status_code for r in responses} == {200}
    data = await stored_data(engine, sid)
    assert {key: data[key] for key in data if key.startswith("k")} == {
        f"k{n}": str(n) for n in range(WRITERS)
    }
    assert data["first"] == "0"


async def test_concurrent_writers_of_the_same_key_keep_the_last_write(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)
    async with client_for(app) as client:
        sid = (await client.post("/write", params={"value": "first"})).json()["id"]
        app.state.gate = asyncio.Event()
        slow = asyncio.create_task(client.post("/slow-write", params={"value": "slow"}))
        await asyncio.sleep(0.1)
        await client.post("/write", params={"value": "fast"})
        assert (await stored_data(engine, sid))["value"] == "fast"
        app.state.gate.set()
        await slow
    assert (await stored_data(engine, sid))["value"] == "slow"  # the later write wins


async def test_an_unchanged_row_is_rewritten_in_one_statement(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await store.set("s", {"cookie": COOKIE, "a": 1})
    loaded = await store.load("s")
    assert loaded is not None
    await asyncio.sleep(0)  # the load's own log line
    statements.clear()
    new = {"cookie": COOKIE, "a": 2}
    assert await store.update("s", new, changed={"a"}, expected=loaded.text) is True
    await asyncio.sleep(0)  # let asyncpg's query logger report
    assert statements.statements == ["UPDATE"]
    assert await stored_data(engine, "s") == new


async def test_a_row_changed_since_it_was_loaded_is_merged_not_overwritten(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await store.set("s", {"cookie": COOKIE, "a": 1})
    loaded = await store.load("s")
    assert loaded is not None
    await store.set("s", {"cookie": COOKIE, "a": 1, "b": "theirs"})  # another request wrote meanwhile
    statements.clear()
    assert await store.update("s", {"cookie": COOKIE, "a": 2}, changed={"a"}, expected=loaded.text) is True
    await asyncio.sleep(0)
    # The compare-and-set missed; the merge read the row as it is now and set it again, in Python.
    assert statements.statements == ["UPDATE", "SELECT", "UPDATE"]
    assert await stored_data(engine, "s") == {"cookie": COOKIE, "a": 2, "b": "theirs"}


async def test_writers_of_one_session_queue_and_leave_no_trace_when_cancelled(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    """Writes of one session wait for each other in this process. A writer cancelled while it waits (its
    request gone) is skipped, one handed the session as it is cancelled passes it on, and once every
    write is done the queue is gone."""
    await store.set("s", {"cookie": COOKIE})
    writes = [
        asyncio.create_task(store.update("s", {"cookie": COOKIE, f"k{n}": n}, changed={f"k{n}"}))
        for n in range(WRITERS)
    ]
    await asyncio.sleep(0)  # each has entered the queue, or holds the session
    cancelled = set(range(1, WRITERS, 3))
    for n in cancelled:
        writes[n].cancel()
    results = await asyncio.gather(*writes, return_exceptions=True)
    for n, result in enumerate(results):
        assert isinstance(result, asyncio.CancelledError) if n in cancelled else result is True
    data = await stored_data(engine, "s")
    written = {f"k{n}" for n in range(WRITERS) if n not in cancelled}
    assert {key for key in data if key.startswith("k")} == written
    assert store.executor.writers.writers == {}


async def test_a_writer_that_waits_past_its_deadline_is_unavailable(
    make_store: Any, engine: AsyncEngine
) -> None:
    from fastapi_prisma_session import StoreUnavailableError

    store = make_store(operation_timeout=0.3)
    await store.create_table()
    await store.set("s", {"cookie": COOKIE, "a": 0})
    writers = store.executor.writers
    holder = writers.one("s")
    await holder.__aenter__()  # another request's write holds the session
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreUnavailableError, match=r"did not finish within 0\.3 s"):
            await store.update("s", {"cookie": COOKIE, "a": 1}, changed={"a"})
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await holder.__aexit__(None, None, None)
    assert writers.writers == {}
    assert await store.update("s", {"cookie": COOKIE, "a": 2}, changed={"a"}) is True
    assert (await stored_data(engine, "s"))["a"] == 2


async def test_a_write_and_its_merge_end_within_one_deadline(make_store: Any) -> None:
    """The writer that neither waits nor leaves the request pool starts no deadline of its own;
    `bound()`, called before a merge's further statements, starts what is left of it."""
    from fastapi_prisma_session import StoreUnavailableError

    store = make_store(operation_timeout=0.3)
    await store.create_table()
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def write_and_merge() -> None:
        async with store.executor.writers.one("s") as writer:
            await asyncio.sleep(0.2)  # the first compare-and-set, lost
            writer.bound()
            await asyncio.sleep(5)  # the merge's statements, which would take too long

    with pytest.raises(StoreUnavailableError, match=r"did not finish within 0\.3 s"):
        await write_and_merge()
    assert loop.time() - started < 1.5
    assert store.executor.writers.writers == {}
