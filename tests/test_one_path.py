"""Every public operation ends within `operation_timeout`, whatever statement it runs and on whatever
connection: a logout (`destroy`), a login (`regenerate`), `destroy_all`, `matching`, `set`, `prune` and
the first call of a store that has not looked at its table yet. A database that cannot answer in time
gives a 503 (StoreUnavailableError), never a request hung for the driver's own 15-second timeout, and a
write answered 503 is never applied afterwards.

The faults are real: a row lock held by another connection's open transaction, and a PostgreSQL that
goes silent behind `faultproxy.FaultProxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore, StoreUnavailableError
from fastapi_prisma_session.models import session_table
from tests.faultproxy import FaultProxy
from tests.helpers import client_for, rows
from tests.login_app import cookie_of, logged_in, login_app

OPERATION_TIMEOUT = 1.0
# A call still running after this many seconds is reported as hung and cut off, so that a test of a
# break fails in seconds rather than waiting out the driver's own timeouts (15 s and more).
CUT_OFF = 4.0
HUNG = "still running after the cut-off"
COOKIE = {"originalMaxAge": None, "expires": None}

on_servers = pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)


async def ended(call: Awaitable[Any]) -> tuple[Any, float]:
    """What `call` returned or raised (HUNG if it had not ended after CUT_OFF s), and how long it took."""
    task = asyncio.ensure_future(call)
    started = time.monotonic()
    await asyncio.wait({task}, timeout=CUT_OFF)
    elapsed = time.monotonic() - started
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return HUNG, elapsed
    error = task.exception()
    return (error if error is not None else task.result()), elapsed


async def post(client: httpx.AsyncClient, path: str, cookie: str, **params: str) -> tuple[Any, float]:
    """POST `path` as the session of `cookie`: the response (or HUNG) and how long it took."""
    return await ended(client.post(path, params=params, headers={"cookie": cookie}))


def status(outcome: Any) -> Any:
    return outcome.status_code if isinstance(outcome, httpx.Response) else outcome


@contextlib.asynccontextmanager
async def row_locked(engine: AsyncEngine, sid: str) -> AsyncIterator[None]:
    """Another connection holds session `sid`'s row (SELECT ... FOR UPDATE in an open transaction).

    On MySQL it reads committed data, as the store's own connections do: under InnoDB's default,
    REPEATABLE READ, a lock taken through the sid index also locks the gap before the row, and other
    sessions whose new sids fall in that gap would wait for it, whatever the store does."""
    table = session_table()
    async with engine.connect() as conn:
        if engine.dialect.name == "mysql":
            conn = await conn.execution_options(isolation_level="READ COMMITTED")
        transaction = await conn.begin()
        await conn.execute(select(table.c.id).where(table.c.sid == sid).with_for_update())
        try:
            yield
        finally:
            await transaction.rollback()


# -- a row locked by another transaction ------------------------------------------------------------


@on_servers
@pytest.mark.usefixtures("_drop_tables")
async def test_a_locked_users_logout_and_login_answer_503_while_other_users_log_in_and_out(
    database_url: str, engine: AsyncEngine
) -> None:
    """The locked user's logout (`destroy`) and logins (`regenerate()` and `regenerate(keep_data=True)`)
    each answer 503 within about operation_timeout; six other users, logging in and out meanwhile, all
    succeed and are not held up behind them: the stuck statements keep no connection the others need."""
    store = PrismaSessionStore(database_url, operation_timeout=OPERATION_TIMEOUT)
    try:
        await store.create_table()
        async with client_for(login_app(store)) as client:
            locked_sid, locked = await logged_in(client, "locked")
            others = [(f"user{n}", (await logged_in(client, f"user{n}"))[1]) for n in range(6)]

            async def log_in_and_out(cookie: str, user: str) -> list[tuple[Any, float]]:
                seen = []
                for path in ("/login", "/login-keep", "/logout"):
                    response, elapsed = await post(client, path, cookie, user=user)
                    seen.append((status(response), elapsed))
                    if status(response) != 200:
                        break
                    if path != "/logout":
                        cookie = cookie_of(response.json()["id"])
                return seen

            async with row_locked(engine, locked_sid):
                stuck = asyncio.gather(
                    post(client, "/logout", locked),
                    post(client, "/login", locked, user="locked"),
                    post(client, "/login-keep", locked, user="locked"),
                )
                results = await asyncio.gather(stuck, *(log_in_and_out(c, u) for u, c in others))
    finally:
        await store.shutdown()
    stuck_results = [(status(response), seconds) for response, seconds in results[0]]
    unrelated = [seen for user in results[1:] for seen in user]
    assert [code for code, _ in stuck_results] == [503, 503, 503], stuck_results
    assert max(seconds for _, seconds in stuck_results) < 2.5, stuck_results
    assert [code for code, _ in unrelated] == [200] * 18, unrelated
    # Not queued behind the lock: one that waited for it would have taken a whole operation_timeout.
    assert max(seconds for _, seconds in unrelated) < OPERATION_TIMEOUT, unrelated


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mariadb"], indirect=True)
@pytest.mark.usefixtures("_drop_tables")
async def test_log_out_everywhere_behind_a_locked_row_holds_up_no_other_user(
    database_url: str, engine: AsyncEngine
) -> None:
    """`destroy_all(user_id=1)` waits for user 1's row, which another connection holds locked; user 2's
    save meanwhile is not held up by it (destroy_all locks only the rows that match), and once the lock
    goes user 1's session is gone and user 2's kept."""
    store = PrismaSessionStore(database_url, operation_timeout=OPERATION_TIMEOUT)
    try:
        await store.create_table()
        await store.set("user-one", {"cookie": {}, "user_id": 1})
        await store.set("user-two", {"cookie": {}, "user_id": 2})
        if engine.dialect.name == "sqlite":
            # SQLite locks the whole database, not a row: the lock here is destroy_all's own, and what
            # is measured is that user 2's save waits only for it, not for the deadline.
            outcome = await asyncio.gather(
                ended(store.destroy_all(user_id=1)),
                ended(store.set("user-two", {"cookie": {}, "user_id": 2})),
            )
            assert outcome[0][0] == 1
        else:
            async with row_locked(engine, "user-one"):
                everywhere = asyncio.ensure_future(ended(store.destroy_all(user_id=1)))
                await asyncio.sleep(0.1)  # waiting for user 1's row
                outcome = [await ended(store.set("user-two", {"cookie": {}, "user_id": 2}))]
            outcome.insert(0, await everywhere)
        saved, took = outcome[1]
        assert saved is None, saved
        assert took < OPERATION_TIMEOUT / 2, outcome
        assert await store.get("user-two") == {"cookie": {}, "user_id": 2}
        if not isinstance(outcome[0][0], int):  # it ran out of time behind the lock: a 503, nothing lost
            assert isinstance(outcome[0][0], StoreUnavailableError), outcome
            assert await store.destroy_all(user_id=1) == 1
        assert await store.get("user-one") is None
    finally:
        await store.shutdown()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
@pytest.mark.usefixtures("_drop_tables")
async def test_a_write_answered_503_is_never_applied_after_the_lock_goes(
    database_url: str, engine: AsyncEngine
) -> None:
    """MariaDB. Writes of a session whose row another transaction holds answer 503; the lock is released
    as soon as the first of them has answered. None of the values answered 503 is ever stored: a
    statement the store gave up on does not go on waiting on the server, to be applied when the lock
    goes."""
    store = PrismaSessionStore(database_url, operation_timeout=OPERATION_TIMEOUT)
    try:
        await store.create_table()
        async with client_for(login_app(store)) as client:
            sid, cookie = await logged_in(client, "u")
            async with row_locked(engine, sid):
                writes = [
                    asyncio.ensure_future(post(client, "/write", cookie, key=f"k{n}", value=f"v{n}"))
                    for n in range(5)
                ]
                await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
            results = [status(response) for response, _ in await asyncio.gather(*writes)]
            await asyncio.sleep(3)  # time for a statement still waiting on the server to go through
    finally:
        await store.shutdown()
    assert 503 in results, results
    assert set(results) <= {200, 503}, results
    stored = json.loads((await rows(engine))[sid]["data"])
    applied_after_503 = [f"k{n}" for n, code in enumerate(results) if code == 503 and f"k{n}" in stored]
    assert applied_after_503 == [], (results, stored)
    assert [f"k{n}" for n, code in enumerate(results) if code == 200 and f"k{n}" not in stored] == []


# -- a PostgreSQL that goes silent --------------------------------------------------------------------


@pytest.fixture
async def through_proxy(postgres_url: str, proxy: FaultProxy) -> AsyncIterator[str]:
    """The URL of the test database through the proxy, its `Session` table made directly."""
    direct = PrismaSessionStore(postgres_url)
    async with direct.engine.begin() as conn:
        await conn.exec_driver_sql('DROP TABLE IF EXISTS "Session"')
    await direct.create_table()
    try:
        yield make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.forward()  # whatever the test left it in: the store's connections can close
        async with direct.engine.begin() as conn:
            await conn.exec_driver_sql('DROP TABLE IF EXISTS "Session"')
        await direct.shutdown()


StoreCall = Callable[[PrismaSessionStore, httpx.AsyncClient, str], Awaitable[Any]]


async def _logout(store: PrismaSessionStore, client: httpx.AsyncClient, sid: str) -> Any:
    response = await client.post("/logout", headers={"cookie": cookie_of(sid)})
    if response.status_code == 503:
        raise StoreUnavailableError(response.text)
    return response


SILENT_CALLS: dict[str, StoreCall] = {
    "logout": _logout,
    "destroy_all": lambda store, client, sid: store.destroy_all(user_id="u"),
    "matching": lambda store, client, sid: store.matching(user_id="u"),
    "set": lambda store, client, sid: store.set("other", {"cookie": COOKIE, "user_id": "u"}),
    "destroy": lambda store, client, sid: store.destroy(sid),
    "prune": lambda store, client, sid: store.prune(),
}


@pytest.mark.parametrize("call", list(SILENT_CALLS))
async def test_every_operation_ends_within_its_deadline_when_postgresql_goes_silent(
    through_proxy: str, proxy: FaultProxy, call: str
) -> None:
    """The connections every operation uses are open (they served a login, a match, a set and a prune),
    then the server goes silent: a logout answers 503, and `destroy_all`, `matching`, `set`, `destroy`
    and `prune` raise StoreUnavailableError, each within about operation_timeout, not after the
    driver's 15-second command timeout."""
    store = PrismaSessionStore(through_proxy, operation_timeout=OPERATION_TIMEOUT)
    try:
        async with client_for(login_app(store)) as client:
            sid, _ = await logged_in(client, "u")
            await store.set("warm", {"cookie": COOKIE, "user_id": "w"})
            assert set(await store.matching(user_id="u")) == {sid}
            await store.prune()
            proxy.blackhole()
            outcome, elapsed = await ended(SILENT_CALLS[call](store, client, sid))
            proxy.forward()
    finally:
        await store.shutdown()
    assert isinstance(outcome, StoreUnavailableError), outcome
    assert elapsed < 2.5 * OPERATION_TIMEOUT, f"{call} took {elapsed:.1f} s"


@pytest.mark.parametrize("method", ["load", "get"])
@pytest.mark.parametrize("connection", ["none open", "one open"])
async def test_the_first_call_of_a_store_ends_within_one_deadline(
    through_proxy: str, proxy: FaultProxy, method: str, connection: str
) -> None:
    """A fresh store, which has not looked at its table yet, on a database that has gone silent: its
    first `load` (or `get`) raises StoreUnavailableError within one operation_timeout, the look at the
    table and the read sharing it. With "one open", `create_table()` (as an app's startup may call it)
    left an idle connection that the look at the table then takes."""
    store = PrismaSessionStore(through_proxy, operation_timeout=OPERATION_TIMEOUT)
    try:
        if connection == "one open":
            await store.create_table()
        assert not store.table_checked
        proxy.blackhole()
        outcome, elapsed = await ended(getattr(store, method)("some-session"))
        proxy.forward()
    finally:
        await store.shutdown()
    assert isinstance(outcome, StoreUnavailableError), outcome
    assert elapsed < 1.6 * OPERATION_TIMEOUT, f"the first {method} took {elapsed:.1f} s"
