"""The seed's own model: prisma-session-store 2.x names the expiry column `expires`, 3.x `expiresAt`.

The store finds which one its table has by itself, with one look at the table when it first reaches it
(or is told, `expires_column=`), and then works the same on either. (The migration helper creates either
generation: tests/test_migration.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, TableMissingError
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import PrismaDateTime, session_table
from tests.helpers import client_for, close_to, make_app


class Statements:
    """Every statement a store sends, in full."""

    def __init__(self, store: PrismaSessionStore) -> None:
        self.sent: list[str] = []
        store.add_query_logger(lambda logged: self.sent.append(logged.query))

    @property
    def look_ups(self) -> int:
        """The looks at the table's columns: a query for no rows, or PostgreSQL's catalog."""
        return sum(
            statement.lstrip().startswith("SELECT *") or "pg_attribute" in statement
            for statement in self.sent
        )


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
    store = make_store()  # no expires_column: it finds `expires` by itself
    statements = Statements(store)
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
        table = session_table(expires_column="expires")
        await conn.execute(table.update().values(expiresAt=utcnow() - timedelta(days=1)))
    assert await store.length() == 0
    # The session, and the marker /login-keep left where the session was before it moved.
    assert await store.prune() == 2
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
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore], caplog: pytest.LogCaptureFixture
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
        with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
            response = await client.post("/increment")
    assert response.status_code == 500  # not a 503: waiting will not mend it
    assert "retry-after" not in response.headers
    [record] = caplog.records  # one line, the message that names the fix, and no traceback
    assert record.exc_info is None
    assert "session store not set up, answering 500 to POST /increment" in record.getMessage()
    assert 'expires_column="..."' in record.getMessage()
    assert "\n" not in record.getMessage()


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


async def test_requests_that_arrive_together_share_the_one_look(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    await create(engine, session_table(expires_column="expires"))
    store = make_store()
    statements = Statements(store)
    assert await asyncio.gather(*(store.get(f"s{n}") for n in range(20))) == [None] * 20
    assert await store.length() == 0
    assert statements.look_ups == 1
