"""The seed's own model: prisma-session-store 2.x names the expiry column `expires`, 3.x `expiresAt`.

The store finds which one its table has by itself, with one look at the table when it first reaches it
(or is told, `expires_column=`), and then works the same on either; the migration helper creates
either generation.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Column, MetaData, Table, Text, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, TableMissingError
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import PrismaDateTime, session_table
from tests.helpers import alembic, client_for, close_to, make_app, run_module, scratch_database


class Statements:
    """Every statement sent through the engine, in full."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sent: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    @property
    def look_ups(self) -> int:
        return sum(statement.lstrip().startswith("SELECT *") for statement in self.sent)


async def create(engine: AsyncEngine, table: Table) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(table.create)


async def expires_column_values(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        result = await conn.execute(session_table(expires_column="expires").select())
        return {row.sid: row.expiresAt for row in result}


async def test_a_table_with_expires_works_through_http_and_the_store_api(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    await create(engine, session_table(expires_column="expires"))
    statements = Statements(engine)
    store = make_store()  # no expires_column: it finds `expires` by itself
    app = make_app(store)

    async with client_for(app) as client:
        assert (await client.post("/increment")).json() == {"n": 1}
        assert (await client.post("/increment")).json() == {"n": 2}
        assert (await client.post("/login")).status_code == 200
        assert (await client.post("/write", params={"value": "kept"})).status_code == 200
        moved = await client.post("/login-keep")
        assert moved.status_code == 200
        assert (await client.get("/dump")).json() == {"user": "alice", "value": "kept"}
        [sid] = await store.ids()
        assert close_to((await expires_column_values(engine))[sid], utcnow() + timedelta(days=14))
        assert (await client.delete("/session")).status_code == 200
    assert await store.length() == 0

    await store.set("a", {"cookie": {"originalMaxAge": 60_000, "expires": None}, "user_id": 7})
    await store.set("b", {"cookie": {"originalMaxAge": 60_000, "expires": None}, "user_id": 8})
    assert close_to((await expires_column_values(engine))["a"], utcnow() + timedelta(minutes=1))
    assert (await store.get("a"))["user_id"] == 7  # type: ignore[index]
    assert await store.length() == 2
    assert sorted(await store.ids()) == ["a", "b"]
    assert set(await store.all()) == {"a", "b"}
    assert set(await store.matching(user_id=7)) == {"a"}
    assert await store.touch("a", {"cookie": {"originalMaxAge": 3_600_000, "expires": None}})
    assert close_to((await expires_column_values(engine))["a"], utcnow() + timedelta(hours=1))
    assert await store.destroy_all(user_id=8) == 1
    async with engine.begin() as conn:
        await conn.execute(
            text('UPDATE "Session" SET expires = :past'), {"past": utcnow() - timedelta(days=1)}
        )
    assert await store.length() == 0
    assert await store.prune() == 1
    assert statements.look_ups == 1  # one look at the table, the first time, and never again


async def test_the_expiry_column_can_be_named_and_is_then_checked(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    await create(engine, session_table(expires_column="expires"))
    store = make_store(expires_column="expires")
    await store.set("s", {"cookie": {"originalMaxAge": 60_000, "expires": None}})
    assert await store.get("s") == {"cookie": {"originalMaxAge": 60_000, "expires": None}}

    wrong = make_store(expires_column="expiresAt")
    with pytest.raises(ConfigurationError, match=r'has no column "expiresAt" \(expires_column\)'):
        await wrong.get("s")


async def test_a_table_without_an_expiry_column_is_a_clear_error(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    await create(
        engine,
        Table("Session", MetaData(), *(Column(name, Text) for name in ("id", "sid", "data", "expiry"))),
    )
    store = make_store()
    with pytest.raises(ConfigurationError) as raised:
        await store.get("s")
    message = str(raised.value)
    assert 'has neither "expiresAt" (prisma-session-store 3.x) and "expires" (2.x)' in message
    assert "(columns: id, sid, data, expiry)" in message
    assert 'expires_column="..."' in message
    async with client_for(make_app(store)) as client:
        with pytest.raises(ConfigurationError, match="has neither"):  # a 500 in a server, not a 503
            await client.post("/increment")


async def test_a_table_with_both_columns_or_without_sid_is_a_clear_error(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    both = [Column(name, Text) for name in ("id", "sid", "data")]
    both += [Column(name, PrismaDateTime) for name in ("expiresAt", "expires")]
    await create(engine, Table("Session", MetaData(), *both))
    with pytest.raises(ConfigurationError, match='has both "expiresAt"'):
        await make_store().length()
    assert await make_store(expires_column="expiresAt").length() == 0

    await create(engine, Table("sessions", MetaData(), *(Column(n, Text) for n in ("id", "data", "expires"))))
    with pytest.raises(
        ConfigurationError, match=r"lacks sid: it is not prisma-session-store's Session model"
    ):
        await make_store(table_name="sessions").length()


async def test_a_missing_table_is_looked_for_again_once_it_exists(
    make_store: Callable[..., PrismaSessionStore],
) -> None:
    store = make_store()
    with pytest.raises(TableMissingError):
        await store.length()
    await store.create_table()
    assert await store.length() == 0


# -- the migration helper ------------------------------------------------------------------------


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    with scratch_database("fps_expires", migrate=False) as url:
        yield url


async def _postgres_columns(url: str) -> tuple[list[str], set[str]]:
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'Session' "
            "ORDER BY ordinal_position"
        )
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'Session'")
    finally:
        await conn.close()
    return [row[0] for row in columns], {row[0] for row in indexes}


def test_migrate_creates_the_expires_generation_on_postgresql(empty_postgres: str, tmp_path: Path) -> None:
    done = run_module(
        "fastapi_prisma_session",
        "migrate",
        "--database-url",
        empty_postgres,
        "--expires-column",
        "expires",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    columns, indexes = asyncio.run(_postgres_columns(empty_postgres))
    assert columns == ["id", "sid", "data", "expires"]
    assert indexes == {"Session_pkey", "Session_sid_key", "Session_expires_idx"}
    checked = alembic(empty_postgres, "-x", "expires_column=expires", "check")
    assert checked.returncode == 0, checked.stderr
    assert alembic(empty_postgres, "check").returncode != 0  # the 3.x model is not what is there

    async def use() -> dict[str, Any] | None:
        async with PrismaSessionStore(empty_postgres) as store:
            await store.set("s", {"cookie": {"originalMaxAge": 60_000, "expires": None}, "n": 1})
            return await store.get("s")

    assert asyncio.run(use()) == {"cookie": {"originalMaxAge": 60_000, "expires": None}, "n": 1}


def test_migrate_creates_either_generation_on_sqlite(tmp_path: Path) -> None:
    for column in ("expires", "expiresAt"):
        path = tmp_path / f"{column}.db"
        done = run_module(
            "fastapi_prisma_session",
            "migrate",
            "--database-url",
            f"sqlite:///{path}",
            "--expires-column",
            column,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(path) as db:
            names = [row[1] for row in db.execute("PRAGMA table_info('Session')")]
            indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert names == ["id", "sid", "data", column]
        assert f"Session_{column}_idx" in indexes
    sql = run_module(
        "fastapi_prisma_session",
        "migrate",
        "--sql",
        "--database-url",
        "sqlite:///x.db",
        "--expires-column",
        "expires",
        cwd=tmp_path,
    )
    assert 'CREATE INDEX "Session_expires_idx" ON "Session" (expires);' in sql.stdout
