"""`migrate` on a table that is already there: a session table (one Prisma made) is adopted and outlives a
downgrade; any other table is refused, and neither command touches it.

Through the real CLI (`python -m fastapi_prisma_session migrate`, a process of its own), on SQLite,
PostgreSQL and MariaDB, each table holding rows that must survive.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import PRISMA_MYSQL_DDL, mariadb_database, mariadb_sql, run_module, scratch_database

VERSION_TABLE = "alembic_version_fastapi_prisma_session"
HEAD = "0001_session_table"

# What `prisma migrate` writes for the seed's model on SQLite and PostgreSQL (MySQL's is in helpers).
PRISMA_SQLITE_DDL = """CREATE TABLE "Session" ("id" TEXT NOT NULL PRIMARY KEY, "sid" TEXT NOT NULL,
    "data" TEXT NOT NULL, "expiresAt" DATETIME NOT NULL);
CREATE UNIQUE INDEX "Session_sid_key" ON "Session"("sid");
CREATE INDEX "Session_expiresAt_idx" ON "Session"("expiresAt")"""
PRISMA_POSTGRES_DDL = """CREATE TABLE "Session" ("id" TEXT NOT NULL, "sid" TEXT NOT NULL,
    "data" TEXT NOT NULL, "expiresAt" TIMESTAMP(3) NOT NULL, CONSTRAINT "Session_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "Session_sid_key" ON "Session"("sid");
CREATE INDEX "Session_expiresAt_idx" ON "Session"("expiresAt")"""


@dataclass
class Database:
    """A scratch database of one kind, reached by its plain URL, with SQL run on it directly."""

    kind: str
    url: str
    path: Path | None = None  # SQLite's file

    @property
    def quote(self) -> str:
        return "`" if self.kind == "mariadb" else '"'

    def run(self, script: str) -> list[tuple[object, ...]]:
        """Run `script`, statements separated by ";", and return the last one's rows."""
        found: list[tuple[object, ...]] = []
        for statement in filter(str.strip, script.split(";")):
            found = self._one(statement)
        return found

    def _one(self, statement: str) -> list[tuple[object, ...]]:
        if self.path is not None:
            with sqlite3.connect(self.path) as conn:
                found = conn.execute(statement).fetchall()
            conn.close()
            return found
        if self.kind == "mariadb":
            return asyncio.run(mariadb_sql(statement, self.url))

        async def on_postgres() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(self.url)
            try:
                return [tuple(row) for row in await conn.fetch(statement)]
            finally:
                await conn.close()

        return asyncio.run(on_postgres())

    def tables(self) -> set[str]:
        sql = {
            "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
            "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            "mariadb": "SHOW TABLES",
        }[self.kind]
        return {str(name) for (name,) in self.run(sql)}

    def prisma_session_table(self) -> None:
        ddl = {"sqlite": PRISMA_SQLITE_DDL, "postgresql": PRISMA_POSTGRES_DDL, "mariadb": PRISMA_MYSQL_DDL}
        self.run(ddl[self.kind])


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        yield Database("sqlite", f"sqlite:///{path}", path)
    elif request.param == "postgresql":
        request.getfixturevalue("postgres_url")  # skips, or fails under CI, without a server
        with scratch_database("fps_adopt", migrate=False) as url:
            yield Database("postgresql", url)
    else:
        request.getfixturevalue("mariadb_url")
        with mariadb_database("fps_adopt") as url:
            yield Database("mariadb", url)


def migrate(database: Database, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_module("fastapi_prisma_session", "migrate", "--database-url", database.url, *args, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a refused run prints, after checking it is the only output."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_table_that_is_not_a_session_table_is_refused_and_never_dropped(
    database: Database, tmp_path: Path
) -> None:
    q = database.quote
    database.run(
        f"CREATE TABLE {q}Invoices{q} (id INTEGER PRIMARY KEY, customer VARCHAR(100) NOT NULL, "
        f"total INTEGER NOT NULL); INSERT INTO {q}Invoices{q} VALUES (1, 'ACME', 1200), (2, 'Initech', 80)"
    )
    before = database.tables()

    refused = migrate(database, "--table-name", "Invoices", cwd=tmp_path)
    assert one_line_error(refused) == (
        'error: the table "Invoices" exists and is not a session table: it has no column sid, data, '
        "expiresAt; it was left as it is"
    )
    assert database.tables() == before  # not even an empty version table is left behind

    down = migrate(database, "--table-name", "Invoices", "--downgrade", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert down.stdout == 'nothing to do: the session table "Invoices" is at base already\n'
    # Alembic makes its version table (empty) on any run, a downgrade from nowhere too.
    version = f"{VERSION_TABLE}_Invoices"
    assert database.tables() - {version} == before
    assert database.run(f"SELECT version_num FROM {q}{version}{q}") == []
    rows = database.run(f"SELECT id, customer, total FROM {q}Invoices{q} ORDER BY id")
    assert rows == [(1, "ACME", 1200), (2, "Initech", 80)]


def test_a_prisma_table_is_adopted_and_a_downgrade_leaves_it_with_its_rows(
    database: Database, tmp_path: Path
) -> None:
    q = database.quote
    database.prisma_session_table()
    database.run(f"INSERT INTO {q}Session{q} VALUES ('a', 'a', '{{}}', '2030-01-01 00:00:00')")

    adopted = migrate(database, cwd=tmp_path)
    assert adopted.returncode == 0, adopted.stderr
    assert 'done: the session table "Session" is at head' in adopted.stdout
    [(version, mark)] = database.run(f"SELECT version_num, adopted FROM {VERSION_TABLE}")
    assert (version, bool(mark)) == (HEAD, True)  # the mark that survives this process

    down = migrate(database, "--downgrade", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert 'left in place: the table "Session" was there before' in down.stdout
    assert 'done: the session table "Session" is at base' in down.stdout
    assert database.run(f"SELECT id, sid FROM {q}Session{q}") == [("a", "a")]
    assert database.run(f"SELECT version_num FROM {VERSION_TABLE}") == []  # only its record went

    # Once it is gone, a table the package creates itself is dropped by the downgrade as before: the
    # adoption mark belonged to the row that went with the last downgrade.
    database.run(f"DROP TABLE {q}Session{q}")
    created = migrate(database, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    [(_, mark)] = database.run(f"SELECT version_num, adopted FROM {VERSION_TABLE}")
    assert not mark
    dropped = migrate(database, "--downgrade", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert "left in place" not in dropped.stdout
    assert "Session" not in database.tables()


@pytest.mark.parametrize(
    ("ddl", "args", "message"),
    [
        (
            'CREATE TABLE "Session" (id TEXT PRIMARY KEY, sid TEXT, data TEXT, expires DATETIME)',
            [],
            'error: the table "Session" exists and is not a session table: it has no column expiresAt; it '
            "has expires: use --expires-column expires (alembic -x expires_column=expires); it was left "
            "as it is",
        ),
        (
            'CREATE TABLE "Session" (id TEXT PRIMARY KEY, sid TEXT, data TEXT, "expiresAt" DATETIME)',
            ["--expires-column", "expires"],
            'error: the table "Session" exists and is not a session table: it has no column expires; it '
            "has expiresAt: use --expires-column expiresAt (alembic -x expires_column=expiresAt); it was "
            "left as it is",
        ),
        (
            'CREATE TABLE "Session" (id INTEGER PRIMARY KEY, sid TEXT, data BLOB, "expiresAt" INTEGER)',
            [],
            'error: the table "Session" exists and is not a session table: id is INTEGER, data is BLOB, '
            "expiresAt is INTEGER (text and a date-time expected); it was left as it is",
        ),
    ],
    ids=["2x-table-3x-asked", "3x-table-2x-asked", "wrong-types"],
)
def test_the_error_says_what_is_wrong_with_the_table(
    tmp_path: Path, ddl: str, args: list[str], message: str
) -> None:
    path = tmp_path / "app.db"
    database = Database("sqlite", f"sqlite:///{path}", path)
    database.run(f"{ddl}; INSERT INTO \"Session\" VALUES (1, 'a', 'b', 0)")
    assert one_line_error(migrate(database, *args, cwd=tmp_path)) == message
    assert database.tables() == {"Session"}
    assert database.run('SELECT sid, data FROM "Session"') == [("a", "b")]
