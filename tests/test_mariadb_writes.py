"""What every write of a session must survive on MariaDB: data near the most one statement carries
(counted as asyncmy sends it, escapes and all), and, under the user-key index, data that MariaDB's JSON
functions cannot read: no write may warn, since a warning costs asyncmy a SHOW WARNINGS round trip."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fastapi_prisma_session import PrismaSessionStore, SessionTooLargeError
from fastapi_prisma_session.dialects.mysql.sql import Dialect
from tests.helpers import StatementLog, mariadb_database, mariadb_sql

LIMIT = Dialect.longest_data
assert LIMIT is not None
COOKIE = {"originalMaxAge": 3_600_000, "expires": "2030-01-01T00:00:00.000Z", "httpOnly": True, "path": "/"}


def dumps(session: dict[str, Any]) -> str:
    return json.dumps(session, separators=(",", ":"), ensure_ascii=False)


def near_limit(room: int, **keys: Any) -> dict[str, Any]:
    """A session that takes `room` bytes less than the limit in a statement: most of it quotes and
    backslashes, each of which JSON escapes and asyncmy escapes again (four bytes sent for one)."""
    session = {"cookie": COOKIE, **keys, "q": '"\\' * 1_500_000, "x": ""}
    session["x"] = "a" * (LIMIT.most - room - LIMIT.size(dumps(session)))
    assert LIMIT.size(dumps(session)) == LIMIT.most - room
    assert len(dumps(session).encode()) < LIMIT.most * 0.7  # within the limit as UTF-8 counts it
    return session


@pytest.fixture
def mariadb(mariadb_url: str) -> Iterator[str]:
    with mariadb_database("fps_writes") as url:
        yield url


@pytest.fixture
async def store(mariadb: str) -> AsyncIterator[PrismaSessionStore]:
    async with PrismaSessionStore(mariadb, user_key="user_id") as store:
        await store.create_table()
        await store.check_table()
        yield store


async def logged(log: StatementLog) -> list[str]:
    """The statements logged so far, once the query loggers (called soon after each) have run."""
    await asyncio.sleep(0)
    return log.statements


async def stored_text(url: str, sid: str) -> str | None:
    found = await mariadb_sql(f"SELECT data FROM `Session` WHERE sid = '{sid}'", url)
    return str(found[0][0]) if found else None


# -- the most a statement carries ------------------------------------------------------------------------


async def test_a_session_near_the_limit_can_be_created_changed_merged_touched_and_set(
    store: PrismaSessionStore, mariadb: str
) -> None:
    log = StatementLog(store.engine, store)
    session = near_limit(1000)
    await store.create("big", session)
    loaded = await store.load("big")
    assert loaded is not None
    assert loaded.text == dumps(session)

    # The compare-and-set finds the row unchanged: one UPDATE, which carries the data once.
    changed = {**session, "x": "b" + session["x"][1:]}
    (await logged(log)).clear()
    assert await store.update("big", changed, changed=["x"], expected=loaded.text)
    assert await logged(log) == ["UPDATE"]
    assert await stored_text(mariadb, "big") == dumps(changed)

    # Another request changed the row meanwhile: this one's key is applied to what is stored now.
    assert await store.update("big", {**changed, "other": 1})
    (await logged(log)).clear()
    assert await store.update("big", {**changed, "mine": 2}, changed=["mine"], expected=loaded.text)
    assert await logged(log) == ["UPDATE", "SELECT", "UPDATE"]
    assert await store.get("big") == {**changed, "other": 1, "mine": 2}

    touched = {**COOKIE, "expires": "2031-01-01T00:00:00.000Z"}
    assert await store.touch("big", {"cookie": touched})
    stored = await store.get("big")
    assert stored is not None
    assert (stored["cookie"], stored["mine"]) == (touched, 2)

    await store.set("big", session)
    assert await stored_text(mariadb, "big") == dumps(session)


async def test_a_session_over_the_limit_counting_escapes_is_refused_and_the_row_stays(
    store: PrismaSessionStore, mariadb: str
) -> None:
    small = {"cookie": COOKIE, "n": 1}
    await store.create("s", small)
    loaded = await store.load("s")
    assert loaded is not None
    # Two thirds of the limit as UTF-8; four thirds as sent, every backslash escaped twice.
    over = {"cookie": COOKIE, "x": "\\" * (LIMIT.most // 3)}
    sent = LIMIT.size(dumps(over))
    assert len(dumps(over).encode()) < LIMIT.most < sent
    writes = [
        store.create("new", over),
        store.set("s", over),
        store.update("s", over),
        store.update("s", over, changed=["x"], expected=loaded.text),
    ]
    for write in writes:
        with pytest.raises(SessionTooLargeError, match="escapes counted") as refused:
            await write
        assert (refused.value.size, refused.value.limit) == (sent, LIMIT.most)
    assert await stored_text(mariadb, "s") == dumps(small)
    assert await stored_text(mariadb, "new") is None


async def test_a_merge_or_touch_that_would_pass_the_limit_leaves_the_row_as_it_is(
    store: PrismaSessionStore, mariadb: str
) -> None:
    await store.create("m", {"cookie": COOKIE})
    loaded = await store.load("m")
    assert loaded is not None
    big = near_limit(100)
    await store.update("m", big)  # another request's write, after this one loaded the row
    with pytest.raises(SessionTooLargeError):
        # This request's own session is small; with the other request's data it is over the limit.
        await store.update("m", {"cookie": COOKIE, "pad": "p" * 200}, changed=["pad"], expected=loaded.text)
    with pytest.raises(SessionTooLargeError):
        await store.touch("m", {"cookie": {**COOKIE, "path": "/" + "p" * 200}})
    assert await stored_text(mariadb, "m") == dumps(big)


# -- no warnings under the user-key index -------------------------------------------------------------------

# Data Python writes and reads, which MariaDB's JSON functions refuse: a lone surrogate (written as the
# escape `\ud800`, as JSON.stringify writes it), before and after the user key, and nesting past 32.
UNREADABLE_TO_MARIADB = [
    {"user_id": 1, "x": "\ud800"},
    {"x": "\udc00", "user_id": 1},
    {"user_id": 1, "deep": json.loads("[" * 40 + "]" * 40)},
]


async def test_writes_of_data_mariadb_cannot_read_raise_no_warning_and_the_index_still_finds_them(
    store: PrismaSessionStore, mariadb: str, caplog: pytest.LogCaptureFixture
) -> None:
    # asyncmy logs each warning a statement left, from the SHOW WARNINGS it sends after it.
    caplog.set_level(logging.WARNING, logger="asyncmy")
    log = StatementLog(store.engine, store)
    for n, data in enumerate(UNREADABLE_TO_MARIADB):
        sid = f"u{n}"
        await store.create(sid, {"cookie": COOKIE, **data})
        loaded = await store.load(sid)
        assert loaded is not None
        assert loaded.data == {"cookie": COOKIE, **data}
        assert await store.update(sid, {**loaded.data, "a": 1}, changed=["a"], expected=loaded.text)
        assert await store.update(sid, {**loaded.data, "b": 2}, changed=["b"], expected=loaded.text)  # merged
        assert await store.touch(sid, {"cookie": {**COOKIE, "path": "/t"}})
        await store.set(f"set{n}", {"cookie": COOKIE, **data})
    await store.set("other", {"cookie": COOKIE, "user_id": 2})
    assert [record.getMessage() for record in caplog.records] == []
    assert "SHOW" not in await logged(log)
    # MariaDB cannot read them, so their rows are the index's candidates that Python reads.
    keys = await mariadb_sql("SELECT sid, data_user_id_key FROM `Session` WHERE sid LIKE 'u%'", mariadb)
    assert sorted(keys) == [("u0", b"!"), ("u1", b"!"), ("u2", b"!")]
    found = await store.matching(user_id=1)
    assert sorted(found) == ["set0", "set1", "set2", "u0", "u1", "u2"]
    assert found["u0"].data["x"] == "\ud800"
    assert await store.destroy_all(user_id=1) == 6
    assert sorted(await store.ids()) == ["other"]
    assert [record.getMessage() for record in caplog.records] == []
