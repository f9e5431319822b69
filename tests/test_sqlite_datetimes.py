"""SQLite rows in every DateTime encoding Prisma writes, side by side in one table: integer milliseconds
(the Rust engine, the adapters' `unixepoch-ms`), ISO-8601 text with `+00:00` (the adapters' default) or
`Z`, and the naive text this package wrote before 0.2. Each loads, counts, lists, matches, expires and
is pruned at the instant it stands for, including the ones whose text sorts on the wrong side of now."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import EPOCH, parse_sqlite_datetime, sqlite_datetime_text
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, make_app, rows

on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ENCODINGS: dict[str, Callable[[datetime], int | str]] = {
    "integer ms": lambda moment: (moment - EPOCH) // timedelta(milliseconds=1),
    "+00:00": sqlite_datetime_text,
    "Z": lambda moment: sqlite_datetime_text(moment).replace("+00:00", "Z"),
    "naive, space": lambda moment: moment.isoformat(sep=" "),
}
# Offsets from now, chosen so that comparing the texts as text would get some of them wrong: a naive
# "2026-11-28 10:05" sorts before "2026-11-28T10:00", and every number before every text.
OFFSETS = {"live": timedelta(minutes=5), "live soon": timedelta(seconds=30), "expired": -timedelta(minutes=5)}


def test_python_writes_the_adapters_text_to_the_millisecond() -> None:
    moment = datetime(2026, 12, 5, 7, 31, 43, 22_999)
    assert sqlite_datetime_text(moment) == "2026-12-05T07:31:43.022+00:00"
    assert sqlite_datetime_text(moment.replace(tzinfo=UTC)) == "2026-12-05T07:31:43.022+00:00"


@pytest.mark.parametrize(
    ("stored", "instant"),
    [
        (1796455903022, datetime(2026, 12, 5, 7, 31, 43, 22_000)),
        ("2026-12-05T07:31:43.022+00:00", datetime(2026, 12, 5, 7, 31, 43, 22_000)),
        ("2026-12-05T07:31:43.022Z", datetime(2026, 12, 5, 7, 31, 43, 22_000)),
        ("2026-12-05T08:31:43.022+01:00", datetime(2026, 12, 5, 7, 31, 43, 22_000)),
        ("2026-11-28 06:20:13.315413", datetime(2026, 11, 28, 6, 20, 13, 315_413)),
        ("2026-12-05 07:31:43", datetime(2026, 12, 5, 7, 31, 43)),
        ("not a date", None),
        (10**20, None),
        (b"\x00", None),
    ],
)
def test_every_stored_form_reads_as_its_instant(stored: object, instant: datetime | None) -> None:
    assert parse_sqlite_datetime(stored) == instant


async def insert_encoded(engine: AsyncEngine, sid: str, value: int | str) -> None:
    data = json.dumps({"cookie": {"originalMaxAge": None, "expires": None}, "sid": sid, "kind": "mixed"})
    async with engine.begin() as conn:
        await conn.execute(
            text('INSERT INTO "Session" (id, sid, data, "expiresAt") VALUES (:sid, :sid, :data, :value)'),
            {"sid": sid, "data": data, "value": value},
        )


async def fill(engine: AsyncEngine) -> dict[str, bool]:
    """One row per encoding and offset; returns which sids are live."""
    now = utcnow()
    live: dict[str, bool] = {}
    for encoding, encode in ENCODINGS.items():
        for name, offset in OFFSETS.items():
            sid = f"{encoding} {name}".replace(" ", "_").replace(":", "")
            await insert_encoded(engine, sid, encode(now + offset))
            live[sid] = offset > timedelta(0)
    async with engine.connect() as conn:
        kinds = set((await conn.execute(text('SELECT typeof("expiresAt") FROM "Session"'))).scalars())
    assert kinds == {"integer", "text"}
    return live


@on_sqlite
async def test_mixed_encodings_load_count_list_and_match_by_instant(
    engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    live = await fill(engine)
    alive = {sid for sid, is_live in live.items() if is_live}
    assert await store.length() == len(alive)
    assert set(await store.ids()) == alive
    assert set(await store.all()) == alive
    assert set(await store.matching(kind="mixed")) == alive
    for sid, is_live in live.items():
        stored = await store.load(sid)
        assert (stored is not None) is is_live, sid
        if stored is not None:
            assert stored.expires_at > utcnow()


@on_sqlite
async def test_prune_deletes_exactly_the_expired_rows_of_every_encoding_through_the_index(
    engine: AsyncEngine, make_store: Callable[..., PrismaSessionStore]
) -> None:
    store = make_store(prune_batch_size=1)  # one row a batch: the batches walk the index
    await store.create_table()
    live = await fill(engine)
    removed = await store.prune()
    assert removed == sum(not is_live for is_live in live.values())
    assert set(await rows(engine)) == {sid for sid, is_live in live.items() if is_live}

    compiled = store.executor.sql.full.prune_batch.compile(dialect=sqlite.dialect())
    values = compiled.construct_params({"now": "2026-11-28T10:00:00.000+00:00", "batch_size": 1})
    arguments = tuple(values[name] for name in compiled.positiontup or ())
    async with engine.connect() as conn:
        plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), arguments)).all()
    details = [row[-1] for row in plan]
    assert any("USING INDEX Session_expiresAt_idx" in detail for detail in details), details
    assert not any(re.match(r"SCAN Session\b", detail) for detail in details), details


@on_sqlite
async def test_what_python_writes_is_the_adapters_text(
    engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    async with client_for(make_app(store)) as client:
        await client.post("/increment")
        await store.set("set-by-api", {"cookie": {"originalMaxAge": 60_000, "expires": None}})
    async with engine.connect() as conn:
        stored = (await conn.execute(text('SELECT "expiresAt", typeof("expiresAt") FROM "Session"'))).all()
    assert len(stored) == 2
    for value, kind in stored:
        assert kind == "text"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", value), value


@on_sqlite
async def test_a_session_stored_as_integer_ms_is_used_and_rewritten_over_http(
    engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    """A Rust-engine row through the middleware: loaded, changed, its expiry rewritten as text."""
    expires = utcnow() + timedelta(days=1)
    data: dict[str, Any] = {
        "cookie": {"originalMaxAge": 86_400_000, "expires": sqlite_datetime_text(expires)[:-6] + "Z"},
        "n": 41,
    }
    async with engine.begin() as conn:
        await conn.execute(
            text('INSERT INTO "Session" VALUES (:sid, :sid, :data, :ms)'),
            {"sid": "rust-row", "data": json.dumps(data), "ms": ENCODINGS["integer ms"](expires)},
        )
    app = make_app(store)
    async with client_for(app) as client:
        response = await client.post(
            "/increment", headers={"cookie": f"connect.sid={Signer([SECRET]).cookie_value('rust-row')}"}
        )
    assert response.json()["n"] == 42
    async with engine.connect() as conn:
        kind = (
            await conn.execute(
                text('SELECT typeof("expiresAt") FROM "Session" WHERE sid = :sid'), {"sid": "rust-row"}
            )
        ).scalar_one()
    assert kind == "text"


@on_sqlite
async def test_an_unreadable_expiry_is_a_corrupt_row_not_a_500(
    engine: AsyncEngine, store: PrismaSessionStore
) -> None:
    await insert_encoded(engine, "garbage", "the day after tomorrow")
    assert await store.get("garbage") is None
    assert await store.length() == 0
    assert await store.prune() == 0
    assert "garbage" in await rows(engine)  # kept, as every corrupt row is


@on_sqlite
@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59.000-01:00", "0001-01-01T00:30:00.000+01:00", 2**63 - 1, -(2**63), 1e308, "9e999"],
)
async def test_an_expiry_outside_pythons_datetimes_is_a_corrupt_row_not_a_500(
    engine: AsyncEngine, store: PrismaSessionStore, value: int | float | str
) -> None:
    """Texts whose offset takes them past year 9999 or before year 1, and numbers no datetime holds
    (9e999 is stored as a REAL infinity): anyone can write them, and no request may fail on them."""
    async with engine.begin() as conn:
        stored = "9e999" if value == "9e999" else ":value"  # a literal: SQLite reads it as infinity
        await conn.execute(
            text(f"INSERT INTO \"Session\" VALUES ('x', 'hostile', :data, {stored})"),
            {"data": json.dumps({"cookie": {}, "kind": "hostile"}), "value": value},
        )
    assert await store.load("hostile") is None
    assert await store.matching(kind="hostile") == {}
    await store.prune()
    app = make_app(store)
    async with client_for(app) as client:
        response = await client.post(
            "/increment", headers={"cookie": f"connect.sid={Signer([SECRET]).cookie_value('hostile')}"}
        )
    assert response.status_code == 200
    assert response.json()["n"] == 1  # a fresh session
