"""Fixtures: a throwaway PostgreSQL database per test run, a SQLite file per test, and a store on each.

PostgreSQL is reached through `TEST_POSTGRES_URL` (default: the local server as `postgres`). When it is
unreachable the PostgreSQL tests skip on a developer's machine, and fail under `CI=true`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.run import ADMIN_URL, admin_sql
from fastapi_prisma_session import PrismaSessionStore

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECRET = "a santa at nasa"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run (`postgresql+asyncpg://…`), dropped at the end."""
    name = f"fps_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable at {ADMIN_URL}: {error}")
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {error}")
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def make_store(
    engine: AsyncEngine, _drop_tables: None
) -> AsyncIterator[Callable[..., PrismaSessionStore]]:
    """Builds stores on the test's engine; they are shut down and their tables dropped afterwards."""
    made: list[PrismaSessionStore] = []

    def make(**options: Any) -> PrismaSessionStore:
        store = PrismaSessionStore(engine, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.shutdown()


@pytest.fixture
async def _drop_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with engine.begin() as conn:
        for table in ("Session", "sessions", "custom_sessions"):
            await conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')


@pytest.fixture
async def store(make_store: Callable[..., PrismaSessionStore]) -> PrismaSessionStore:
    """A store with `db_record_id_is_session_id`, on a fresh `Session` table."""
    store = make_store(db_record_id_is_session_id=True)
    await store.create_table()
    return store


class StatementLog:
    """Counts the SQL statements an engine sends, by their first word.

    Statements that go through SQLAlchemy are seen by its cursor events; on asyncpg, those the store
    sends on the raw driver connection are seen by asyncpg's query logger.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)
        if engine.dialect.driver == "asyncpg":
            event.listen(engine.sync_engine, "checkout", self._watch)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement.lstrip().split(None, 1)[0].upper())

    def _watch(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver not in self._watched:
            self._watched.add(driver)
            driver.add_query_logger(lambda logged: self._record(None, None, logged.query))

    def clear(self) -> None:
        self.statements.clear()

    def count(self, verb: str | None = None) -> int:
        return len(self.statements) if verb is None else self.statements.count(verb)


@pytest.fixture
def statements(engine: AsyncEngine) -> StatementLog:
    return StatementLog(engine)


def make_app(store: PrismaSessionStore, **options: Any) -> FastAPI:
    """A small app with one route per behaviour the tests need."""
    from tests.routes import build_app

    return build_app(store, **{"secret": SECRET, **options})


async def _let_query_loggers_run(response: httpx.Response) -> None:
    # asyncpg reports each query to its loggers with loop.call_soon: one turn of the loop delivers them.
    await asyncio.sleep(0)


def client_for(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        event_hooks={"response": [_let_query_loggers_run]},
    )


__all__ = ["SECRET", "StatementLog", "client_for", "make_app"]
