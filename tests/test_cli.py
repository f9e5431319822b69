"""`fastapi-prisma-session` (`python -m fastapi_prisma_session`), called in-process (tests/test_migration.py
runs it as a subprocess, as a user would; these count towards coverage and run in a fraction of the
time), and the console script as pip installed it."""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cli import build_parser, main
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.urls import driver_url
from tests.helpers import run_module


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrate_creates_the_table_then_has_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert 'done: the session table "Session" is at head' in capsys.readouterr().out
    assert {"Session", "alembic_version_fastapi_prisma_session"} <= tables(tmp_path / "app.db")
    assert main(["migrate", "--database-url", url]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url, "--downgrade", "--quiet"]) == 0
    assert "Session" not in tables(tmp_path / "app.db")


def test_migrate_sql_prints_the_ddl_and_touches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--sql", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]) == 0
    out = capsys.readouterr().out
    assert 'CREATE TABLE "Session"' in out
    assert 'CREATE UNIQUE INDEX "Session_sid_key"' in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["migrate"], 2, "give --database-url or set DATABASE_URL"),
        (["migrate", "--database-url", "oracle://x/y"], 2, "oracle is not supported"),
        (["migrate", "--database-url", "postgresql://postgres@127.0.0.1:1/none"], 1, "cannot migrate"),
        (["prune", "--database-url", "postgresql://postgres@127.0.0.1:1/none"], 1, "cannot prune"),
        (["prune", "--database-url", "oracle://x/y"], 2, "oracle is not supported"),
        (["prune", "--database-url", "nosuchscheme://x/y"], 2, "error:"),
        (["prune", "--database-url", "sqlite://"], 2, "in-memory SQLite"),
        (["prune", "--database-url", "postgresql://postgres@127.0.0.1:5432/fps_no_such_db"], 1, "refused"),
        (["prune", "--database-url", "postgresql://fps_no_such_role@127.0.0.1:5432/postgres"], 1, "refused"),
        (["prune", "--database-url", "mysql://fps_no_such_role@127.0.0.1:3306/mysql"], 1, "refused"),
        (["prune", "--database-url", "sqlite:///x.db", "--batch-size", "0"], 2, "prune_batch_size"),
        (["migrate", "--database-url", "postgresql://u@h1:5432,h2:abc/db"], 2, "1 to 65535"),
        (["prune", "--database-url", "postgresql://u@h1:5432,h2:abc/db"], 2, "1 to 65535"),
        (["migrate", "--sql", "--database-url", "mysql://u@h1:3306,h2:abc/db"], 2, "1 to 65535"),
        (["prune", "--database-url", "mysql://u@h1:3306,h2:abc/db"], 2, "1 to 65535"),
        (["prune", "--database-url", "postgresql://postgres@127.0.0.1:99999/postgres"], 2, "1 to 65535"),
    ],
)
def test_mistakes_and_unreachable_databases_are_one_line_and_an_exit_code(
    argv: list[str],
    code: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_prune_removes_expired_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["migrate", "--database-url", url, "--quiet"]) == 0

    async def fill() -> None:
        async with PrismaSessionStore(url) as store:
            await store.set("live", {"cookie": {"originalMaxAge": 60_000, "expires": None}})
            await store.set("old", {"cookie": {"originalMaxAge": 60_000, "expires": None}})

    asyncio.run(fill())
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("""UPDATE "Session" SET "expiresAt" = '2000-01-01 00:00:00' WHERE sid = 'old'""")
    assert main(["prune", "--database-url", url]) == 0
    assert "removed 1 expired sessions" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "app.db") as db:
        assert [sid for (sid,) in db.execute('SELECT sid FROM "Session"')] == ["live"]


# -- the command line as a user meets it: the console script, and --help -------------------------------


def test_every_command_and_option_is_described() -> None:
    parser = build_parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert set(commands.choices) == {"migrate", "prune", "reencrypt"}
    described = {choice.dest: choice.help for choice in commands._choices_actions}
    for name, command in commands.choices.items():
        assert described[name], name  # a line in the top-level --help
        assert command.description, name  # and a paragraph in its own
        for action in command._actions:
            assert action.help, (name, action.option_strings)
            assert action.help != argparse.SUPPRESS, (name, action.option_strings)


def test_the_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "fastapi-prisma-session"  # the venv's bin, as pip installed it
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: fastapi-prisma-session ")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrated = subprocess.run(
        [script, "migrate", "--database-url", url], capture_output=True, text=True, check=False, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert 'done: the session table "Session" is at head' in migrated.stdout
    assert "Session" in tables(tmp_path / "app.db")


def test_python_dash_m_names_itself_in_its_usage() -> None:
    helped = run_module("fastapi_prisma_session", "prune", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: python -m fastapi_prisma_session prune ")


# -- long work shows progress on stderr, and the outcome on stdout ---------------------------------------


def test_prune_reports_progress_on_stderr_and_the_total_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["migrate", "--database-url", url, "--quiet"]) == 0
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.executemany(
            'INSERT INTO "Session" (id, sid, data, "expiresAt") VALUES (?, ?, ?, ?)',
            [(f"r{n}", f"s{n}", "{}", "2000-01-01 00:00:00") for n in range(250)],
        )
    db.close()
    argv = ["prune", "--database-url", url, "--batch-size", "100", "--pause", "0", "--progress-every", "0"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r'removed 250 expired sessions from "Session" in \d+\.\d s\n', out)
    progress = err.splitlines()
    assert [line.split(" (")[0] for line in progress] == [
        "… 100 removed so far",
        "… 200 removed so far",
        "… 250 removed so far",
    ]
    assert all(re.search(r"\(\d+ rows/s\)$", line) for line in progress)


def test_quiet_prune_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert main(["migrate", "--database-url", url, "--quiet"]) == 0
    assert main(["prune", "--database-url", url, "--progress-every", "0", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


async def drop_session_tables(url: str) -> None:
    engine = create_async_engine(driver_url(url))
    quote = engine.dialect.identifier_preparer.quote_identifier
    try:
        async with engine.begin() as conn:
            for name in ("Session", "alembic_version_fastapi_prisma_session"):
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")
    finally:
        await engine.dispose()


async def fill_and_list_indexes(url: str, count: int) -> set[str]:
    """Insert `count` sessions with a user_id (none if 0), and the session table's indexes."""
    engine = create_async_engine(driver_url(url))
    listed = {
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'Session'",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'Session'",
        "mysql": "SELECT DISTINCT index_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE() AND table_name = 'Session'",
    }
    try:
        async with engine.begin() as conn:
            if count:
                expires = utcnow() + timedelta(days=1)
                await conn.execute(
                    insert(session_table()),
                    [
                        {
                            "id": f"r{n}",
                            "sid": f"s{n}",
                            "data": f'{{"user_id":{n % 7}}}',
                            "expiresAt": expires,
                        }
                        for n in range(count)
                    ],
                )
            return set((await conn.execute(text(listed[engine.dialect.name]))).scalars())
    finally:
        await engine.dispose()


def test_migrate_user_key_says_what_it_built(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    index = "Session_data_user_id_idx"
    asyncio.run(drop_session_tables(database_url))
    try:
        assert main(["migrate", "--database-url", database_url, "--quiet"]) == 0
        asyncio.run(fill_and_list_indexes(database_url, 1500))
        add = ["migrate", "--database-url", database_url, "--user-key", "user_id"]

        assert main(add) == 0
        out, err = capsys.readouterr()
        assert err == f'building index "{index}" on "Session" (1500 rows)…\n'  # before the work starts
        assert re.search(rf'^built index "{index}" on "Session" \(1500 rows\) in \d+\.\d s$', out, re.M), out
        assert "nothing to do" not in out
        assert 'the session table "Session" is at head already' in out
        assert index in asyncio.run(fill_and_list_indexes(database_url, 0))

        assert main(add) == 0  # the second time: there already
        out, err = capsys.readouterr()
        assert f'index "{index}" already there: nothing to do' in out
        assert "built" not in out
        assert err == ""

        drop = ["migrate", "--database-url", database_url, "--drop-user-key", "user_id"]
        assert main(drop) == 0
        assert f'dropped index "{index}" from "Session"' in capsys.readouterr().out
        assert index not in asyncio.run(fill_and_list_indexes(database_url, 0))
        assert main(drop) == 0
        assert f'index "{index}" not there: nothing to do' in capsys.readouterr().out

        assert main([*add, "--quiet"]) == 0  # built again, silently
        assert capsys.readouterr() == ("", "")
        assert index in asyncio.run(fill_and_list_indexes(database_url, 0))
    finally:
        asyncio.run(drop_session_tables(database_url))
