"""A database not set up for the store stops the app's startup with one line that names the fix: no
session table, a table of the wrong shape, a refused login (a PostgreSQL role that does not exist, a wrong
MariaDB password). One that does not answer is logged and the app starts: routes without sessions keep
working through a database restart. At a request, the same mistakes are one log line and a 500 (a 503
for the unreachable database), never a traceback.

Each is tried on a real uvicorn process, and in process as Starlette's TestClient drives the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware, StoreSetupError, TableMissingError
from fastapi_prisma_session.signing import Signer
from fastapi_prisma_session.urls import driver_url
from tests.helpers import (
    ROOT,
    SECRET,
    client_for,
    free_port,
    make_app,
    wait_until_sync,
    websocket_that_loads,
)
from tests.test_setup_mistakes import APP_HEAD, counter_app, start, uvicorn_startup


@pytest.fixture
def sqlite_store(tmp_path: Path) -> PrismaSessionStore:
    return PrismaSessionStore(f"sqlite:///{tmp_path / 'sessions.db'}")


SESSION_APP = """
    from fastapi_prisma_session import SessionDep

    app.add_middleware(SessionMiddleware, store=store, secret="a santa at nasa, a santa at nasa, twice over")


    @app.get("/count")
    async def count(session: SessionDep):
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}


    @app.get("/health")
    async def health():
        return {"ok": True}
"""


def errors_of(stderr: str) -> list[str]:
    """uvicorn's ERROR lines, and the lines of our loggers (which, unconfigured, print bare)."""
    return [line for line in stderr.splitlines() if not line.startswith("INFO:")]


def stopped_with_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 3, done.stderr  # uvicorn's "startup failed"
    assert "Traceback" not in done.stderr
    [line, exiting] = errors_of(done.stderr)
    assert exiting == "ERROR:    Application startup failed. Exiting."
    assert line.startswith("ERROR:    fastapi_prisma_session, on "), line
    for part in expected:
        assert part in line


def test_a_missing_table_stops_uvicorn_with_one_line(tmp_path: Path) -> None:
    done = uvicorn_startup(tmp_path, SESSION_APP)
    stopped_with_one_line(done, "sqlite+aiosqlite:///sessions.db", 'table "Session" does not exist')
    assert "Create it with `fastapi-prisma-session migrate --database-url ...`" in done.stderr


def test_a_role_that_does_not_exist_stops_uvicorn_with_one_line(tmp_path: Path, postgres_url: str) -> None:
    url = make_url(postgres_url).set(drivername="postgresql", username="fps_no_such_role")
    done = uvicorn_startup(tmp_path, SESSION_APP, url.render_as_string(hide_password=False))
    stopped_with_one_line(done, 'role "fps_no_such_role" does not exist', "check the user, password")


def test_a_wrong_mariadb_password_stops_uvicorn_with_one_line(tmp_path: Path, mariadb_url: str) -> None:
    url = make_url(mariadb_url).set(drivername="mysql", password="not-the-password")
    done = uvicorn_startup(tmp_path, SESSION_APP, url.render_as_string(hide_password=False))
    stopped_with_one_line(done, "(1045, ", "Access denied", "check the user, password", "root:***@")
    assert "not-the-password" not in done.stderr


@contextmanager
def uvicorn_serving(folder: Path, database_url: str) -> Iterator[tuple[str, Path]]:
    """`uvicorn app:app` on SESSION_APP, serving; yields its base URL and the file its stderr goes to."""
    (folder / "app.py").write_text(textwrap.dedent(APP_HEAD) + textwrap.dedent(SESSION_APP))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "DATABASE_URL": database_url}
    log = folder / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(base + "/health", timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_until_sync(answers, within=30, interval=0.1)
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_unreachable_database_is_logged_and_the_app_starts(tmp_path: Path) -> None:
    """Routes without sessions keep working through a database restart, so a database that does not
    answer at startup does not stop it: one warning line, then 503s where a session is needed."""
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with uvicorn_serving(tmp_path, nobody) as (base, log):
        assert httpx.get(base + "/health").json() == {"ok": True}
        response = httpx.get(base + "/count")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
    lines = errors_of(log.read_text())
    assert "Traceback" not in log.read_text()
    assert len(lines) == 2, lines
    assert lines[0].startswith("fastapi_prisma_session, on postgresql+asyncpg://postgres@127.0.0.1:")
    assert "starting without the session database" in lines[0]
    assert lines[1].startswith("session store unavailable, answering 503 to GET /count: ")


def test_a_table_dropped_while_serving_is_one_line_per_request(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(with_table(url))
    with uvicorn_serving(tmp_path, url) as (base, log), httpx.Client(base_url=base) as client:
        assert client.get("/count").json() == {"n": 1}
        asyncio.run(run_sql(url, 'DROP TABLE "Session"'))
        for _ in range(2):  # with the cookie (its load fails), then without one (its insert fails)
            response = client.get("/count")
            assert response.status_code == 500
            assert response.text == "Session store not set up; the log says why.\n"
            client.cookies.clear()
        assert client.get("/health").json() == {"ok": True}
    text = log.read_text()
    assert "Traceback" not in text
    lines = errors_of(text)
    assert len(lines) == 2, lines
    for line in lines:
        assert line.startswith(
            'session store not set up, answering 500 to GET /count: The session table "Session"'
        )


async def with_table(url: str) -> None:
    async with PrismaSessionStore(url) as store:
        await store.create_table()


async def run_sql(url: str, sql: str) -> None:
    engine = create_async_engine(driver_url(url))
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


async def test_the_startup_reports_a_missing_table_and_raises_it(sqlite_store: PrismaSessionStore) -> None:
    """In process, as Starlette's TestClient drives the lifespan: the report, then the error raised."""
    answer, lifespan, _ = await start(counter_app(sqlite_store, secret=SECRET))
    assert answer["type"] == "lifespan.startup.failed"
    assert answer["message"].startswith("fastapi_prisma_session, on sqlite+aiosqlite:///")
    assert 'The session table "Session" does not exist' in answer["message"]
    with pytest.raises(TableMissingError):
        await lifespan
    assert not sqlite_store.interval_running


async def test_a_table_the_apps_own_startup_creates_is_there_when_it_is_looked_at(
    sqlite_store: PrismaSessionStore,
) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await sqlite_store.create_table()
        yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(SessionMiddleware, store=sqlite_store, secret=SECRET)
    answer, task, inbox = await start(app)
    assert answer["type"] == "lifespan.startup.complete"
    assert sqlite_store.table_checked
    await inbox.put({"type": "lifespan.shutdown"})
    await task


async def test_a_table_of_the_wrong_shape_stops_the_startup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    await run_sql(url, 'CREATE TABLE "Session" (id TEXT, data TEXT, "expiresAt" TEXT)')
    store = PrismaSessionStore(url)
    answer, lifespan, _ = await start(counter_app(store, secret=SECRET))
    assert answer["type"] == "lifespan.startup.failed"
    assert "lacks sid: it is not prisma-session-store's Session model" in answer["message"]
    with pytest.raises(StoreSetupError):
        await lifespan


@pytest.fixture(params=["postgresql", "mariadb"])
def refused_url(request: pytest.FixtureRequest) -> str:
    """A URL the server refuses: a PostgreSQL role that does not exist, a wrong MariaDB password."""
    if request.param == "postgresql":
        url = make_url(request.getfixturevalue("postgres_url")).set(username="fps_no_such_role")
    else:
        url = make_url(request.getfixturevalue("mariadb_url")).set(password="not-the-password")
    return url.render_as_string(hide_password=False)


async def test_a_refused_login_at_a_request_is_a_500_and_one_line(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a lifespan (or with a password changed since the startup): the request's own look."""
    store = PrismaSessionStore(refused_url)
    try:
        async with client_for(make_app(store)) as client:
            with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
                response = await client.post("/write", params={"value": "x"})
    finally:
        await store.shutdown()
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    [record] = caplog.records
    assert record.exc_info is None
    message = record.getMessage()
    assert message.startswith("session store not set up, answering 500 to POST /write: ")
    assert "refused the store's login" in message
    assert "\n" not in message


async def test_a_websocket_whose_table_is_missing_is_closed_with_1011(
    sqlite_store: PrismaSessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = "connect.sid=" + Signer([SECRET]).cookie_value("some-session")
    try:
        with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
            sent = await websocket_that_loads(sqlite_store, cookie)
    finally:
        await sqlite_store.shutdown()
    assert sent == [{"type": "websocket.close", "code": 1011, "reason": "session store not set up"}]
    [logged] = caplog.records
    assert logged.getMessage().startswith("session store not set up, closing the websocket /ws with 1011: ")
