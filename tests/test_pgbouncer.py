"""The store and the middleware through a real PgBouncer (tests/pgbouncer.py): transaction mode with
Prisma's `?pgbouncer=true`, session mode with several workers, the deadline through the pooler, and the
store contract and HTTP tests of other modules run again through it (at the end of this file)."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_prisma_session import (
    ConfigurationError,
    PrismaSessionStore,
    StoreUnavailableError,
    pooler_connect_args,
)
from fastapi_prisma_session import urls as database
from fastapi_prisma_session.durations import utcnow
from tests import test_concurrency, test_middleware, test_session_api, test_store
from tests.helpers import ADMIN_URL, advisory_locks, scratch_database, serve
from tests.pgbouncer import PgBouncer, in_front_of_test_server, require_programs

USERS = 40
REQUESTS_PER_USER = 12  # what journey() makes
# The direct store calls that run beside the HTTP traffic.
DIRECT_SETS = 40
PRUNING_STORES = 3


@pytest.fixture(scope="module")
def transaction_bouncer(postgres_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode with 4 server connections, for this module's tests."""
    require_programs()
    with in_front_of_test_server("transaction", pool_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def scratch_url(postgres_url: str) -> Iterator[str]:
    """A migrated database of this module's own (each test uses sids of its own): its direct URL."""
    with scratch_database("fps_bouncer") as url:
        yield url


@pytest.fixture(scope="module")
def scratch(scratch_url: str) -> str:
    """That database's name."""
    name = make_url(scratch_url).database
    assert name is not None
    return name


def prisma_url(bouncer: PgBouncer, database: str, **params: str) -> str:
    """The plain URL a Prisma app has in DATABASE_URL for this pooler, with Prisma's parameters."""
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return bouncer.dsn(database) + (f"?{query}" if query else "")


def cookie() -> dict[str, Any]:
    return {"originalMaxAge": 600_000, "expires": (utcnow() + timedelta(minutes=10)).isoformat() + "Z"}


# -- real HTTP traffic -------------------------------------------------------------------------------


async def journey(client: httpx.AsyncClient, user: str, problems: list[str]) -> int:
    """One user's visit: log in, write, read, log out, log in again, log out everywhere. Every answer is
    checked against what this user did; what is not as expected goes into `problems`. Returns how many
    requests it made."""
    made = 0

    async def call(method: str, path: str, **params: str) -> Any:
        nonlocal made
        made += 1
        try:
            response = await client.request(method, path, params=params)
        except httpx.HTTPError as error:
            problems.append(f"{user} {method} {path}: {error!r}")
            return None
        if response.status_code != 200:
            problems.append(f"{user} {method} {path}: {response.status_code} {response.text[:300]}")
            return None
        return response.json()

    def expect(condition: bool, what: str, got: Any) -> None:
        if not condition:
            problems.append(f"{user}: wrong answer, expected {what}, got {got!r}")

    await call("POST", "/login", user=user)
    await call("POST", "/write", value=f"{user}-1")
    read = await call("GET", "/read")
    expect(read is not None and read["value"] == f"{user}-1", "the first write", read)
    await call("POST", "/write", key="other", value=user)
    await call("POST", "/write", value=f"{user}-2")
    dump = await call("GET", "/dump")
    expected = {"user": user, "other": user, "value": f"{user}-2"}
    expect(dump is not None and {key: dump.get(key) for key in expected} == expected, str(expected), dump)
    await call("DELETE", "/session")
    read = await call("GET", "/read")
    expect(read is not None and read["value"] is None and "user" not in read["keys"], "logged out", read)
    await call("POST", "/login", user=user)
    await call("POST", "/write", value="again")
    ended = await call("POST", "/logout-everywhere", user=user)
    expect(ended is not None and ended["ended"] == 1, "one session ended", ended)
    read = await call("GET", "/read")
    expect(read is not None and read["value"] is None and "user" not in read["keys"], "logged out", read)
    return made


async def traffic(base: str, users: int = USERS) -> tuple[int, list[str]]:
    """`users` users at once, each with a client (and cookie jar) of its own; (requests, problems)."""
    problems: list[str] = []
    clients = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(users)]
    try:
        made = await asyncio.gather(
            *(journey(client, f"user{n}", problems) for n, client in enumerate(clients))
        )
    finally:
        for client in clients:
            await client.aclose()
    return sum(made), problems


async def direct_calls(url: str, problems: list[str]) -> None:
    """`store.set` and `get` of many sessions at once, then three stores pruning at once.

    Their 80 statements queue for the engine's 2 connections, behind the app's 40 users on the pooler's
    4: `operation_timeout=30`, because what this asserts is that no answer is wrong or lost through the
    pooler, not how fast a loaded 2-core machine clears the queue (a slow run hit the default 5 s)."""
    store = PrismaSessionStore(url, db_record_id_is_session_id=True, operation_timeout=30)
    pruners = [
        PrismaSessionStore(url, prune_batch_size=5, prune_pause=0, operation_timeout=30)
        for _ in range(PRUNING_STORES)
    ]
    try:

        async def set_and_get(n: int) -> None:
            try:
                await store.set(f"direct{n}", {"cookie": cookie(), "n": n})
                got = await store.get(f"direct{n}")
            except Exception as error:
                problems.append(f"direct{n}: {error!r}")
                return
            if got is None or got.get("n") != n:
                problems.append(f"direct{n}: wrong answer {got!r}")

        await asyncio.gather(*(set_and_get(n) for n in range(DIRECT_SETS)))
        expired = {"originalMaxAge": 1, "expires": (utcnow() - timedelta(minutes=1)).isoformat() + "Z"}
        await asyncio.gather(*(store.set(f"old{n}", {"cookie": expired}) for n in range(30)))
        outcomes = await asyncio.gather(*(pruner.prune() for pruner in pruners), return_exceptions=True)
        problems.extend(f"prune: {outcome!r}" for outcome in outcomes if isinstance(outcome, BaseException))
        kept = await asyncio.gather(*(store.get(f"direct{n}") for n in range(DIRECT_SETS)))
        problems.extend(f"direct{n} gone after pruning" for n, got in enumerate(kept) if got is None)
    finally:
        for each in (store, *pruners):
            await each.shutdown()


async def expired_rows_left(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            """SELECT count(*) FROM "Session" WHERE "expiresAt" <= now() AT TIME ZONE 'utc'"""
        )
        return count
    finally:
        await conn.close()


def test_prisma_pgbouncer_url_in_transaction_mode(
    transaction_bouncer: PgBouncer, scratch: str, scratch_url: str
) -> None:
    """40 users over real HTTP (uvicorn) through PgBouncer in transaction mode with 4 server connections,
    the app's store on Prisma's `?pgbouncer=true` URL, and direct `set`/`get`/`prune` calls beside them:
    no error, no wrong answer, no expired row left, no advisory lock left."""
    url = prisma_url(transaction_bouncer, scratch, pgbouncer="true")
    problems: list[str] = []
    with serve("tests.pooled_app:app", {"FPS_DATABASE_URL": url}, ready_path="/noop") as base:

        async def everything() -> int:
            made, http_problems = (await asyncio.gather(traffic(base), direct_calls(url, problems)))[0]
            problems.extend(http_problems)
            return made

        made = asyncio.run(everything())
    assert made == USERS * REQUESTS_PER_USER
    assert problems == []
    assert asyncio.run(expired_rows_left(scratch_url)) == 0
    assert asyncio.run(advisory_locks(scratch_url)) == 0
    pools = {row["database"]: row for row in transaction_bouncer.admin("SHOW POOLS;")}
    assert pools[scratch]["pool_mode"] == "transaction"


def test_four_workers_in_session_mode_within_the_budget(postgres_url: str, scratch: str) -> None:
    """PgBouncer in session mode with 8 server connections, where each client connection holds a server
    connection for as long as it is open: 4 uvicorn workers, each within the docs' budget of
    request_connections = 2 (every statement of the store runs on them), need 8 at most, and 40 users get
    no error."""
    require_programs()
    options = {"request_connections": 2}
    with in_front_of_test_server("session", pool_size=8) as bouncer:
        env = {"FPS_DATABASE_URL": bouncer.dsn(scratch), "FPS_STORE_OPTIONS": json.dumps(options)}
        with serve("tests.pooled_app:app", env, ready_path="/noop", workers=4) as base:
            made, problems = asyncio.run(traffic(base))
            servers = [row for row in bouncer.admin("SHOW SERVERS;") if row["database"] == scratch]
            clients = [row for row in bouncer.admin("SHOW CLIENTS;") if row["database"] == scratch]
    assert made == USERS * REQUESTS_PER_USER
    assert problems == []
    assert len(servers) <= 8
    assert len(clients) <= 8


async def test_the_deadline_holds_through_the_pooler(
    transaction_bouncer: PgBouncer, scratch: str, scratch_url: str
) -> None:
    """A write to a row that another transaction holds locked: through the pooler no lock_timeout can be
    sent at connect time, so the client's deadline ends it. It fails with StoreUnavailableError (the
    middleware's 503), the statement is cancelled on the server, and it does not go through when the lock
    is released."""
    store = PrismaSessionStore(
        prisma_url(transaction_bouncer, scratch, pgbouncer="true"), operation_timeout=1
    )
    holder = await asyncpg.connect(scratch_url)
    try:
        await store.set("locked", {"cookie": cookie(), "value": "before"})
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("""SELECT * FROM "Session" WHERE sid = 'locked' FOR UPDATE""")
        # The guard only stops a hang from hanging the test run; the deadline is 1 s.
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(store.update("locked", {"cookie": cookie(), "value": "after"}), 30)
        waiting = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1", scratch
        )
        assert waiting == 0  # cancelled on the server, not left waiting for the lock
        await transaction.rollback()
        stored = await store.get("locked")
        assert stored is not None
        assert stored["value"] == "before"
        # The connection that was cut off is fine again, and so is the pooler's server connection.
        assert await store.update("locked", {"cookie": cookie(), "value": "later"})
        stored = await store.get("locked")
        assert stored is not None
        assert stored["value"] == "later"
    finally:
        await holder.close()
        await store.shutdown()


async def show_lock_timeout(bouncer: PgBouncer, database: str) -> str:
    """lock_timeout on the pooler's server connection, as another client of the pooler sees it."""
    conn = await asyncpg.connect(bouncer.dsn(database), statement_cache_size=0)
    try:
        value: str = await conn.fetchval("SHOW lock_timeout")
        return value
    finally:
        await conn.close()


@pytest.mark.parametrize("switched", [True, False], ids=["pgbouncer=true", "no-switch"])
async def test_the_switch_leaves_the_shared_server_connections_alone(
    postgres_url: str, scratch: str, switched: bool
) -> None:
    """Without the switch the request path sets its lock_timeout and statement_timeout on each new
    connection, which behind a transaction pooler is a server connection that other clients are handed
    next; with it nothing is set (one server connection, so that the other client gets that one)."""
    require_programs()
    with in_front_of_test_server("transaction", pool_size=1) as bouncer:
        store = PrismaSessionStore(bouncer.dsn(scratch), pgbouncer=switched, operation_timeout=2)
        try:
            assert await store.load("anyone") is None
            assert store.pgbouncer is switched
            assert await show_lock_timeout(bouncer, scratch) == ("0" if switched else "1400ms")
        finally:
            await store.shutdown()


# -- Prisma's URL parameters ---------------------------------------------------------------------------


def test_prisma_parameters_are_taken_out_of_the_url() -> None:
    prisma = database.prisma_url(
        "postgresql://u@db:6543/app?pgbouncer=true&connection_limit=3&schema=public&connect_timeout=9"
        "&pool_timeout=2&socket_timeout=5&statement_cache_size=0&sslmode=require"
    )
    assert prisma == database.PrismaURL("postgresql://u@db:6543/app?ssl=require", True, 3)
    neon = "postgresql://u@ep-1-pooler.aws.neon.tech/app?sslmode=verify-full&channel_binding=prefer"
    assert database.prisma_url(neon).url == "postgresql://u@ep-1-pooler.aws.neon.tech/app?ssl=verify-full"
    assert database.prisma_url("postgresql://u@db/app") == database.PrismaURL("postgresql://u@db/app")
    assert not database.prisma_url("postgresql://u@db/app?pgbouncer=false").pgbouncer


async def test_a_prisma_url_sets_up_the_store() -> None:
    store = PrismaSessionStore("postgresql://u@127.0.0.1:1/app?pgbouncer=true&connection_limit=3")
    try:
        assert store.pgbouncer
        assert "pgbouncer" not in store.engine.url.query
        requests = store.executor.pool
        assert requests is not None
        assert requests.max_size == 3
        assert requests._connect_kwargs["statement_cache_size"] == 0
        assert requests._setup == ()
    finally:
        await store.shutdown()
    store = PrismaSessionStore("postgresql://u@127.0.0.1:1/app?pgbouncer=true", pgbouncer=False)
    try:
        assert not store.pgbouncer  # the keyword wins over the URL
    finally:
        await store.shutdown()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@db/app?schema=tenant", "schema=tenant is not supported"),
        ("postgresql://u@db/app?sslaccept=strict", "sslaccept is Prisma's"),
        ("postgresql://u@db/app?sslcert=ca.pem", "sslcert is Prisma's"),  # asyncpg: a TypeError at use
        ("postgresql://u@db/app?sslrootcert=ca.pem", "sslrootcert is Prisma's"),
        ("postgresql://u@db/app?pgbouncer=yes", "pgbouncer=yes in the URL"),
        ("postgresql://u@db/app?connection_limit=0", "connection_limit=0 in the URL"),
        ("postgresql://u@db/app?connection_limit=%C2%B2", "connection_limit=² in the URL"),  # '²'.isdigit()
        ("mysql://root@db/app?sslmode=require", "sslmode=require is libpq's"),  # asyncmy: a ValueError
        ("postgresql://u@db/app?channel_binding=require", "asyncpg does not implement channel binding"),
    ],
)
def test_prisma_parameters_that_cannot_be_honoured_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PrismaSessionStore(url)


async def test_an_own_engine_with_prisma_parameters_is_refused() -> None:
    engine = create_async_engine("postgresql+asyncpg://u@127.0.0.1:1/app?pgbouncer=true")
    try:
        with pytest.raises(ConfigurationError, match="give the store the URL itself"):
            PrismaSessionStore(engine)
    finally:
        await engine.dispose()


# -- the contract tests of other modules, again through the pooler ------------------------------------


@pytest.fixture
def database_url(transaction_bouncer: PgBouncer, postgres_url: str) -> str:
    """This run's database through PgBouncer in transaction mode (overrides conftest's)."""
    name = make_url(postgres_url).database
    assert name is not None
    return transaction_bouncer.url(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own, set up for a transaction pooler as docs/deploying says."""
    engine = create_async_engine(database_url, connect_args=pooler_connect_args())
    yield engine
    await engine.dispose()


@pytest.fixture
def store_options() -> dict[str, Any]:
    """The stores of conftest's `make_store`, here behind the pooler."""
    return {"pgbouncer": True}


def _through_the_pooler(*modules: ModuleType) -> dict[str, Callable[..., Any]]:
    """The tests of `modules` that use the store fixtures, to be collected here again: here those fixtures
    are the ones above, so each test runs once more, with its store and its engine behind PgBouncer in
    transaction mode."""
    store_fixtures = {"database_url", "engine", "make_store", "store", "statements"}
    return {
        name: test
        for module in modules
        for name, test in vars(module).items()
        if name.startswith("test_") and store_fixtures & set(inspect.signature(test).parameters)
    }


globals().update(_through_the_pooler(test_store, test_middleware, test_session_api, test_concurrency))


async def test_the_reruns_go_through_the_pooler(
    store: PrismaSessionStore, transaction_bouncer: PgBouncer
) -> None:
    assert store.pgbouncer
    assert store.engine.url.port == transaction_bouncer.port
    await store.set("through", {"n": 1})
    requests = store.executor.pool
    assert requests is not None
    assert await store.get("through") == {"n": 1}
    server_port = make_url(ADMIN_URL).port or 5432  # PostgreSQL, behind the pooler
    assert await requests.run("fetchval", "SELECT inet_server_port()", []) == server_port
    assert requests._connect_kwargs["port"] == transaction_bouncer.port
