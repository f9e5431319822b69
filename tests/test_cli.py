"""`python -m fastapi_prisma_session`, called in-process (tests/test_migration.py runs it as a
subprocess, as a user would; these count towards coverage and run in a fraction of the time)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cli import main


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
