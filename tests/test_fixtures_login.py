"""Logging in, again and out through the pytest fixtures, as a newcomer's own tests do.

A newcomer's project (an app with login, `/me` and logout, its conftest and its tests) is written to a
temporary folder and run by pytest in a process of its own, on a SQLite file and on a scratch PostgreSQL
database; the same steps run here too, on the fixtures' helpers directly.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware
from fastapi_prisma_session.testing import create_session, one_cookie_per_name, read_session, use_database
from tests.helpers import ADMIN_URL, SECRET
from tests.test_pytest_plugin import SCRATCH_GROUP, run_pytest

MAIN = """
    from fastapi import FastAPI
    from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware

    store = PrismaSessionStore("sqlite:///sessions.db")
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret="a santa at nasa")


    @app.post("/login")
    async def login(session: SessionDep, user_id: int):
        await session.regenerate()
        session["user_id"] = user_id
        return {"user_id": user_id}


    @app.get("/me")
    async def me(session: SessionDep):
        return {"user_id": session.get("user_id")}


    @app.post("/logout")
    async def logout(session: SessionDep):
        await session.destroy()
"""

CONFTEST = """
    import pytest

    import main

    pytest_plugins = ["fastapi_prisma_session.pytest_plugin"]


    @pytest.fixture
    def app():
        return main.app
"""

TESTS = """
    import pytest

    from fastapi_prisma_session.testing import read_session


    async def test_login(session_client):
        await session_client.post("/login", params={"user_id": 42})  # regenerate(), then sets user_id
        assert (await session_client.get("/me")).json() == {"user_id": 42}


    async def test_read_session_reads_what_the_app_reads(app, session_client):
        await session_client.post("/login", params={"user_id": 42})
        assert await read_session(app, session_client) == {"user_id": 42}
        assert [cookie.name for cookie in session_client.cookies.jar] == ["connect.sid"]


    async def test_a_second_login_as_another_user(app, session_client, session_store):
        await session_client.post("/login", params={"user_id": 42})
        await session_client.post("/login", params={"user_id": 43})
        assert (await session_client.get("/me")).json() == {"user_id": 43}
        assert await read_session(app, session_client) == {"user_id": 43}
        assert await session_store.length() == 1


    async def test_logout_after_login(app, session_client, session_store):
        await session_client.post("/login", params={"user_id": 42})
        await session_client.post("/logout")
        assert (await session_client.get("/me")).json() == {"user_id": None}
        assert await read_session(app, session_client) is None
        assert await session_store.length() == 0


    @pytest.mark.parametrize("session_data", [{"user_id": 7}])
    async def test_login_over_a_given_session(app, session_client, session_store):
        assert (await session_client.get("/me")).json() == {"user_id": 7}
        await session_client.post("/login", params={"user_id": 42})
        assert (await session_client.get("/me")).json() == {"user_id": 42}
        assert await read_session(app, session_client) == {"user_id": 42}
        assert await session_store.length() == 1
"""

PYPROJECT = """
    [tool.pytest.ini_options]
    asyncio_mode = "auto"
    asyncio_default_fixture_loop_scope = "function"
    filterwarnings = ["error"]
"""


def newcomer_project(folder: Path) -> Path:
    for name, text in (
        ("main.py", MAIN),
        ("conftest.py", CONFTEST),
        ("test_main.py", TESTS),
        ("pyproject.toml", PYPROJECT),
    ):
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def test_a_newcomers_login_tests_pass_on_sqlite(tmp_path: Path) -> None:
    done = run_pytest(newcomer_project(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


@SCRATCH_GROUP
def test_a_newcomers_login_tests_pass_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    done = run_pytest(newcomer_project(tmp_path), "--session-database-url", ADMIN_URL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


def login_app(store: PrismaSessionStore) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET)

    @app.post("/login")
    async def login(session: SessionDep, user_id: int) -> dict[str, int]:
        await session.regenerate()
        session["user_id"] = user_id
        return {"user_id": user_id}

    @app.get("/me")
    async def me(session: SessionDep) -> dict[str, object]:
        return {"user_id": session.get("user_id")}

    @app.post("/logout")
    async def logout(session: SessionDep) -> None:
        await session.destroy()

    return app


def fixture_client(app: FastAPI) -> httpx.AsyncClient:
    """What `session_client` is: a client on the app that keeps one cookie per name."""
    transport = httpx.ASGITransport(app=app)
    return one_cookie_per_name(httpx.AsyncClient(transport=transport, base_url="http://testserver"))


@pytest.fixture(params=["sqlite", "postgresql"])
def fixtures_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_login_again_and_logout_through_the_helpers(fixtures_database: str, tmp_path: Path) -> None:
    app = login_app(PrismaSessionStore(f"sqlite:///{tmp_path / 'own.db'}"))
    async with use_database(app, fixtures_database) as store, fixture_client(app) as client:
        client.cookies.update(await create_session(app, {"user_id": 7}))
        assert (await client.get("/me")).json() == {"user_id": 7}

        await client.post("/login", params={"user_id": 42})
        assert [cookie.name for cookie in client.cookies.jar] == ["connect.sid"]
        assert (await client.get("/me")).json() == {"user_id": 42}
        assert await read_session(app, client) == {"user_id": 42}

        await client.post("/login", params={"user_id": 43})  # another user, on the same client
        assert (await client.get("/me")).json() == {"user_id": 43}
        assert await read_session(app, client) == {"user_id": 43}
        assert await store.length() == 1

        await client.post("/logout")
        assert list(client.cookies.jar) == []  # cleared: the response's deletion reached every copy
        assert (await client.get("/me")).json() == {"user_id": None}
        assert await read_session(app, client) is None
        assert await store.length() == 0


async def test_read_session_takes_the_cookie_the_app_takes(tmp_path: Path) -> None:
    """Two cookies of one name in a plain httpx client (a test's, without a domain, and a response's):
    the app reads the first it is sent, and read_session reads that one too."""
    app = login_app(PrismaSessionStore(f"sqlite:///{tmp_path / 'own.db'}"))
    async with (
        use_database(app, f"sqlite:///{tmp_path / 'test.db'}"),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        client.cookies.update(await create_session(app, {"user_id": 7}))
        await client.post("/login", params={"user_id": 42})
        assert len(client.cookies.jar) == 2  # httpx keeps both: the case one_cookie_per_name is for
        seen_by_the_app = (await client.get("/me")).json()
        assert await read_session(app, client) == (
            None if seen_by_the_app == {"user_id": None} else seen_by_the_app
        )
        assert seen_by_the_app == {"user_id": None}  # the stale cookie first: the login's row is not read


async def test_read_session_of_a_mapping_and_of_no_cookie(tmp_path: Path) -> None:
    app = login_app(PrismaSessionStore(f"sqlite:///{tmp_path / 'own.db'}"))
    async with use_database(app, f"sqlite:///{tmp_path / 'test.db'}"):
        cookies = await create_session(app, {"user_id": 7})
        assert await read_session(app, cookies) == {"user_id": 7}
        assert await read_session(app, {}) is None
        assert await read_session(app, {"connect.sid": "s:forged.signature"}) is None
