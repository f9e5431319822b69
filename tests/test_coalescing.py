"""Coalesced loads: requests that wait for a connection at once are loaded by one statement, and each
still gets its own session. Run on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.coalescing import padded_arity
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, make_app, rows, set_data, shift_expiry

COOKIE = {"originalMaxAge": 3_600_000, "expires": None, "httpOnly": True, "path": "/"}
SESSIONS = 200


async def coalescing_store(make_store: Callable[..., PrismaSessionStore]) -> PrismaSessionStore:
    # Two connections: 200 concurrent loads mostly find both busy, and wait in batches.
    store = make_store(db_record_id_is_session_id=True, request_connections=2)
    await store.create_table()
    await store.check_table()
    return store


async def seeded(store: PrismaSessionStore, count: int) -> list[str]:
    sids = [f"sid-{n:03d}-{random.getrandbits(32):08x}" for n in range(count)]
    for n, sid in enumerate(sids):
        await store.set(sid, {"cookie": COOKIE, "owner": sid, "n": n})
    return sids


def test_a_batch_is_padded_to_a_power_of_two() -> None:
    assert [padded_arity(n) for n in (1, 2, 3, 4, 5, 31, 32, 33, 64)] == [1, 2, 4, 4, 8, 32, 32, 64, 64]


async def test_concurrent_loads_each_get_their_own_row(
    make_store: Callable[..., PrismaSessionStore], engine: AsyncEngine
) -> None:
    store = await coalescing_store(make_store)
    sids = await seeded(store, SESSIONS)
    expired, unreadable, not_an_object = sids[:10], sids[10:20], sids[20:25]
    for sid in expired:
        await shift_expiry(engine, sid, timedelta(hours=-2))
    for sid in unreadable:
        await set_data(engine, sid, "{not json")
    for sid in not_an_object:
        await set_data(engine, sid, "[1, 2]")
    # Missing: never stored, or a live sid in other case (MariaDB's collation folds case; the load does not).
    missing = [f"missing-{n}" for n in range(20)] + [sid.upper() for sid in sids[100:110]]
    # Every sid asked for twice in a row (both in one batch, mostly), and the rest shuffled in between.
    asked = [sid for sid in sids + missing for _ in range(2)]
    before = store.statistics.as_dict()

    results = await asyncio.gather(*(store.load(sid) for sid in asked))

    dead = set(expired) | set(unreadable) | set(not_an_object) | set(missing)
    for sid, stored in zip(asked, results, strict=True):
        if sid in dead:
            assert stored is None, sid
        else:
            assert stored is not None, sid
            assert stored.data["owner"] == sid
            assert stored.data["n"] == sids.index(sid)
            assert json.loads(stored.text or "")["owner"] == sid
    # Two loads of one sid get data of their own, not one shared dict.
    first, second = (results[i] for i in range(2 * 30, 2 * 30 + 2))
    assert first is not None
    assert second is not None
    assert first.data is not second.data
    statistics = store.statistics
    assert statistics.loads - before["loads"] == len(asked)
    # Coalesced: far fewer statements than loads.
    assert statistics.load_statements - before["load_statements"] < len(asked) / 4
    # The expired rows were deleted as they were found; the unreadable ones are kept.
    left = await rows(engine)
    assert not set(expired) & set(left)
    assert set(unreadable) <= set(left)


async def test_a_lone_load_runs_alone_at_once(make_store: Callable[..., PrismaSessionStore]) -> None:
    store = await coalescing_store(make_store)
    (sid,) = await seeded(store, 1)
    before = store.statistics.as_dict()
    stored = await store.load(sid)
    assert stored is not None
    assert stored.data["owner"] == sid
    after = store.statistics.as_dict()
    assert after["loads"] - before["loads"] == 1
    assert after["load_statements"] - before["load_statements"] == 1
    assert after["statements"] - before["statements"] == 1


async def test_concurrent_requests_each_read_their_own_session(
    make_store: Callable[..., PrismaSessionStore],
) -> None:
    store = await coalescing_store(make_store)
    sids = await seeded(store, SESSIONS)
    signer = Signer(SECRET)
    before = store.statistics.as_dict()
    async with client_for(make_app(store)) as client:

        async def read(sid: str) -> tuple[str, list[str]]:
            client.cookies.clear()
            response = await client.get(
                "/read", headers={"cookie": f"connect.sid={signer.cookie_value(sid)}"}
            )
            assert response.status_code == 200
            return sid, response.json()["keys"]

        results = await asyncio.gather(*(read(sid) for sid in sids))
    assert len(results) == SESSIONS
    for _, keys in results:
        assert keys == ["n", "owner"]
    # Each answer was the session its cookie named: its owner key says whose it is.
    async with client_for(make_app(store)) as client:

        async def owner(sid: str) -> str:
            cookie = {"cookie": f"connect.sid={signer.cookie_value(sid)}"}
            response = await client.post("/write", params={"key": "seen", "value": sid}, headers=cookie)
            assert response.status_code == 200
            stored = await store.load(sid)
            assert stored is not None
            return str(stored.data["owner"])

        owners = await asyncio.gather(*(owner(sid) for sid in sids))
    assert owners == sids
    for sid in sids:
        stored = await store.load(sid)
        assert stored is not None
        assert stored.data["seen"] == sid
        assert stored.data["owner"] == sid
    assert (
        store.statistics.load_statements - before["load_statements"]
        < store.statistics.loads - before["loads"]
    )


async def test_loads_after_the_pools_connections_closed_still_get_their_own(
    make_store: Callable[..., PrismaSessionStore],
) -> None:
    store = await coalescing_store(make_store)
    sids = await seeded(store, 40)
    await store.executor.pool.close()
    results = await asyncio.gather(*(store.load(sid) for sid in sids))
    assert [None if stored is None else stored.data["owner"] for stored in results] == sids


async def test_loads_take_a_quarter_of_the_pool_and_leave_the_rest(
    make_store: Callable[..., PrismaSessionStore],
) -> None:
    # Eight connections: loads hold at most two of them (their lanes); the others stay for writes.
    store = make_store(db_record_id_is_session_id=True, request_connections=8)
    await store.create_table()
    await store.check_table()
    sids = await seeded(store, SESSIONS)
    await store.executor.pool.close()
    before = store.statistics.as_dict()
    results = await asyncio.gather(*(store.load(sid) for sid in sids))
    assert [None if stored is None else stored.data["owner"] for stored in results] == sids
    assert store.executor.pool.open_connections <= 2
    # Two loads alone, then the rest in batches of at most 64.
    assert store.statistics.load_statements - before["load_statements"] <= 2 + -(-(SESSIONS - 2) // 64)
