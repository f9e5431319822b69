"""`alembic upgrade head` on real empty databases creates exactly Prisma's table (SPEC §2)."""

from __future__ import annotations

import asyncio
import os
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
from tests.helpers import alembic, scratch_database

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
