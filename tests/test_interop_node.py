"""Interop with the real Node system, both ways, on each database.

- Python reads the cookies and rows that express-session + prisma-session-store 3.1.21 on Prisma 7
  wrote (tests/interop/fixtures/node-<database>*.json, recorded by tests/interop/recorder/record.mjs):
  the rows go in exactly as recorded, each `expiresAt` in the encoding it was recorded in (on SQLite
  integer milliseconds and ISO-8601 text, in one table), moved into the future so they never expire.
- Node reads, through read.mjs against the test's own database, the sessions Python wrote, by their
  signed cookies, writes them back, and Python reads what Node wrote.

Each test runs on every database of INTEROP_DATABASES.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, Text, bindparam, cast, insert, text, update
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cookies import iso_utc
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import EPOCH, session_table, sqlite_datetime_text
from fastapi_prisma_session.signing import Signer
from tests.helpers import client_for, make_app, rows
from tests.node_recorder import read_sessions, reader_database, recordings, require_node

# The databases the Node system is run against (the database_url fixture's names).
INTEROP_DATABASES = ["sqlite", "postgresql", "mariadb"]
on_each_database = pytest.mark.parametrize("database_url", INTEROP_DATABASES, indirect=True)

# How each database stores expiresAt in the recordings: raw value -> the same encoding of another instant.
ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"
ADAPTER_TEXT = re.compile(ISO_MS + r"\+00:00")  # @prisma/adapter-better-sqlite3's default
NAIVE_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,3})?")  # the pg and mariadb servers' text


def encode_like(recorded: int | str, moment: datetime) -> int | str:
    """`moment` in the encoding of the recorded `expiresAt` value."""
    if isinstance(recorded, int):
        return (moment - EPOCH) // timedelta(milliseconds=1)
    if ADAPTER_TEXT.fullmatch(recorded):
        return sqlite_datetime_text(moment)
    assert NAIVE_TEXT.fullmatch(recorded), f"an encoding this test does not know: {recorded!r}"
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def node_options(recording: dict[str, Any]) -> dict[str, Any]:
    """The middleware options that match the recording's express-session setup."""
    return {
        "secret": recording["secret"],
        "cookie_name": recording["cookie_name"],
        "max_age": recording["max_age_ms"] / 1000,
        "samesite": False,
        "secure": False,
    }


def as_stored(engine: AsyncEngine, recorded: int | str, moment: datetime) -> Any:
    """`moment` as a SQL value in the encoding of the recorded `expiresAt`, handed to the database as
    the recording's driver handed it: PostgreSQL gets the server's text, the others the value itself."""
    value = bindparam(
        "expires", encode_like(recorded, moment), type_=Text if isinstance(recorded, str) else Integer
    )
    return cast(value, TIMESTAMP(precision=3)) if engine.dialect.name == "postgresql" else value


async def insert_as_recorded(engine: AsyncEngine, row: dict[str, Any], expires: datetime) -> None:
    """The recorded row as it was stored, with expiresAt (and the cookie's expiry) moved to `expires`."""
    data = json.loads(row["data"])
    data["cookie"]["expires"] = iso_utc(expires)
    values = {"id": row["id"], "sid": row["sid"], "data": json.dumps(data, separators=(",", ":"))}
    table = session_table()
    async with engine.begin() as conn:
        await conn.execute(
            insert(table).values(**values, expiresAt=as_stored(engine, row["expiresAt"], expires))
        )


async def move_expiry(engine: AsyncEngine, sid: str, recorded: int | str, moment: datetime) -> None:
    """Set a row's expiresAt to `moment`, in the encoding of `recorded`."""
    table = session_table()
    async with engine.begin() as conn:
        await conn.execute(
            update(table).where(table.c.sid == sid).values(expiresAt=as_stored(engine, recorded, moment))
        )


@on_each_database
async def test_python_reads_every_session_node_recorded(
    database_url: str, engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    recorded = recordings(reader_database(database_url))
    assert recorded, "no recording for this database in tests/interop/fixtures"
    everything = [
        (row, session)
        for r in recorded.values()
        for row, session in zip(r["rows"], r["sessions"], strict=True)
    ]
    later = utcnow() + timedelta(days=3)
    for row, _ in everything:
        await insert_as_recorded(engine, row, later)
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            kinds = set((await conn.execute(text('SELECT typeof("expiresAt") FROM "Session"'))).scalars())
        assert kinds == {"integer", "text"}  # both of Prisma's encodings, side by side in one table

    options = node_options(next(iter(recorded.values())))
    async with client_for(make_app(store, **options)) as client:
        for row, session in everything:
            response = await client.get("/dump", headers={"cookie": session["cookie"]})
            assert response.json() == session["body_after_two_writes"], row["expiresAt"]
    sids = {row["sid"] for row, _ in everything}
    assert await store.length() == len(everything)
    assert set(await store.ids()) == sids
    assert {sid: data["n"] for sid, data in (await store.all()).items()} == dict.fromkeys(sids, 2)
    assert set(await store.matching(n=2)) == sids
    loaded = await store.load(everything[0][0]["sid"])
    assert loaded is not None
    assert abs(loaded.expires_at - later) < timedelta(milliseconds=1)

    # The first row of each recording expires, in its own encoding: every count and the prune agree.
    expired = {r["rows"][0]["sid"]: r["rows"][0]["expiresAt"] for r in recorded.values()}
    for sid, value in expired.items():
        await move_expiry(engine, sid, value, utcnow() - timedelta(seconds=2))
    assert await store.length() == len(everything) - len(expired)
    assert set(await store.ids()) == sids - set(expired)
    assert set(await store.all()) == sids - set(expired)
    assert set(await store.matching(n=2)) == sids - set(expired)
    assert await store.prune() == len(expired)
    assert set(await rows(engine)) == sids - set(expired)


async def python_sessions(
    store: PrismaSessionStore, engine: AsyncEngine, options: dict[str, Any]
) -> dict[str, str]:
    """Sessions written through our middleware, by the Cookie header a browser sends: three live ones
    ({"n": 2}), one logged out and one expired."""
    cookies: dict[str, str] = {}
    app = make_app(store, **options)
    for name in ("live1", "live2", "live3", "logged-out", "expired"):
        async with client_for(app) as client:
            for _ in range(2):
                response = await client.post("/increment")
                assert response.status_code == 200
            cookies[name] = f"{options['cookie_name']}={client.cookies[options['cookie_name']]}"
            if name == "logged-out":
                assert (await client.delete("/session")).status_code == 200
    expired = next(sid for sid in await store.ids() if f"%3A{sid}." in cookies["expired"])
    async with engine.begin() as conn:
        table = store.table
        await conn.execute(
            table.update().where(table.c.sid == expired).values(expiresAt=utcnow() - timedelta(seconds=1))
        )
    return cookies


async def raw_expiry(engine: AsyncEngine, column: str = "expiresAt") -> dict[str, Any]:
    """Each row's expiry exactly as stored, by sid."""
    async with engine.connect() as conn:
        return dict((await conn.execute(text(f'SELECT sid, "{column}" FROM "Session"'))).all())  # type: ignore[arg-type]


@on_each_database
@pytest.mark.parametrize("expires_column", ["expiresAt", "expires"])
async def test_node_reads_what_python_wrote_and_python_reads_nodes_write(
    database_url: str, engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore], expires_column: str
) -> None:
    """On 3.x's model, and on 2.x's (`expires`), which the Node side maps with `@map("expires")`."""
    require_node()
    async with engine.begin() as conn:
        await conn.run_sync(session_table(expires_column=expires_column).create)
    store = make_store()  # finds the expiry column by itself
    options = node_options(next(iter(recordings(reader_database(database_url)).values())))
    cookies = await python_sessions(store, engine, options)
    before = await rows(engine, expires_column=expires_column)
    assert len(before) == 4  # the logged-out session has no row
    on_sqlite = engine.dialect.name == "sqlite"
    python_text = await raw_expiry(engine, expires_column) if on_sqlite else {}

    # One Node process reads every cookie and writes each session it finds back with n + 1.
    status, found = read_sessions(
        database_url, list(cookies.values()), "--increment", "--expires-column", expires_column
    )
    assert status == 3  # the logged-out and the expired session are not found
    results = dict(zip(cookies, found, strict=True))
    for name in ("live1", "live2", "live3"):
        node = results[name]
        sid = node["cookie_sid"]
        stored = before[sid]
        assert node["found"] is True, node
        assert node["row_error"] is None
        assert node["data"] == {"n": 2}
        assert node["data_after_request"] == {"n": 3}
        assert node["row_id"] == stored["id"]
        # Prisma read the instant Python stored, to the millisecond, and the cookie object as written.
        assert node["row_expires_at"] == iso_utc(stored["expires_at"])
        assert node["session"]["cookie"] == json.loads(stored["data"])["cookie"]
    assert results["logged-out"]["found"] is False
    assert results["logged-out"]["row_found"] is False
    assert results["expired"]["found"] is False
    assert results["expired"]["row_found"] is True  # and prisma-session-store's get() deleted it

    after = await rows(engine, expires_column=expires_column)
    assert results["expired"]["cookie_sid"] not in after
    async with client_for(make_app(store, **options)) as client:
        for name in ("live1", "live2", "live3"):
            response = await client.get("/dump", headers={"cookie": cookies[name]})
            assert response.json() == {"n": 3}
    if on_sqlite:
        # What Python writes is what the adapter writes: text of the same form, to the millisecond.
        node_text = await raw_expiry(engine, expires_column)
        assert all(ADAPTER_TEXT.fullmatch(value) for value in python_text.values()), python_text
        assert all(ADAPTER_TEXT.fullmatch(value) for value in node_text.values()), node_text
        rewritten = [results[name]["cookie_sid"] for name in ("live1", "live2", "live3")]
        assert all(node_text[sid] != python_text[sid] for sid in rewritten)  # Node wrote these


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_node_in_unixepoch_ms_mode_shares_a_table_with_python(
    database_url: str, engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    """The adapter's `unixepoch-ms` mode (the Rust engine's encoding): Node reads Python's text, writes
    integers back, and Python reads, counts and prunes them."""
    require_node()
    options = node_options(recordings("sqlite")["node-sqlite-unixepoch-ms.json"])
    cookies = await python_sessions(store, engine, options)
    live = [cookies[name] for name in ("live1", "live2", "live3")]
    status, found = read_sessions(
        database_url, live, "--increment", "--sqlite-timestamp-format", "unixepoch-ms"
    )
    assert status == 0
    assert [line["data_after_request"] for line in found] == [{"n": 3}] * 3
    async with engine.connect() as conn:
        kinds = dict((await conn.execute(text('SELECT sid, typeof("expiresAt") FROM "Session"'))).all())
    assert {kinds[line["cookie_sid"]] for line in found} == {"integer"}

    async with client_for(make_app(store, **options)) as client:
        for cookie in live:
            assert (await client.get("/dump", headers={"cookie": cookie})).json() == {"n": 3}
    assert await store.length() == 3
    first = found[0]["cookie_sid"]
    async with engine.begin() as conn:
        await conn.execute(
            text('UPDATE "Session" SET "expiresAt" = "expiresAt" - 30 * 86400000 WHERE sid = :sid'),
            {"sid": first},
        )
    assert await store.length() == 2
    assert await store.prune() == 2  # that one, and the session python_sessions left expired
    assert set(await rows(engine)) == {line["cookie_sid"] for line in found[1:]}


@on_each_database
async def test_node_writes_to_a_table_with_the_user_key_index_and_the_index_finds_them(
    database_url: str, engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    """prisma-session-store's writes succeed on the table `migrate --user-key` changed (on MySQL a
    generated column more), and the index finds the sessions as Node rewrote them."""
    require_node()
    store = make_store(user_key="user_id")
    await store.create_table()
    options = node_options(next(iter(recordings(reader_database(database_url)).values())))
    signer = Signer([options["secret"]])
    users = {"u0": 7, "u1": 7, "u2": 8}
    cookie = {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"}
    for sid, user in users.items():
        await store.set(sid, {"cookie": cookie, "n": 2, "user_id": user})
    # Node writes each one back, and a new session (an INSERT) for a cookie whose session is not there.
    cookies = [f"{options['cookie_name']}={signer.cookie_value(sid)}" for sid in [*users, "gone"]]
    status, found = read_sessions(database_url, cookies, "--increment")
    assert status == 3  # "gone" was not found
    assert [line["data_after_request"] for line in found] == [
        *({"n": 3, "user_id": user} for user in users.values()),
        {"n": 1},
    ]
    matched = await store.matching(user_id=7)
    assert {sid: session.data["n"] for sid, session in matched.items()} == {"u0": 3, "u1": 3}
    assert await store.destroy_all(user_id=8) == 1
    left = await rows(engine)
    [new] = set(left) - {"u0", "u1"}
    assert json.loads(left[new]["data"])["n"] == 1
