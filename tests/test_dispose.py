"""`dispose`, `stale` and `no_dispose_on_set`: declared upstream, never implemented there, working here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from tests.helpers import insert_row, rows

MakeStore = Callable[..., PrismaSessionStore]
EXPIRED = timedelta(seconds=-1)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, sid: str, session: dict[str, Any]) -> None:
        self.calls.append((sid, session))


async def disposing_store(make_store: MakeStore, **options: Any) -> tuple[PrismaSessionStore, Recorder]:
    recorder = Recorder()
    store = make_store(dispose=recorder, **options)
    await store.create_table()
    return store, recorder


async def test_destroy_disposes_each_dropped_session(make_store: MakeStore) -> None:
    store, disposed = await disposing_store(make_store)
    await store.set("a", {"n": 1})
    await store.set("b", {"n": 2})
    await store.destroy(["a", "b", "missing"])
    assert sorted(disposed.calls) == [("a", {"n": 1}), ("b", {"n": 2})]


async def test_expiry_on_get_disposes(make_store: MakeStore, engine: AsyncEngine) -> None:
    store, disposed = await disposing_store(make_store)
    await insert_row(engine, "old", {"n": 1}, utcnow() + EXPIRED)
    assert await store.get("old") is None
    assert disposed.calls == [("old", {"n": 1})]
    assert await rows(engine) == {}


async def test_prune_and_clear_dispose(make_store: MakeStore, engine: AsyncEngine) -> None:
    store, disposed = await disposing_store(make_store, prune_batch_size=2)
    for n in range(3):
        await insert_row(engine, f"old{n}", {"n": n}, utcnow() + EXPIRED)
    await store.set("live", {"n": 9})
    assert await store.prune() == 3
    assert sorted(sid for sid, _ in disposed.calls) == ["old0", "old1", "old2"]
    disposed.calls.clear()
    await store.clear()
    assert disposed.calls == [("live", {"n": 9})]


async def test_overwrite_disposes_the_old_session(make_store: MakeStore) -> None:
    store, disposed = await disposing_store(make_store)
    await store.set("s", {"v": "old"})
    assert disposed.calls == []  # a first write drops nothing
    await store.set("s", {"v": "new"})
    assert disposed.calls == [("s", {"v": "old"})]


async def test_no_dispose_on_set_skips_overwrites_only(make_store: MakeStore) -> None:
    store, disposed = await disposing_store(make_store, no_dispose_on_set=True)
    await store.set("s", {"v": "old"})
    await store.set("s", {"v": "new"})
    assert disposed.calls == []
    await store.destroy("s")
    assert disposed.calls == [("s", {"v": "new"})]


async def test_an_async_dispose_is_awaited(make_store: MakeStore) -> None:
    seen: list[str] = []

    async def dispose(sid: str, session: dict[str, Any]) -> None:
        seen.append(sid)

    store = make_store(dispose=dispose)
    await store.create_table()
    await store.set("s", {})
    await store.destroy("s")
    assert seen == ["s"]


async def test_stale_returns_an_expired_session_once(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(stale=True)
    await store.create_table()
    await insert_row(engine, "old", {"n": 1}, utcnow() + EXPIRED)
    assert await store.get("old") == {"n": 1}
    assert await store.get("old") is None
    assert await rows(engine) == {}


async def test_without_stale_an_expired_session_is_never_returned(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store()
    await store.create_table()
    await insert_row(engine, "old", {"n": 1}, utcnow() + EXPIRED)
    assert await store.get("old") is None
