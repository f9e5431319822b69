"""The pytest fixtures that ship with the package, and the testing helpers under them.

The sample test project of docs/testing.md (its `pyproject.toml`, `conftest.py` and `test_main.py`, with
the `main.py` of docs/getting-started.md) is written to a temporary folder and run by pytest in a process
of its own, as a user runs it: two tests, each in an event loop of its own, against a scratch database.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware
from fastapi_prisma_session.pytest_plugin import SCRATCH_PREFIX, scratch_database
from fastapi_prisma_session.testing import create_session, read_session, use_database
from tests.helpers import ADMIN_URL, DOCS, ROOT, SECRET, client_for, doc_file

# Each file of the sample project, and the page that gives it.
PROJECT_FILES = {
    "main.py": DOCS / "getting-started.md",
    "pyproject.toml": DOCS / "testing.md",
    "conftest.py": DOCS / "testing.md",
    "test_main.py": DOCS / "testing.md",
}
# Tests that make scratch databases on the PostgreSQL server, and tests that count them, run one at a time.
SCRATCH_GROUP = pytest.mark.xdist_group("scratch_databases")


def readme_project(folder: Path) -> Path:
    for name, page in PROJECT_FILES.items():
        (folder / name).write_text(doc_file(page, name))
    return folder


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pytest` in `folder`, with this checkout's package, in a process of its own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--basetemp={folder / 'tmp'}",
        *args,
    ]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_readme_test_project_passes_on_a_sqlite_file_of_its_own(tmp_path: Path) -> None:
    project = readme_project(tmp_path)
    done = run_pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert not (project / "sessions.db").exists()  # the app's own database was never touched
    assert list((project / "tmp").glob("sessions*/sessions.db"))  # the run's own


async def scratch_databases() -> set[str]:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", SCRATCH_PREFIX + "%")
    finally:
        await conn.close()
    return {row[0] for row in rows}


@SCRATCH_GROUP
def test_the_readme_test_project_passes_on_a_scratch_postgresql_database(
    tmp_path: Path, postgres_url: str
) -> None:
    before = asyncio.run(scratch_databases())
    done = run_pytest(readme_project(tmp_path), "--session-database-url", ADMIN_URL, "-s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert asyncio.run(scratch_databases()) == before  # created for the run, dropped at its end


def test_without_an_app_fixture_the_message_says_what_to_define(tmp_path: Path) -> None:
    readme_project(tmp_path)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["fastapi_prisma_session.pytest_plugin"]\n')
    done = run_pytest(tmp_path)
    assert done.returncode == 1
    assert "define a fixture named `app`" in done.stdout


def test_the_plugin_is_opt_in_and_the_package_does_not_import_pytest() -> None:
    entry_points = importlib.metadata.distribution("fastapi-prisma-session").entry_points
    assert not [entry for entry in entry_points if entry.group == "pytest11"]
    code = "import sys, fastapi_prisma_session.testing; print('pytest' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def counter_app(store: PrismaSessionStore) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET)

    @app.get("/")
    async def index(session: SessionDep) -> dict[str, int]:
        session["views"] = session.get("views", 0) + 1
        return {"views": session["views"]}

    return app


@pytest.mark.usefixtures("_drop_tables")  # use_database made the table in the run's shared database
def test_one_store_serves_tests_that_each_have_their_own_event_loop(
    database_url: str, tmp_path: Path
) -> None:
    """As pytest-asyncio runs tests by default: a new loop per test. The store's connections (asyncpg's,
    on PostgreSQL) belong to the loop that opened them; `use_database` closes them at the end of each."""
    store = PrismaSessionStore(f"sqlite:///{tmp_path / 'the-apps-own.db'}")
    own_engine = store.engine
    app = counter_app(store)

    async def a_test(views: int) -> tuple[int, int, int]:
        async with use_database(app, database_url) as on_test_database:
            assert on_test_database is store
            async with client_for(app) as client:
                client.cookies.update(await create_session(app, {"views": views}))
                seen = (await client.get("/")).json()["views"]
                stored = await read_session(app, client)
                assert stored is not None
                await store.set("direct", {"cookie": {"originalMaxAge": None, "expires": None}})
                return seen, stored["views"], await store.length()

    assert asyncio.run(a_test(41)) == (42, 42, 2)
    assert asyncio.run(a_test(1)) == (2, 2, 2)  # a new loop; the table was emptied in between
    gc.collect()  # a connection left open would warn here, and warnings are errors
    assert store.engine is own_engine
    assert not (tmp_path / "the-apps-own.db").exists()


async def test_use_database_leaves_the_app_on_its_own_store_afterwards(tmp_path: Path) -> None:
    store = PrismaSessionStore(f"sqlite:///{tmp_path / 'own.db'}")
    app = counter_app(store)
    async with use_database(app, f"sqlite:///{tmp_path / 'test.db'}"), client_for(app) as client:
        assert (await client.get("/")).json() == {"views": 1}
    await store.create_table()
    assert await store.length() == 0  # the session went to the test database only
    await store.shutdown()


@SCRATCH_GROUP
def test_the_server_may_be_named_by_a_prisma_database_url(postgres_url: str) -> None:
    """Prisma's own .env has `?schema=public` (and often `connection_limit`, `pgbouncer`), which
    asyncpg refuses as connect() keywords: the scratch database is still made, used and dropped."""
    before = asyncio.run(scratch_databases())

    async def use(url: str) -> None:
        async with PrismaSessionStore(url) as store:
            await store.create_table()
            await store.set("abc", {"cookie": {}, "n": 1})
            assert await store.get("abc") == {"cookie": {}, "n": 1}

    with scratch_database(ADMIN_URL + "?schema=public&connection_limit=5&sslmode=disable") as url:
        name = make_url(url).database
        assert name in asyncio.run(scratch_databases()) - before
        asyncio.run(use(url))
    assert name not in asyncio.run(scratch_databases())  # by name: other runs on the server make their own
