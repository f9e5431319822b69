"""What tests and benchmarks share: the databases they make, direct table access, servers they start,
the apps and clients they drive, and waiting for something to happen.

Fixtures live in `conftest.py`; everything a test imports lives here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from textwrap import dedent
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg
import httpx
from sqlalchemy import event, insert, select, update
from sqlalchemy.engine import make_url

from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fastapi_prisma_session import PrismaSessionStore

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECRET = "a santa at nasa"
# The server's administrator, who creates and drops the test databases.
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# MariaDB's (or MySQL's) administrator, likewise.
MARIADB_ADMIN_URL = os.environ.get("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")


# -- the docs' samples -------------------------------------------------------------------------------

FENCED_BLOCK = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", flags=re.M | re.S)
HEADING = re.compile(r"^#{1,6} .*$", flags=re.M)
DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """README.md, then every page of the docs site, in order."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def doc_blocks(page: Path = README, heading: str | None = None) -> list[tuple[str, str]]:
    """The fenced blocks of `page` as (language, dedented text): all of them, or those between the
    heading line `heading` (such as "## Run it") and the next heading."""
    text = page.read_text()
    blocks = list(FENCED_BLOCK.finditer(text))
    start, end = 0, len(text)
    if heading is not None:
        inside_blocks = [range(block.start(), block.end()) for block in blocks]
        headings = [
            found
            for found in HEADING.finditer(text)
            if not any(found.start() in inside for inside in inside_blocks)
        ]
        [mine] = [index for index, found in enumerate(headings) if found.group() == heading]
        start = headings[mine].end()
        end = headings[mine + 1].start() if mine + 1 < len(headings) else len(text)
    return [(block.group(2), dedent(block.group(3))) for block in blocks if start <= block.start() < end]


def doc_file(page: Path, name: str) -> str:
    """The file `name` as `page` gives it: the blocks whose first line is `# name` or
    `# name, continued`, in order."""
    labels = (f"# {name}\n", f"# {name}, continued\n")
    parts = [body for _, body in doc_blocks(page) if body.startswith(labels)]
    assert parts, f"{page.name} has no block that starts with {labels[0]!r}"
    return "\n\n".join(parts)


# -- the package as it ships ------------------------------------------------------------------------
# tests/test_packaging.py says how the wheel is built and installed, and what that leaves out.


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    log: str


def run_checked(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `command` to completion; a failure shows its output."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


def git_status() -> str:
    """The repository's changed, new and ignored files, less the coverage data that the test processes
    (two xdist workers, and what they start) write beside it while a build runs."""
    listed = run_checked(["git", "status", "--porcelain", "--ignored"], ROOT).stdout.splitlines()
    return "\n".join(line for line in listed if not line[3:].startswith(".coverage"))


def copy_sources(target: Path) -> None:
    """The files a fresh clone would have, plus new files not yet committed, as they are on disk."""
    listed = run_checked(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def build_package(source: Path, dist: Path, dist_name: str) -> Built:
    """`python -m build` on a copy of the repository in `source`, into `dist`."""
    copy_sources(source)
    before = git_status()
    result = run_checked([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], source)
    assert git_status() == before, "building left files in the repository"
    return Built(
        dist / f"{dist_name}.tar.gz", dist / f"{dist_name}-py3-none-any.whl", result.stdout + result.stderr
    )


def install_wheel(wheel: Path, venv: Path) -> tuple[Path, Path]:
    """A new venv at `venv` with `wheel` installed, nothing downloaded, and this environment's packages
    as its dependencies; returns its python and its site-packages."""
    run_checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], venv.parent)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    run_checked([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)], venv.parent)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(run_checked([str(python), "-I", "-c", purelib], venv.parent).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / "_project_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return python, site_packages


# -- databases of their own --------------------------------------------------------------------------


async def admin_sql(sql: str) -> None:
    """Run one statement as the administrator (creating and dropping databases)."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def missing(message: str) -> NoReturn:
    """Stop a test for want of a server or tool (`message` says which, and why): a failure under CI=true,
    where a skip would hide a broken install, a skip elsewhere."""
    import pytest

    if IN_CI:
        pytest.fail(f"required under CI=true: {message}")
    pytest.skip(message)


@contextmanager
def scratch_database(prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new PostgreSQL database, with the session table unless `migrate=False`, dropped afterwards.

    Yields its plain postgresql:// URL, the kind Prisma and cron jobs use."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        if migrate:
            done = alembic(url, "upgrade", "head")
            if done.returncode:
                raise RuntimeError(f"alembic upgrade head failed:\n{done.stderr}")
        yield url
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def mariadb_sql(sql: str, url: str = MARIADB_ADMIN_URL) -> list[tuple[Any, ...]]:
    """Run one statement on MariaDB (by default as the administrator, on no database in particular);
    returns its rows."""
    import asyncmy

    parsed = make_url(url)
    conn = await asyncmy.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=None if url == MARIADB_ADMIN_URL else parsed.database,
        connect_timeout=5,
        autocommit=True,
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
            return list(await cursor.fetchall() or [])
    finally:
        await conn.ensure_closed()


# What `prisma migrate` writes for the seed's model on MySQL (Prisma's MySQL mapping: String is
# VARCHAR(191), DateTime is DATETIME(3); `data` is `@db.MediumText` as prisma-session-store's README says).
PRISMA_MYSQL_DDL = """
CREATE TABLE `Session` (
    `id` VARCHAR(191) NOT NULL,
    `sid` VARCHAR(191) NOT NULL,
    `data` MEDIUMTEXT NOT NULL,
    `expiresAt` DATETIME(3) NOT NULL,

    UNIQUE INDEX `Session_sid_key`(`sid`),
    INDEX `Session_expiresAt_idx`(`expiresAt`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci
"""


@contextmanager
def mariadb_database(prefix: str) -> Iterator[str]:
    """A new, empty MariaDB database, dropped afterwards. Yields its plain mysql:// URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(mariadb_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        yield make_url(MARIADB_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(mariadb_sql(f"DROP DATABASE IF EXISTS `{name}`"))


async def prismas_mysql_table() -> str:
    """SHOW CREATE TABLE of the table `prisma migrate` makes for the seed's model, on this MariaDB."""
    name = f"fps_prisma_{uuid.uuid4().hex[:8]}"
    await mariadb_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        url = make_url(MARIADB_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        await mariadb_sql(PRISMA_MYSQL_DDL, url)
        return str((await mariadb_sql("SHOW CREATE TABLE `Session`", url))[0][1])
    finally:
        await mariadb_sql(f"DROP DATABASE IF EXISTS `{name}`")


def run_module(
    module: str,
    *args: str,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` in `cwd`, as a user runs it, with this checkout's package on
    PYTHONPATH so that it is the one imported wherever `cwd` is; killed after `timeout` seconds."""
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, check=False, timeout=timeout
    )


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`alembic <args>` in the repository, on `database_url`."""
    return run_module("alembic", *args, env={**os.environ, "DATABASE_URL": database_url})


async def seed(url: str, expired: int, live: int) -> None:
    """Fill a PostgreSQL session table quickly: `expired` rows expired an hour ago, `live` rows live for
    a day, named expired1… and live1…"""
    conn = await asyncpg.connect(url)
    try:
        for prefix, count, offset in (
            ("expired", expired, timedelta(hours=-1)),
            ("live", live, timedelta(days=1)),
        ):
            await conn.execute(
                'INSERT INTO "Session" (id, sid, data, "expiresAt") '
                """SELECT $1 || g, $1 || g, '{"cookie":{"originalMaxAge":null,"expires":null},"n":1}', """
                "(now() AT TIME ZONE 'utc') + $3::interval FROM generate_series(1, $2) AS g",
                prefix,
                count,
                offset,
            )
        await conn.execute('VACUUM ANALYZE "Session"')
    finally:
        await conn.close()


# -- what is really stored ---------------------------------------------------------------------------


async def rows(
    engine: AsyncEngine, table_name: str = "Session", expires_column: str = "expiresAt"
) -> dict[str, dict[str, Any]]:
    """Every row by sid, with `data` as stored (text) and `id`, `expires_at`."""
    table = session_table(table_name, expires_column=expires_column)
    async with engine.connect() as conn:
        result = await conn.execute(select(table))
        return {row.sid: {"id": row.id, "data": row.data, "expires_at": row.expiresAt} for row in result}


async def no_rows(engine: AsyncEngine, table_name: str = "Session") -> bool:
    return not await rows(engine, table_name)


async def insert_row(
    engine: AsyncEngine,
    sid: str,
    data: str | dict[str, Any],
    expires_at: datetime | None = None,
    table_name: str = "Session",
) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    async with engine.begin() as conn:
        await conn.execute(
            insert(session_table(table_name)).values(
                id=sid, sid=sid, data=text, expiresAt=expires_at or utcnow() + timedelta(days=1)
            )
        )


async def set_data(engine: AsyncEngine, sid: str, text: str, table_name: str = "Session") -> None:
    """Overwrite a row's `data` text, as another process would."""
    table = session_table(table_name)
    async with engine.begin() as conn:
        await conn.execute(update(table).where(table.c.sid == sid).values(data=text))


def close_to(moment: datetime, expected: datetime, seconds: float = 5) -> bool:
    return abs((moment - expected).total_seconds()) <= seconds


async def shift_expiry(engine: AsyncEngine, sid: str, by: timedelta, table_name: str = "Session") -> None:
    """Move a row's expiresAt, as if it had been written earlier (by < 0) or later."""
    table = session_table(table_name)
    async with engine.begin() as conn:
        current = (await conn.execute(select(table.c.expiresAt).where(table.c.sid == sid))).scalar_one()
        await conn.execute(update(table).where(table.c.sid == sid).values(expiresAt=current + by))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], *, within: float = 5.0, interval: float = 0.02
) -> None:
    """Poll `condition` (sync or async) until it is true; fail the test if it is not `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {within} s: {condition}")
        await asyncio.sleep(interval)


def wait_until_sync(condition: Callable[[], bool], *, within: float = 5.0, interval: float = 0.01) -> None:
    """`wait_until` for sync code (threads, subprocesses): poll `condition` until it is true."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {within} s: {condition}")
        time.sleep(interval)


@contextmanager
def serve(
    app: str,
    env: dict[str, str],
    ready_path: str = "/docs",
    *,
    workers: int = 1,
    python: Path | str = sys.executable,
    cwd: Path = ROOT,
) -> Iterator[str]:
    """Run `python -m uvicorn app` (with `workers` worker processes) in its own process, in `cwd`, on a
    free port; yields its base URL once it answers. Stopping uvicorn stops its workers."""
    port = free_port()
    command = [str(python), "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, f"{app} exited"
        try:
            httpx.get(base + ready_path, timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_until_sync(answers, within=20, interval=0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- apps, clients and the statements they send ----------------------------------------------------


class StatementLog:
    """Counts the SQL statements sent for a store, by their first word.

    Statements that go through SQLAlchemy are seen by its cursor events; on PostgreSQL, those of the
    request path (its own asyncpg pool) by the store's query logger.
    """

    def __init__(self, engine: AsyncEngine, store: PrismaSessionStore | None = None) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)
        if store is not None:
            store.add_query_logger(lambda logged: self._record(None, None, logged.query))

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement.lstrip().split(None, 1)[0].upper())

    def clear(self) -> None:
        self.statements.clear()

    def count(self, verb: str | None = None) -> int:
        return len(self.statements) if verb is None else self.statements.count(verb)


def make_app(store: PrismaSessionStore, **options: Any) -> FastAPI:
    """A small app with one route per behaviour the tests need."""
    from tests.routes import build_app  # routes imports this module

    return build_app(store, **{"secret": SECRET, **options})


async def _let_query_loggers_run(response: httpx.Response) -> None:
    # asyncpg reports each query to its loggers with loop.call_soon: one turn of the loop delivers them.
    await asyncio.sleep(0)


async def websocket_that_loads(store: PrismaSessionStore, cookie: str) -> list[dict[str, Any]]:
    """What SessionMiddleware sends on a websocket handshake carrying `cookie` (a Cookie header's value)
    whose app loads its session, as `load_session(websocket)` does, when the session cannot be had."""
    from fastapi_prisma_session import SessionMiddleware

    sent: list[dict[str, Any]] = []

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    async def uses_its_session(scope: dict[str, Any], receive: object, send: object) -> None:
        await scope["session"].load()
        raise AssertionError("the session cannot have loaded")

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"cookie", cookie.encode())]}
    await SessionMiddleware(uses_its_session, store=store, secret=SECRET)(scope, None, record)  # type: ignore[arg-type]
    return sent


def client_for(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        event_hooks={"response": [_let_query_loggers_run]},
    )


async def advisory_locks(url: str) -> int:
    """The advisory locks held in the database of `url` (other runs on the server hold their own)."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return count
    finally:
        await conn.close()


async def prune_in_processes(url: str, count: int, batch_size: int = 500) -> int:
    """Run `count` `prune` commands on `url` at once; each must succeed, having pruned or found another
    process pruning. Returns the rows they removed in all."""
    command = [sys.executable, "-m", "fastapi_prisma_session", "prune", "--database-url", url]
    processes = [
        await asyncio.create_subprocess_exec(
            *command,
            "--batch-size",
            str(batch_size),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0] * count, outputs
    removed = 0
    for stdout, _ in outputs:
        last = stdout.decode().strip().splitlines()[-1]
        if last.startswith("removed "):
            removed += int(last.split()[1])
        else:
            assert last.startswith("another process is pruning")
    return removed


async def a_fresh_store_prunes(url: str) -> None:
    """A new store on `url` runs its prune rather than skip it: no prune lock was left behind."""
    from fastapi_prisma_session import PrismaSessionStore

    fresh = PrismaSessionStore(url)
    try:
        await fresh.prune()
        assert not fresh.last_prune_skipped
    finally:
        await fresh.shutdown()
