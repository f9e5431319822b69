"""The executor reads every driver's errors one way: a deadlock is run again, a value the database refuses
is bad data (not an outage), and a refused login says to check the URL. On the real servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore
from fastapi_prisma_session.dialects.driver import Fault
from fastapi_prisma_session.executor import StatementError, Transaction


async def test_a_transaction_that_loses_a_deadlock_runs_again(store: PrismaSessionStore) -> None:
    """Two transactions lock two sessions' rows in opposite orders: the database ends one of them with a
    deadlock, after which nothing of it was applied, and the executor runs it again. Both succeed. (On
    SQLite a transaction takes the whole database's write lock: the second waits, and nothing deadlocks.)"""
    await store.set("a", {"n": 0})
    await store.set("b", {"n": 0})
    table = store.executor.sql.table
    both_hold_one = asyncio.Barrier(2)
    runs: list[str] = []

    def work(first: str, second: str) -> Callable[[Transaction], Awaitable[None]]:
        async def body(transaction: Transaction) -> None:
            runs.append(first)
            for sid in (first, second):
                update = table.update().where(table.c.sid == sid).values(data=f'{{"by":"{first}"}}')
                await transaction.execute(update, {})
                if sid == first and runs.count(first) == 1:  # only the first run waits for the other
                    with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                        await asyncio.wait_for(both_hold_one.wait(), 1)

        return body

    await asyncio.gather(
        store.executor.transaction(work("a", "b")), store.executor.transaction(work("b", "a"))
    )
    written = [await store.get(sid) for sid in ("a", "b")]
    # Whichever committed last wrote both rows: the loser's second run came after the winner's commit.
    assert written[0] == written[1]
    assert written[0] in ({"by": "a"}, {"by": "b"})
    assert len(runs) == (2 if store.engine.dialect.name == "sqlite" else 3)


async def test_a_value_the_database_refuses_is_bad_data_not_an_outage(store: PrismaSessionStore) -> None:
    """A date out of range (PostgreSQL), a key longer than VARCHAR(191) (MySQL), a blob over SQLite's
    limit: the statement did nothing, and the caller is told it was the value, not the database."""
    refused = {
        "postgresql": ("SELECT CAST(:value AS DATE)", "2026-13-45"),
        "mysql": (
            'INSERT INTO `Session` (id, sid, data, `expiresAt`) VALUES (:value, :value, "", NOW())',
            "x" * 300,
        ),
        "sqlite": ("SELECT zeroblob(:value)", 2_000_000_001),
    }
    statement, value = refused[store.engine.dialect.name]
    with pytest.raises(StatementError) as caught:
        await store.executor.execute(text(statement), {"value": value})
    assert caught.value.fault is Fault.BAD_DATA


@pytest.mark.parametrize("server", ["postgres_url", "mariadb_url"])
async def test_a_refused_login_says_to_check_the_url(server: str, request: pytest.FixtureRequest) -> None:
    wrong = (
        make_url(request.getfixturevalue(server))
        .set(username="fps_no_such_role")
        .render_as_string(hide_password=False)
    )
    store = PrismaSessionStore(wrong)
    try:
        with pytest.raises(ConfigurationError, match=r"refused the store's login.*check the user"):
            await store.get("s")
    finally:
        await store.shutdown()
