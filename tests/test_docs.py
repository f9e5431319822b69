"""Every Python sample of README.md and the docs site runs, and does what the text around it says.

The samples of one page share one namespace, as a reader would type them into one file; each page starts
afresh. The quick start's SQLite file is swapped for one in the test's temporary folder, and DATABASE_URL
is defined. After each sample, the checks keyed by the page and by the names it defines run against the
namespace as it is at that moment. The few samples that cannot run in a namespace are files that another
test runs as a user would (RUN_ELSEWHERE); every other Python block of every page runs here.

The links of README.md are checked here; `mkdocs build --strict` checks the site's own. Every command line
of the docs that calls the package's CLI parses with the CLI's own parser.
"""

from __future__ import annotations

import inspect
import logging
import re
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect as inspect_schema

from fastapi_prisma_session import PrismaSessionStore, cli
from fastapi_prisma_session.testing import session_middleware
from tests import test_own_alembic, test_pytest_plugin
from tests.helpers import DOCS, README, ROOT, doc_blocks, doc_pages

QUICK_START_URL = '"sqlite:///sessions.db"'
PYTHON = ("python", "py")


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def run_elsewhere(page: Path, sample: str) -> str | None:
    """The test that runs `sample` of `page`, if it is one that cannot run in a namespace: a file of the
    sample test project (pytest runs it), or a piece of env.py (Alembic runs it)."""
    for name, source in test_pytest_plugin.PROJECT_FILES.items():
        if page == source and sample.startswith((f"# {name}\n", f"# {name}, continued\n")):
            return "tests/test_pytest_plugin.py" if name != "main.py" else None
    if page == DOCS / "migrations.md" and sample == test_own_alembic.URL_FROM_ENVIRONMENT:
        return "tests/test_own_alembic.py"
    return None


def python_samples(page: Path) -> list[str]:
    return [code for language, code in doc_blocks(page) if language in PYTHON]


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


async def check_target_metadata(ns: dict[str, Any]) -> None:
    assert "Session" in ns["target_metadata"].tables


async def check_migration_helper(ns: dict[str, Any]) -> None:
    store = PrismaSessionStore(ns["DATABASE_URL"])
    try:
        async with store.engine.begin() as conn:

            def run(sync: Any) -> tuple[bool, bool]:
                with Operations.context(MigrationContext.configure(sync)):
                    ns["upgrade"]()
                    made = "Session" in inspect_schema(sync).get_table_names()
                    ns["downgrade"]()
                    gone = "Session" not in inspect_schema(sync).get_table_names()
                return made, gone

            assert await conn.run_sync(run) == (True, True)
    finally:
        await store.shutdown()


async def check_node_app(ns: dict[str, Any]) -> None:
    await ready(ns["node_app"])
    async with client(ns["node_app"]) as c:
        response = await c.post("/nothing-here")
    assert response.status_code == 404


async def check_rolling_app(ns: dict[str, Any]) -> None:
    await ready(ns["rolling_app"])
    async with client(ns["rolling_app"]) as c:
        sid = (await c.post("/visit", headers={"x-tenant": "acme"})).json()["id"]
        renewed = await c.get("/ping")
    assert sid.startswith("acme-")
    assert "set-cookie" in renewed.headers  # rolling: a route that never used the session renews it


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


async def check_log_out_everywhere(ns: dict[str, Any]) -> None:
    store: PrismaSessionStore = ns["store"]
    assert store.user_key == "user_id"
    await store.create_table()
    cookie = {"originalMaxAge": 60_000, "expires": None}
    for sid, user in (("a", 7), ("b", 7), ("c", 8)):
        await store.set(sid, {"cookie": cookie, "user_id": user})
    assert await ns["log_out_everywhere"](7) == 2
    assert await store.ids() == ["c"]


async def check_encrypted_store(ns: dict[str, Any]) -> None:
    store: PrismaSessionStore = ns["encrypted_store"]
    await store.create_table()
    async with client(ns["app"]) as c:
        assert (await c.post("/card", params={"number": "4111-0000"})).json() == {"card": "4111-0000"}
    await store.set("u", {"cookie": {"originalMaxAge": 60_000, "expires": None}, "user_id": 7, "a": "b"})
    async with store.engine.connect() as conn:
        texts = (await conn.exec_driver_sql('SELECT data FROM "Session"')).scalars().all()
    assert len(texts) == 2
    assert not any("4111" in text or '"a"' in text for text in texts)
    assert all('"__encrypted":"v1.' in text for text in texts)
    assert list(await store.matching(user_id=7)) == ["u"]


async def check_rotated_store(ns: dict[str, Any]) -> None:
    # Sealed with the page's first key, which is the older one here.
    assert await ns["rotated_store"].get("u") == {
        "cookie": {"originalMaxAge": 60_000, "expires": None},
        "user_id": 7,
        "a": "b",
    }


async def check_pooled(ns: dict[str, Any]) -> None:
    assert ns["pooled"].pgbouncer is True


async def check_galera(ns: dict[str, Any]) -> None:
    # tests/test_galera.py runs the sample on a real cluster; here, the URL's nodes as the store has them.
    hosts = ns["galera_store"].executor.driver.hosts
    assert hosts.hosts == [("node1", 3306), ("node2", 3306), ("node3", 3306)]


def check_driver(name: str, dialect: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def check(ns: dict[str, Any]) -> None:
        assert ns[name].engine.dialect.name == dialect

    return check


async def check_host_list(ns: dict[str, Any]) -> None:
    url = ns["failover_store"].engine.url
    assert len(url.query["host"]) == 2
    assert url.query["target_session_attrs"] == "read-write"


async def check_logging(ns: dict[str, Any]) -> None:
    assert ns["logging"].getLogger("fastapi_prisma_session").level == logging.INFO


async def check_typed_cart(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        await c.post("/cart", params={"item": "tea"})
        assert (await c.post("/cart", params={"item": "cake"})).json() == ["tea", "cake"]
        assert (await c.get("/cart")).json() == {"items": ["tea", "cake"], "logged_in": False}


async def check_csrf_form(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        page = (await c.get("/profile")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        saved = await c.post("/profile", data={"csrf_token": token.group(1), "name": "Ann"})
        assert saved.json() == {"name": "Ann"}
        refused = await c.post("/profile", data={"name": "Eve"})
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("CSRF token missing")


async def check_csrf_header(ns: dict[str, Any]) -> None:
    async with client(ns["app"]) as c:
        token = (await c.get("/csrf")).json()["token"]
        assert (await c.delete("/profile")).status_code == 403
        assert (await c.delete("/profile", headers={"X-CSRF-Token": token})).json() == {"deleted": True}


async def check_traced_store(ns: dict[str, Any]) -> None:
    assert ns["traced_store"].telemetry is not None


async def check_telemetry_test(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as c:
        assert (await c.post("/visit")).json() == {"visits": 1}
        assert (await c.post("/visit")).json() == {"visits": 2}
    names = [span.name for span in ns["spans"].get_finished_spans()]
    assert names == ["save Session", "load Session", "save Session"]
    assert ns["data_point"]("prisma_session.request.statements").count == 2
    assert ns["data_point"]("no such metric") is None


async def check_devices(ns: dict[str, Any]) -> None:
    await ready(ns["app"])
    async with client(ns["app"]) as phone, client(ns["app"]) as laptop, client(ns["app"]) as other:
        for browser, user_id in ((phone, 7), (laptop, 7), (other, 8)):
            assert (await browser.post("/login", params={"user_id": user_id})).json() == {"ok": True}
        page = (await laptop.get("/devices")).json()
        assert [device["this_device"] for device in page["devices"]] == [True, False]
        assert page["devices"][0]["ip"] == "127.0.0.1"
        assert page["devices"][0]["browser"].startswith("python-httpx/")
        form = {"csrf_token": page["csrf_token"], "handle": page["devices"][1]["handle"]}
        assert (await laptop.post("/devices/log-out", data=form)).json() == {"logged_out": True}
        assert (await laptop.post("/devices/log-out", data={"handle": "x"})).status_code == 403
        assert (await phone.get("/devices")).json()["devices"] == []  # logged out
        form = {"csrf_token": page["csrf_token"]}
        assert (await laptop.post("/devices/log-out-others", data=form)).json() == {"logged_out": 0}
        assert len((await other.get("/devices")).json()["devices"]) == 1


async def check_private_devices(ns: dict[str, Any]) -> None:
    assert ns["private_store"].devices == ns["DeviceOptions"](ip=False, user_agent=False)


# page -> {name a sample defines -> the check that runs once it is (re)defined}
CHECKS: dict[str, dict[str, Callable[[dict[str, Any]], Awaitable[None]]]] = {
    "README.md": {"index": check_quick_start},
    "docs/getting-started.md": {
        "index": check_quick_start,
        "logout": check_login_logout,
        "add_to_cart": check_cart,
    },
    "docs/loading.md": {"legacy": check_loading},
    "docs/migrations.md": {"target_metadata": check_target_metadata, "downgrade": check_migration_helper},
    "docs/databases/postgresql.md": {"pg_store": check_driver("pg_store", "postgresql")},
    "docs/databases/mysql.md": {"mysql_store": check_driver("mysql_store", "mysql")},
    "docs/databases/sqlite.md": {"sqlite_store": check_driver("sqlite_store", "sqlite")},
    "docs/deploying/index.md": {"pooled": check_pooled, "frozen_app": check_gc_freeze},
    "docs/deploying/galera.md": {"galera_store": check_galera},
    "docs/deploying/postgresql-failover.md": {"failover_store": check_host_list},
    "docs/scale.md": {"log_out_everywhere": check_log_out_everywhere},
    "docs/guides/express-session.md": {"node_app": check_node_app, "rolling_app": check_rolling_app},
    "docs/guides/starlette.md": {"whoami": check_starlette_guide},
    "docs/guides/starsessions.md": {"sign_in": check_starsessions_guide},
    "docs/logging.md": {"logging": check_logging},
    "docs/encryption.md": {"encrypted_store": check_encrypted_store, "rotated_store": check_rotated_store},
    "docs/typed-sessions.md": {"show_cart": check_typed_cart},
    "docs/csrf.md": {"save_profile": check_csrf_form, "delete_profile": check_csrf_header},
    "docs/telemetry.md": {"traced_store": check_traced_store, "data_point": check_telemetry_test},
    "docs/devices.md": {"log_out_other_devices": check_devices, "private_store": check_private_devices},
}
# The pages with samples to run here (docs/testing.md's are all run by pytest, as a user's files).
PAGES_WITH_SAMPLES = [
    page for page in doc_pages() if any(not run_elsewhere(page, sample) for sample in python_samples(page))
]


def test_every_page_with_samples_has_checks_and_every_check_a_page() -> None:
    assert sorted(CHECKS) == sorted(page_name(page) for page in PAGES_WITH_SAMPLES)


@pytest.mark.parametrize("page", PAGES_WITH_SAMPLES, ids=page_name)
async def test_every_sample_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    checks = CHECKS[page_name(page)]
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}"
    ns: dict[str, Any] = {"DATABASE_URL": database_url, "__name__": "docs"}
    checked: list[str] = []
    stores: dict[int, PrismaSessionStore] = {}  # every store a sample made, to shut down at the end
    logger = logging.getLogger("fastapi_prisma_session")
    level = logger.level
    ran = elsewhere = 0
    samples = python_samples(page)
    try:
        for number, sample in enumerate(samples, 1):
            if run_elsewhere(page, sample):
                elsewhere += 1
                continue
            code = sample.replace(QUICK_START_URL, repr(database_url))
            before = {name: ns.get(name) for name in ns}
            exec(compile(code, f"{page_name(page)} sample {number}", "exec"), ns)
            ran += 1
            for value in list(ns.values()):
                if getattr(value, "user_middleware", None):
                    value = session_middleware(value).store
                if isinstance(value, PrismaSessionStore):
                    stores[id(value)] = value
            for name, check in checks.items():
                if name in ns and ns[name] is not before.get(name):
                    await check(ns)
                    checked.append(name)
    finally:
        logger.setLevel(level)
        for store in stores.values():
            await store.shutdown()
    assert ran + elsewhere == len(samples), "a Python sample was neither run here nor elsewhere"
    assert sorted(checked) == sorted(checks), "a sample or its check went missing"
    assert all(inspect.iscoroutinefunction(check) for check in checks.values())


def test_the_samples_run_elsewhere_are_the_ones_those_tests_run() -> None:
    elsewhere = {
        (page_name(page), run_elsewhere(page, sample))
        for page in doc_pages()
        for sample in python_samples(page)
        if run_elsewhere(page, sample)
    }
    assert elsewhere == {
        ("docs/testing.md", "tests/test_pytest_plugin.py"),
        ("docs/migrations.md", "tests/test_own_alembic.py"),
    }


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_links_resolve() -> None:
    links = LINK.findall(README.read_text())
    local = [link.split("#")[0] for link in links if not link.startswith(("http://", "https://", "#"))]
    assert len(local) >= 10
    missing = [link for link in local if not (ROOT / link).is_file()]
    assert missing == []


CLI_PROGRAMS = (["python", "-m", "fastapi_prisma_session"], ["fastapi-prisma-session"])


def cli_lines() -> list[tuple[str, list[str]]]:
    """Every command line of a shell block that calls the package's CLI, as (page, its arguments)."""
    found = []
    for page in doc_pages():
        for language, code in doc_blocks(page):
            if language not in ("sh", "bash", "shell"):
                continue
            for line in code.splitlines():
                words = shlex.split(line, comments=True)
                while words and "=" in words[0]:  # an environment variable for the command
                    words.pop(0)
                words = words[: words.index(">")] if ">" in words else words
                for program in CLI_PROGRAMS:
                    if words[: len(program)] == program:
                        found.append((page_name(page), words[len(program) :]))
    return found


def test_every_cli_line_of_the_docs_parses() -> None:
    lines = cli_lines()
    assert len(lines) >= 10
    parser = cli.build_parser()
    for page, arguments in lines:
        try:
            parser.parse_args(arguments)
        except SystemExit as exit:
            pytest.fail(f"{page}: {shlex.join(arguments)} does not parse (exit {exit.code})")
