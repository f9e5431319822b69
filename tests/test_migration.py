"""The session table's migrations on real empty databases create exactly Prisma's table (SPEC §2).

Two ways run the same revisions: `python -m fastapi_prisma_session migrate` (from any folder, as a pip
user runs it) and `alembic upgrade head` in the repository. They share one version table, so each sees
what the other did.

PostgreSQL and SQLite here; MariaDB's table (compared with Prisma's MySQL DDL) in test_mariadb.py.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_prisma_session import migration
from tests.helpers import alembic, free_port, run_module, scratch_database

ROOT = Path(__file__).resolve().parents[1]

# What `prisma migrate` creates for the seed's model on PostgreSQL.
PRISMA_COLUMNS = [
    ("id", "text", "NO", None),
    ("sid", "text", "NO", None),
    ("data", "text", "NO", None),
    ("expiresAt", "timestamp without time zone", "NO", 3),
]
PRISMA_INDEXES = {
    "Session_pkey": 'CREATE UNIQUE INDEX "Session_pkey" ON public."Session" USING btree (id)',
    "Session_sid_key": 'CREATE UNIQUE INDEX "Session_sid_key" ON public."Session" USING btree (sid)',
    "Session_expiresAt_idx": (
        'CREATE INDEX "Session_expiresAt_idx" ON public."Session" USING btree ("expiresAt")'
    ),
}


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A brand-new PostgreSQL database, as plain `postgresql://` (the URL Prisma users have)."""
    with scratch_database("fps_migrate", migrate=False) as url:
        yield url


async def _catalog(url: str) -> tuple[list[tuple[object, ...]], dict[str, str], list[str]]:
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT column_name, data_type, is_nullable, datetime_precision FROM information_schema.columns "
            "WHERE table_name = 'Session' ORDER BY ordinal_position"
        )
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'Session'")
        constraints = await conn.fetch(
            "SELECT conname || ':' || contype::text FROM pg_constraint "
            "WHERE conrelid = to_regclass('\"Session\"')"
        )
    finally:
        await conn.close()
    return (
        [tuple(row) for row in columns],
        {row["indexname"]: row["indexdef"] for row in indexes},
        sorted(row[0] for row in constraints),
    )


def test_upgrade_head_creates_prismas_table_on_postgresql(empty_postgres: str) -> None:
    result = alembic(empty_postgres, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    columns, indexes, constraints = asyncio.run(_catalog(empty_postgres))
    assert columns == PRISMA_COLUMNS
    assert indexes == PRISMA_INDEXES
    assert constraints == ["Session_pkey:p"]  # the unique key is an index, as Prisma makes it

    check = alembic(empty_postgres, "check")
    assert check.returncode == 0, check.stdout + check.stderr  # the SQLModel model matches the table

    down = alembic(empty_postgres, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert asyncio.run(_catalog(empty_postgres))[0] == []


def test_upgrade_and_downgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert alembic(url, "upgrade", "head").returncode == 0

    async def tables() -> tuple[set[str], set[str]]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
        async with engine.connect() as conn:

            def read(sync: Connection) -> tuple[set[str], set[str]]:
                inspector = inspect(sync)
                names = set(inspector.get_table_names())
                indexes = (
                    {i["name"] for i in inspector.get_indexes("Session")} if "Session" in names else set()
                )
                return names, {str(name) for name in indexes}

            found = await conn.run_sync(read)
        await engine.dispose()
        return found

    names, indexes = asyncio.run(tables())
    assert "Session" in names
    assert indexes == {"Session_sid_key", "Session_expiresAt_idx"}
    assert alembic(url, "downgrade", "base").returncode == 0
    assert "Session" not in asyncio.run(tables())[0]


def test_a_missing_database_url_says_how_to_set_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Set DATABASE_URL" in result.stderr


async def test_the_helper_creates_a_custom_table_name_in_an_apps_own_migration(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:

            def run(sync: Connection) -> tuple[set[str], set[str]]:
                with Operations.context(MigrationContext.configure(sync)):
                    migration.upgrade(table_name="sessions")
                inspector = inspect(sync)
                pk = inspector.get_pk_constraint("sessions")["name"]
                names = {str(i["name"]) for i in inspector.get_indexes("sessions")}
                with Operations.context(MigrationContext.configure(sync)):
                    migration.downgrade(table_name="sessions")
                return names | ({str(pk)} if pk else set()), set(inspect(sync).get_table_names())

            names, after = await conn.run_sync(run)
    finally:
        await engine.dispose()
    assert {"sessions_sid_key", "sessions_expiresAt_idx"} <= names
    if engine.dialect.name == "postgresql":
        assert "sessions_pkey" in names
    assert "sessions" not in after


# -- python -m fastapi_prisma_session migrate --------------------------------------------------------

VERSION_TABLE = "alembic_version_fastapi_prisma_session"
HEAD = "0001_session_table"


def migrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m fastapi_prisma_session migrate <args>` in `cwd`, as a pip user runs it outside the
    repository: PYTHONPATH names the repository only so that this checkout's package is the one imported."""
    return run_module("fastapi_prisma_session", "migrate", *args, cwd=cwd, env=env)


async def _postgres(url: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def postgres(url: str, sql: str) -> list[tuple[object, ...]]:
    return asyncio.run(_postgres(url, sql))


async def _postgres_script(url: str, script: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(script)  # no arguments: the simple protocol, which takes several statements
    finally:
        await conn.close()


def postgres_tables(url: str) -> list[str]:
    found = postgres(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [str(name) for (name,) in found]


def sqlite_schema(path: Path) -> set[tuple[str, str, str]]:
    """(type, name, table) of every table and index, SQLite's own automatic indexes left out."""
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        schema = {(str(kind), str(name), str(table)) for kind, name, table in found}
    conn.close()
    return schema


def sqlite_query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(sql).fetchall()
    conn.close()
    return found


SQLITE_SESSION = {
    ("table", "Session", "Session"),
    ("index", "Session_sid_key", "Session"),
    ("index", "Session_expiresAt_idx", "Session"),
    ("table", VERSION_TABLE, VERSION_TABLE),
}


def test_migrate_creates_prismas_table_on_postgresql_from_any_folder(
    empty_postgres: str, tmp_path: Path
) -> None:
    result = migrate("--database-url", empty_postgres, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Running upgrade -> {HEAD}" in result.stdout
    assert 'done: the session table "Session" is at head' in result.stdout
    columns, indexes, constraints = asyncio.run(_catalog(empty_postgres))
    assert columns == PRISMA_COLUMNS
    assert indexes == PRISMA_INDEXES
    assert constraints == ["Session_pkey:p"]
    # The revision is recorded in the package's own version table, never in an app's alembic_version.
    assert postgres_tables(empty_postgres) == ["Session", VERSION_TABLE]
    assert postgres(empty_postgres, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]

    # The repository's Alembic reads the same version table: the database is at head for it, and
    # `alembic check` finds the table as the model describes it.
    current = alembic(empty_postgres, "current")
    assert current.returncode == 0, current.stderr
    assert f"{HEAD} (head)" in current.stdout
    check = alembic(empty_postgres, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_migrate_twice_is_a_no_op(empty_postgres: str, tmp_path: Path) -> None:
    assert migrate("--database-url", empty_postgres, cwd=tmp_path).returncode == 0
    postgres(empty_postgres, """INSERT INTO "Session" VALUES ('a', 'a', '{}', now()) RETURNING id""")
    again = migrate(cwd=tmp_path, env={**os.environ, "DATABASE_URL": empty_postgres})
    assert again.returncode == 0, again.stderr
    assert again.stdout == 'nothing to do: the session table "Session" is at head already\n'
    assert postgres(empty_postgres, 'SELECT id FROM "Session"') == [("a",)]
    assert postgres(empty_postgres, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]


def test_a_database_the_repositorys_alembic_migrated_is_at_head_for_migrate(
    empty_postgres: str, tmp_path: Path
) -> None:
    assert alembic(empty_postgres, "upgrade", "head").returncode == 0
    assert postgres(empty_postgres, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    assert "alembic_version" not in postgres_tables(empty_postgres)
    again = migrate("--database-url", empty_postgres, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing to do")

    down = migrate("--database-url", empty_postgres, "--downgrade", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert 'done: the session table "Session" is at base' in down.stdout
    assert postgres_tables(empty_postgres) == [VERSION_TABLE]
    assert postgres(empty_postgres, f"SELECT version_num FROM {VERSION_TABLE}") == []
    assert alembic(empty_postgres, "current").stdout.strip() == ""


def test_sql_prints_the_ddl_for_a_dba_and_touches_nothing(empty_postgres: str, tmp_path: Path) -> None:
    result = migrate("--database-url", empty_postgres, "--sql", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ddl = result.stdout
    assert 'CREATE TABLE "Session" (' in ddl
    assert '"expiresAt" TIMESTAMP(3) WITHOUT TIME ZONE NOT NULL' in ddl
    assert 'CONSTRAINT "Session_pkey" PRIMARY KEY (id)' in ddl
    assert 'CREATE UNIQUE INDEX "Session_sid_key" ON "Session" (sid);' in ddl
    assert 'CREATE INDEX "Session_expiresAt_idx" ON "Session" ("expiresAt");' in ddl
    assert f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{HEAD}')" in ddl
    assert postgres_tables(empty_postgres) == []  # nothing was run

    # What the DBA runs makes Prisma's table, and records the revision so that `migrate` then does nothing.
    asyncio.run(_postgres_script(empty_postgres, ddl))
    columns, indexes, _ = asyncio.run(_catalog(empty_postgres))
    assert (columns, indexes) == (PRISMA_COLUMNS, PRISMA_INDEXES)
    assert migrate("--database-url", empty_postgres, cwd=tmp_path).stdout.startswith("nothing to do")


def test_sql_needs_no_database_at_all(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    result = migrate("--database-url", url, "--sql", "--downgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'DROP TABLE "Session";' in result.stdout
    assert f"DELETE FROM {VERSION_TABLE}" in result.stdout


def test_migrate_on_sqlite_in_the_current_folder_runs_twice_and_downgrades(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    env = {**os.environ, "DATABASE_URL": "sqlite:///app.db"}  # relative: in the folder it runs in
    first = migrate(cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert sqlite_schema(path) == SQLITE_SESSION
    assert sqlite_query(path, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    unique = sqlite_query(path, """SELECT "unique" FROM pragma_index_list('Session') ORDER BY name""")
    assert unique == [(0,), (1,), (1,)]  # expiresAt_idx, sid_key, and the primary key's own index

    second = migrate("--revision", HEAD, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == f'nothing to do: the session table "Session" is at {HEAD} already\n'
    assert sqlite_schema(path) == SQLITE_SESSION

    down = migrate("--database-url", "sqlite:///app.db", "--downgrade", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert sqlite_schema(path) == {("table", VERSION_TABLE, VERSION_TABLE)}
    assert sqlite_query(path, f"SELECT version_num FROM {VERSION_TABLE}") == []


def test_migrate_records_a_table_prisma_already_made(tmp_path: Path) -> None:
    path = tmp_path / "prisma.db"
    with sqlite3.connect(path) as conn:  # prisma migrate's SQL for the seed's model on SQLite
        conn.executescript(
            """CREATE TABLE "Session" ("id" TEXT NOT NULL PRIMARY KEY, "sid" TEXT NOT NULL,
                   "data" TEXT NOT NULL, "expiresAt" DATETIME NOT NULL);
               CREATE UNIQUE INDEX "Session_sid_key" ON "Session"("sid");
               CREATE INDEX "Session_expiresAt_idx" ON "Session"("expiresAt");
               INSERT INTO "Session" VALUES ('a', 'a', '{}', 0);"""
        )
    conn.close()
    result = migrate("--database-url", f"sqlite:///{path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sqlite_query(path, 'SELECT id FROM "Session"') == [("a",)]
    assert sqlite_query(path, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]


def test_a_custom_table_name_has_a_version_table_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "custom.db"
    url = f"sqlite:///{path}"
    result = migrate("--database-url", url, "--table-name", "sessions", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'the session table "sessions" is at head' in result.stdout
    assert sqlite_schema(path) == {
        ("table", "sessions", "sessions"),
        ("index", "sessions_sid_key", "sessions"),
        ("index", "sessions_expiresAt_idx", "sessions"),
        ("table", f"{VERSION_TABLE}_sessions", f"{VERSION_TABLE}_sessions"),
    }
    # The default table is another table, with its own history.
    assert migrate("--database-url", url, cwd=tmp_path).returncode == 0
    assert sqlite_schema(path) >= SQLITE_SESSION

    too_long = migrate("--database-url", url, "--table-name", "s" * 30, cwd=tmp_path)
    assert too_long.returncode == 2
    assert "at most 24 characters" in too_long.stderr


def test_the_repositorys_alembic_takes_the_table_name_as_an_x_argument(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    result = alembic(f"sqlite:///{path}", "-x", "table_name=sessions", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert ("index", "sessions_sid_key", "sessions") in sqlite_schema(path)
    assert sqlite_query(path, f"SELECT version_num FROM {VERSION_TABLE}_sessions") == [(HEAD,)]
    again = migrate("--database-url", f"sqlite:///{path}", "--table-name", "sessions", cwd=tmp_path)
    assert again.stdout.startswith("nothing to do"), again.stdout + again.stderr


def test_migrate_without_a_database_url_says_how_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = migrate(cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "error: give --database-url or set DATABASE_URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("postgresql://postgres:secret@127.0.0.1:{port}/app", 1, "ConnectionRefusedError"),
        ("sqlite:////no/such/folder/app.db", 1, "unable to open database file"),
        ("mysql://root:secret@127.0.0.1:{port}/app", 1, "Can't connect to MySQL server"),
        ("cockroachdb://root@127.0.0.1/app", 2, "CockroachDB speaks PostgreSQL's protocol"),
        ("oracle://scott@127.0.0.1/app", 2, "oracle is not supported"),
        ("postgresql+psycopg2://postgres@127.0.0.1/app", 2, "No module named 'psycopg2'"),
    ],
)
def test_a_database_migrate_cannot_use_is_one_line_not_a_traceback(
    tmp_path: Path, url: str, code: int, message: str
) -> None:
    result = migrate("--database-url", url.format(port=free_port()), cwd=tmp_path)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "secret" not in result.stderr
