"""pytest fixtures for testing your app's routes with sessions. Opt in from your `conftest.py`:

    pytest_plugins = ["fastapi_prisma_session.pytest_plugin"]

and give the plugin your app with a fixture named `app`. Its fixtures are async: they need pytest-asyncio
(`asyncio_mode = "auto"`), and the client needs httpx (`pip install pytest-asyncio httpx`).

- `session_database_url`: a database of this test session's own. By default a SQLite file in pytest's
  temporary folder; with `--session-database-url URL` (or the ini option `session_database_url`) naming a
  PostgreSQL server, a scratch database created on it and dropped at the end.
- `session_store`: your app's store, working on that database for the test (the same object, so routes
  that call it directly use it too), with the table created and empty. Its connections are closed at the
  end of the test, in the test's event loop, so that each test may have a loop of its own.
- `session_client`: an httpx client on your app, carrying a session that holds `session_data`. It keeps
  one cookie per name, as a browser does: the cookie a login's `regenerate()` sets replaces the first.
- `session_data`: `{}`; override it with `@pytest.mark.parametrize("session_data", [{...}])` or a fixture.

The module is imported only by projects that list it in `pytest_plugins`: it is not registered through a
`pytest11` entry point, so installing the package changes no other project's test runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .store import PrismaSessionStore
from .testing import create_session, one_cookie_per_name, use_database
from .urls import driver_url, prisma_url

OPTION = "session_database_url"
OPTION_HELP = (
    "fastapi_prisma_session: a PostgreSQL server's URL (postgresql://user@host/postgres); the tests' "
    "sessions go to a scratch database created there and dropped at the end. Default: a SQLite file."
)
SCRATCH_PREFIX = "sessions_test_"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--session-database-url", dest=OPTION, help=OPTION_HELP)
    parser.addini(OPTION, OPTION_HELP)


@pytest.fixture(scope="session")
def session_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a database of this test session's own."""
    server = request.config.getoption(OPTION) or request.config.getini(OPTION)
    if not server:
        yield f"sqlite:///{tmp_path_factory.mktemp('sessions') / 'sessions.db'}"
        return
    with scratch_database(str(server)) as url:
        yield url


@pytest.fixture
def app() -> Any:
    """Your app: define a fixture of this name in your conftest.py."""
    pytest.fail(
        "fastapi_prisma_session's fixtures test your app: define a fixture named `app` that returns it, "
        "e.g. `@pytest.fixture\\ndef app(): return main.app`",
        pytrace=False,
    )


@pytest_asyncio.fixture
async def session_store(app: Any, session_database_url: str) -> AsyncIterator[PrismaSessionStore]:
    """The app's store, on the test session's database for this test, its table empty."""
    async with use_database(app, session_database_url) as store:
        yield store


@pytest.fixture
def session_data() -> dict[str, Any]:
    """What the session of `session_client` holds: nothing, unless a test says otherwise."""
    return {}


@pytest_asyncio.fixture
async def session_client(
    app: Any, session_store: PrismaSessionStore, session_data: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app whose cookie names a stored session holding `session_data`; each cookie
    a response sets replaces the one of that name (`one_cookie_per_name`)."""
    transport = httpx.ASGITransport(app=app)
    async with one_cookie_per_name(
        httpx.AsyncClient(transport=transport, base_url="http://testserver")
    ) as client:
        client.cookies.update(await create_session(app, session_data))
        yield client


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server of `server_url`, dropped (with its connections) at the end."""
    server = make_url(driver_url(server_url))
    # Prisma's parameters (`?schema=public` in its own .env) are not asyncpg's: the scratch database is
    # made and dropped without them, and its URL keeps them for the store, which takes them out itself.
    admin = make_url(driver_url(prisma_url(server_url).url))
    if server.get_backend_name() != "postgresql":
        raise pytest.UsageError(
            f"--session-database-url names a PostgreSQL server to create a scratch database on, not "
            f"{server.get_backend_name()}; without it the tests use a SQLite file of their own"
        )
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    asyncio.run(_run_on(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_run_on(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _run_on(server: URL, statement: str) -> None:
    engine = create_async_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()
