"""Every Python sample in README.md runs, in order, and does what the text around it says.

The samples share one namespace, as a reader would type them into one file. The quick start's SQLite file
is swapped for one in the test's temporary folder, and DATABASE_URL is defined. The files of the sample
test project (`# conftest.py`, `# test_main.py`) are run by tests/test_pytest_plugin.py, as pytest runs
them. After each sample, the checks keyed by
the names it defines run against the namespace as it is at that moment.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect as inspect_schema

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.testing import session_middleware
from tests.helpers import readme_blocks

QUICK_START_URL = '"sqlite:///sessions.db"'
# The first lines of the sample test project's files, which pytest runs rather than this test.
TEST_PROJECT_FILES = ("# conftest.py\n", "# test_")


def python_samples() -> list[str]:
    samples = [code for language, code in readme_blocks() if language == "python"]
    return [sample for sample in samples if not sample.startswith(TEST_PROJECT_FILES)]


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def ready(app: Any) -> PrismaSessionStore:
    store = session_middleware(app).store
    await store.create_table()
    return store


async def check_quick_start(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        assert (await c.get("/")).json() == {"views": 1}
        assert (await c.get("/")).json() == {"views": 2}


async def check_login_logout(ns: dict[str, Any]) -> None:
    async with client(ns["app"]) as c:
        await c.get("/")
        before = c.cookies["connect.sid"]
        assert (await c.post("/login", params={"user_id": 7})).status_code == 200
        assert c.cookies["connect.sid"] != before
        assert (await c.get("/me")).json() == {"user_id": 7}
        response = await c.post("/logout")
        assert "connect.sid=;" in response.headers["set-cookie"]


async def check_cart(ns: dict[str, Any]) -> None:
    async with client(ns["app"]) as c:
        await c.post("/cart", params={"item": "tea"})
        assert (await c.post("/cart", params={"item": "cake"})).json() == ["tea", "cake"]


async def check_migration_helper(ns: dict[str, Any]) -> None:
    store = session_middleware(ns["app"]).store
    async with store.engine.begin() as conn:

        def run(sync: Any) -> tuple[bool, bool]:
            with Operations.context(MigrationContext.configure(sync)):
                ns["downgrade"]()
                gone = "Session" not in inspect_schema(sync).get_table_names()
                ns["upgrade"]()
                back = "Session" in inspect_schema(sync).get_table_names()
            return gone, back

        assert await conn.run_sync(run) == (True, True)


async def check_node_app(ns: dict[str, Any]) -> None:
    await ready(ns["node_app"])
    async with client(ns["node_app"]) as c:
        response = await c.post("/nothing-here")
    assert response.status_code == 404


async def check_starlette_guide(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        assert (await c.get("/whoami")).json() == {"user": None}


async def check_starsessions_guide(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        first = (await c.post("/sign-in")).json()["session_id"]
        second = (await c.post("/sign-in")).json()["session_id"]
    assert first != second


async def check_loading(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        assert (await c.get("/profile")).json() == {"user_id": None}
        assert (await c.get("/legacy")).json() == {"user_id": None}


async def check_gc_freeze(ns: dict[str, Any]) -> None:
    import gc

    before = gc.get_freeze_count()
    try:
        async with ns["lifespan"](ns["frozen_app"]):
            assert gc.get_freeze_count() > before  # start-up's objects are out of the collector's reach
    finally:
        gc.unfreeze()  # this test process goes on as it was


CHECKS: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
    "frozen_app": check_gc_freeze,
    "legacy": check_loading,
    "index": check_quick_start,
    "logout": check_login_logout,
    "add_to_cart": check_cart,
    "upgrade": check_migration_helper,
    "node_app": check_node_app,
    "whoami": check_starlette_guide,
    "sign_in": check_starsessions_guide,
}


async def test_every_readme_sample_runs(tmp_path: Path) -> None:
    samples = python_samples()
    assert len(samples) >= 9
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}"
    ns: dict[str, Any] = {"DATABASE_URL": database_url, "__name__": "readme"}
    checked: list[str] = []
    stores: dict[int, PrismaSessionStore] = {}  # every store a sample made, to shut down at the end
    try:
        for number, sample in enumerate(samples, 1):
            code = sample.replace(QUICK_START_URL, repr(database_url))
            before = {name: ns.get(name) for name in ns}
            exec(compile(code, f"README.md sample {number}", "exec"), ns)
            for value in list(ns.values()):
                if getattr(value, "user_middleware", None):
                    store = session_middleware(value).store
                    stores[id(store)] = store
            for name, check in CHECKS.items():
                if name in ns and ns[name] is not before.get(name):
                    await check(ns)
                    checked.append(name)
    finally:
        for store in stores.values():
            await store.shutdown()
    assert sorted(checked) == sorted(CHECKS), "a README sample or its check went missing"
    assert all(inspect.iscoroutinefunction(check) for check in CHECKS.values())
