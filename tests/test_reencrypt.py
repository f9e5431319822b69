"""`fastapi-prisma-session reencrypt`: every row sealed with the newest key, in batches, with progress on
stderr, on SQLite, PostgreSQL and MariaDB; keys only from the environment."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cli import main
from fastapi_prisma_session.encryption import ENVELOPE_KEY, key_id
from tests.helpers import insert_row, rows, run_module

MakeStore = Callable[..., PrismaSessionStore]
OLD, NEW, LOST = (base64.urlsafe_b64encode(bytes(range(i, i + 32))).decode() for i in (0, 100, 200))
COOKIE = {"originalMaxAge": 3_600_000, "expires": None, "httpOnly": True, "path": "/"}


def kid(text: str) -> str | None:
    token = json.loads(text).get(ENVELOPE_KEY)
    return None if token is None else token.split(".")[1]


def newest() -> str:
    return key_id(base64.urlsafe_b64decode(NEW))


async def test_reencrypt_seals_every_row_with_the_newest_key(
    make_store: MakeStore,
    engine: AsyncEngine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = make_store(encryption_keys=[OLD])
    await old.create_table()
    for n in range(5):
        await old.set(f"old{n}", {"cookie": COOKIE, "n": n, "secret": "s3cret"})
    for n in range(3):
        await insert_row(engine, f"plain{n}", {"cookie": COOKIE, "n": n, "secret": "s3cret"})
    await make_store(encryption_keys=[NEW]).set("new", {"cookie": COOKIE, "n": 9})
    await make_store(encryption_keys=[LOST]).set("lost", {"cookie": COOKIE, "n": 0})
    before = await rows(engine)
    mover = make_store(encryption_keys=[OLD], db_record_id_is_session_id=True)
    await mover.set("moving", {"cookie": COOKIE, "n": 1})
    assert await mover.rename("moving", "moved")  # leaves a plain marker, which stays as it is
    marker = next(sid for sid in await rows(engine) if sid.startswith("regenerated:"))

    monkeypatch.setenv("APP_SESSION_KEYS", f"{NEW},{OLD}")
    argv = ["reencrypt", "--database-url", database_url, "--key-env", "APP_SESSION_KEYS"]
    # main() runs its own event loop, as the console script does: in a thread of its own here.
    assert await asyncio.to_thread(main, [*argv, "--batch-size", "2", "--progress-every", "0"]) == 0
    out, err = capsys.readouterr()
    assert 're-encrypted 9 of 12 sessions in "Session"' in out
    assert "1 could not be decrypted" in out
    assert err.count("re-encrypted so far") == 6  # one line per batch of 2 rows
    after = await rows(engine)
    for sid, row in after.items():
        if sid == "lost":
            assert row["data"] == before["lost"]["data"]  # left as it was
        elif sid == marker:
            assert ENVELOPE_KEY not in row["data"]
        else:
            assert kid(row["data"]) == newest(), sid
            assert "s3cret" not in row["data"]
    reader = make_store(encryption_keys=[NEW])
    assert await reader.get("plain2") == {"cookie": COOKIE, "n": 2, "secret": "s3cret"}
    assert await reader.get("old4") == {"cookie": COOKIE, "n": 4, "secret": "s3cret"}
    assert await reader.get("moved") == {"cookie": COOKIE, "n": 1}

    # Again: nothing left to do, and --quiet prints nothing.
    assert await asyncio.to_thread(main, [*argv, "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert await rows(engine) == after


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reencrypt_takes_keys_only_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SESSION_ENCRYPTION_KEYS", raising=False)
    argv = ["reencrypt", "--database-url", database_url]
    assert main(argv) == 2
    assert "set $SESSION_ENCRYPTION_KEYS to the encryption keys" in capsys.readouterr().err
    monkeypatch.setenv("SESSION_ENCRYPTION_KEYS", "c2hvcnQ=")
    assert main(argv) == 2
    assert "must be 32 bytes" in capsys.readouterr().err
    monkeypatch.setenv("SESSION_ENCRYPTION_KEYS", NEW)
    assert main([*argv, "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive" in capsys.readouterr().err
    assert main(argv) == 1  # no table
    assert "cannot re-encrypt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--keys", NEW])  # no option takes a key itself
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_console_command_reencrypts(
    make_store: MakeStore, engine: AsyncEngine, database_url: str
) -> None:
    """As a user runs it: a process of its own, the keys in its environment."""
    await make_store().create_table()
    await insert_row(engine, "plain", {"cookie": COOKIE, "n": 1})
    done = run_module(
        "fastapi_prisma_session",
        "reencrypt",
        "--database-url",
        database_url,
        env={**os.environ, "SESSION_ENCRYPTION_KEYS": NEW},
    )
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 of 1 sessions" in done.stdout
    assert kid((await rows(engine))["plain"]["data"]) == newest()
