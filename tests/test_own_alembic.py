"""The own-Alembic recipe of docs/migrations.md, followed as a user would, in an empty folder.

`alembic init -t async migrations`, the edits the docs give (applied as text, and checked to be the docs'
own words), `alembic revision`, the revision's body, `alembic upgrade head` and a clean `alembic check`:
on SQLite with the URL in alembic.ini, and on PostgreSQL with the plain `postgresql://` DATABASE_URL
Prisma uses. PYTHONPATH names the repository only so that this checkout's package is the one imported.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import helpers
from tests.helpers import DOCS, mariadb_database, mariadb_sql, run_module, scratch_database

PAGE = DOCS / "migrations.md"

# The recipe, as the page gives it.
INIT = "alembic init -t async migrations"
TEMPLATE_METADATA = "target_metadata = None\n"
TARGET_METADATA = "from fastapi_prisma_session import migration\n\ntarget_metadata = migration.metadata\n"
TEMPLATE_URL = "sqlalchemy.url = driver://user:pass@localhost/dbname\n"
URL_IN_INI = "sqlalchemy.url = sqlite+aiosqlite:///app.db\n"
URL_FROM_ENVIRONMENT = (
    "import os\n\n"
    'config.set_main_option("sqlalchemy.url", migration.alembic_url(os.environ["DATABASE_URL"]))\n'
)
REVISION = 'alembic revision -m "session table"'
REVISION_IMPORT = "from fastapi_prisma_session import migration\n"
REVISION_BODY = (
    "def upgrade() -> None:\n    migration.upgrade()\n\n\n"
    "def downgrade() -> None:\n    migration.downgrade()\n"
)
UPGRADE_AND_CHECK = "alembic upgrade head\nalembic check\n"
# The user-key section's additions: the index in the revision, and include_object in env.py.
USER_KEY_BODY = (
    'def upgrade() -> None:\n    migration.upgrade()\n    migration.add_user_key_index("user_id")\n\n\n'
    'def downgrade() -> None:\n    migration.drop_user_key_index("user_id")\n    migration.downgrade()\n'
)
TEMPLATE_CONFIGURE = "context.configure(connection=connection, target_metadata=target_metadata)"
INCLUDE_OBJECT = ", include_object=migration.include_object"
CLEAN = "No new upgrade operations detected."


def doc_blocks() -> list[str]:
    """The fenced blocks of the page, dedented."""
    return [body for _, body in helpers.doc_blocks(PAGE)]


def test_the_docs_give_the_recipe_this_test_follows() -> None:
    blocks = doc_blocks()
    for snippet in (
        INIT + "\n",
        TARGET_METADATA,
        URL_IN_INI,
        URL_FROM_ENVIRONMENT,
        REVISION + "\n",
        REVISION_IMPORT,
        REVISION_BODY,
        UPGRADE_AND_CHECK,
    ):
        assert snippet in blocks, f"{PAGE.name} has no block\n{snippet}"
    text = PAGE.read_text()
    assert "Replace `target_metadata = None` with:" in text
    assert CLEAN in text


def run_alembic(folder: Path, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` (an `alembic ...` line of the docs) in `folder`, with this checkout's package."""
    program, *argv = shlex.split(command)
    assert program == "alembic"
    result = run_module("alembic", *argv, cwd=folder, env=env)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} does not hold {old!r} once"
    path.write_text(text.replace(old, new))


def follow_the_recipe(folder: Path, env: dict[str, str], *, url_in_ini: bool, user_key: bool = False) -> None:
    """The page's recipe; with `user_key`, docs/scale.md's too: the revision adds the index and
    env.py passes `include_object`."""
    run_alembic(folder, INIT, env)
    env_py = folder / "migrations" / "env.py"
    edit(env_py, TEMPLATE_METADATA, TARGET_METADATA)
    if url_in_ini:
        edit(folder / "alembic.ini", TEMPLATE_URL, URL_IN_INI)
    else:
        edit(env_py, TARGET_METADATA, TARGET_METADATA + "\n" + URL_FROM_ENVIRONMENT)
    if user_key:
        edit(env_py, TEMPLATE_CONFIGURE, TEMPLATE_CONFIGURE.replace(")", INCLUDE_OBJECT + ")"))

    run_alembic(folder, REVISION, env)
    [revision] = (folder / "migrations" / "versions").glob("*_session_table.py")
    edit(revision, "from alembic import op\n", "from alembic import op\n" + REVISION_IMPORT)
    text = revision.read_text()
    revision.write_text(text[: text.index("def upgrade()")] + (USER_KEY_BODY if user_key else REVISION_BODY))

    upgrade, check = UPGRADE_AND_CHECK.splitlines()
    run_alembic(folder, upgrade, env)
    assert CLEAN in run_alembic(folder, check, env).stdout


def without_database_url() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}


def test_the_recipe_on_sqlite_with_the_url_in_alembic_ini(tmp_path: Path) -> None:
    follow_the_recipe(tmp_path, without_database_url(), url_in_ini=True)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        found = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    conn.close()
    # The app's own alembic_version holds the app's revision; the package's version table is not used.
    assert set(found) == {
        ("table", "alembic_version"),
        ("table", "Session"),
        ("index", "Session_sid_key"),
        ("index", "Session_expiresAt_idx"),
    }


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A brand-new PostgreSQL database, as the plain `postgresql://` URL a Prisma project has."""
    with scratch_database("fps_own_alembic", migrate=False) as url:
        yield url


async def _catalog(url: str) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'Session'")
    finally:
        await conn.close()
    return sorted(row[0] for row in tables), sorted(row[0] for row in indexes)


def test_the_recipe_on_postgresql_with_a_plain_database_url(empty_postgres: str, tmp_path: Path) -> None:
    assert empty_postgres.startswith("postgresql://")
    follow_the_recipe(tmp_path, {**os.environ, "DATABASE_URL": empty_postgres}, url_in_ini=False)
    tables, indexes = asyncio.run(_catalog(empty_postgres))
    assert tables == ["Session", "alembic_version"]
    assert indexes == ["Session_expiresAt_idx", "Session_pkey", "Session_sid_key"]


@pytest.fixture
def empty_mariadb(mariadb_url: str) -> Iterator[str]:
    """A brand-new MariaDB database, as the plain `mysql://` URL a Prisma project has."""
    with mariadb_database("fps_own_alembic") as url:
        yield url


def test_the_recipe_with_the_user_key_index_on_mariadb(empty_mariadb: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": empty_mariadb}
    follow_the_recipe(tmp_path, env, url_in_ini=False, user_key=True)  # `alembic check` is clean
    created = str(asyncio.run(mariadb_sql("SHOW CREATE TABLE `Session`", empty_mariadb))[0][1])
    assert "`data_user_id_key` varbinary(255) GENERATED ALWAYS AS (" in created
    assert "KEY `Session_data_user_id_idx` (`data_user_id_key`)" in created
    run_alembic(tmp_path, "alembic downgrade base", env)
    assert asyncio.run(mariadb_sql("SHOW TABLES", empty_mariadb)) == [("alembic_version",)]
