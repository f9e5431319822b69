"""Fixtures: a throwaway PostgreSQL database and MariaDB database per test run, a SQLite file per test,
and a store on each.

PostgreSQL is reached through `TEST_POSTGRES_URL` (default: the local server as `postgres`), MariaDB (or
MySQL) through `TEST_MARIADB_URL` (default: the local server as `root`). When one is unreachable its
tests skip on a developer's machine, and fail under `CI=true`.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_prisma_session import PrismaSessionStore
from tests.faultproxy import FaultProxy
from tests.helpers import (
    ADMIN_URL,
    MARIADB_ADMIN_URL,
    ROOT,
    Built,
    StatementLog,
    admin_sql,
    build_package,
    mariadb_database,
    mariadb_sql,
    missing,
)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and the wheel `python -m build` makes of this checkout, once per run."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dist_name = f"{project['name'].replace('-', '_')}-{project['version']}"
    return build_package(tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist"), dist_name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run (`postgresql+asyncpg://…`), dropped at the end."""
    name = f"fps_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        missing(f"PostgreSQL not reachable at {ADMIN_URL}: {error}")
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A MariaDB database of its own for this test run (`mysql+asyncmy://…`), dropped at the end."""
    try:
        asyncio.run(mariadb_sql("SELECT 1"))
    except Exception as error:  # OSError, or asyncmy's own errors (a refused login)
        if not isinstance(error, OSError) and type(error).__module__.partition(".")[0] != "asyncmy":
            raise
        missing(f"MariaDB not usable at {MARIADB_ADMIN_URL}: {error}")
    with mariadb_database(f"fps_test_{os.getpid()}") as url:
        yield make_url(url).set(drivername="mysql+asyncmy").render_as_string(hide_password=False)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    """The repository's fault proxy in front of the test PostgreSQL; it must see no error of its own."""
    server = make_url(postgres_url)
    with FaultProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        yield proxy
        assert proxy.errors == []


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on SQLite, once on PostgreSQL and once on MariaDB."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    url: str = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mariadb_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store_options() -> dict[str, Any]:
    """Options every store of `make_store` gets (a module may override this fixture)."""
    return {}


@pytest.fixture
async def make_store(
    engine: AsyncEngine, _drop_tables: None, store_options: dict[str, Any]
) -> AsyncIterator[Callable[..., PrismaSessionStore]]:
    """Builds stores on the test's engine; they are shut down and their tables dropped afterwards."""
    made: list[PrismaSessionStore] = []

    def make(**options: Any) -> PrismaSessionStore:
        store = PrismaSessionStore(engine, **store_options, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.shutdown()


@pytest.fixture
async def _drop_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    """No session table before the test (another test on this database may have left one: the tests
    are spread over xdist workers in no fixed order) and none after it."""

    async def drop() -> None:
        quote = engine.dialect.identifier_preparer.quote_identifier
        async with engine.begin() as conn:
            for table in ("Session", "sessions", "custom_sessions"):
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")

    await drop()
    yield
    await drop()


@pytest.fixture
async def store(make_store: Callable[..., PrismaSessionStore]) -> PrismaSessionStore:
    """A store with `db_record_id_is_session_id`, on a fresh `Session` table."""
    store = make_store(db_record_id_is_session_id=True)
    await store.create_table()
    await store.check_table()  # its one look at the columns, here rather than in a test's statement count
    return store


@pytest.fixture
def statements(engine: AsyncEngine, store: PrismaSessionStore) -> StatementLog:
    return StatementLog(engine, store)
