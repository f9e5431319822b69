"""Data that broke the store once, on every database it supports: a logout raced by a regenerate, NUL
characters, NaN, numbers a merge could change, resave, malformed cookie objects, what matching means,
and what an exception does to the session."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore, SessionDataError, SessionDep
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.rows import marker_sid
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, insert_row, make_app, rows

COOKIE = {"originalMaxAge": 60_000, "expires": None, "httpOnly": True, "path": "/"}
ROUNDS = 50


def cookie_for(sid: str) -> dict[str, str]:
    return {"cookie": "connect.sid=" + Signer([SECRET]).cookie_value(sid)}


async def stored(engine: AsyncEngine, sid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((await rows(engine))[sid]["data"])
    return data


# -- item 4: regenerate(keep_data=True) never undoes a logout ----------------------------------------


@pytest.mark.parametrize("logout", ["destroy", "destroy_all"])
async def test_a_regenerate_racing_a_logout_never_revives_the_session(
    store: PrismaSessionStore, engine: AsyncEngine, logout: str
) -> None:
    app = make_app(store)
    survivors = 0
    async with client_for(app) as client:
        for n in range(ROUNDS):
            sid = f"victim{n}"
            await store.set(sid, {"cookie": {**COOKIE}, "user_id": 7, "secret": "s"})
            app.state.gate = asyncio.Event()
            regenerating = asyncio.create_task(client.post("/slow-login-keep", headers=cookie_for(sid)))
            await asyncio.sleep(0)  # the slow request has loaded the session and waits at the gate
            if logout == "destroy":
                await client.delete("/session", headers=cookie_for(sid))
            else:
                await store.destroy_all(user_id=7)
            app.state.gate.set()
            await regenerating
            survivors += sum(1 for row in (await rows(engine)).values() if '"user_id":7' in row["data"])
            await store.clear()
    assert survivors == 0


async def test_regenerate_keep_data_moves_the_row_to_a_new_id(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with client_for(make_app(store)) as client:
        first = (await client.post("/write", params={"value": "kept"})).json()["id"]
        moved = (await client.post("/login-keep")).json()
        assert moved["old"] == first
        assert moved["new"] != first
        assert moved["data"] == {"value": "kept"}
        # Beside it, only the expired marker of where the session went.
        assert set(await store.ids()) == {moved["new"]}
        assert set(await rows(engine)) == {moved["new"], marker_sid(first)}
        assert await store.get(first) is None
        assert (await client.get("/read")).json()["value"] == "kept"


# -- item 5: a NUL character is data like any other -------------------------------------------------


async def test_rows_holding_nul_are_read_merged_and_matched(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("nul", {"cookie": {**COOKIE}, "user_id": 42, "name": "a\u0000b"})
    await store.set("plain", {"cookie": {**COOKIE}, "user_id": 42})
    assert (await store.get("nul") or {})["name"] == "a\u0000b"
    assert set(await store.matching(user_id=42)) == {"nul", "plain"}

    loaded = await store.load("nul")
    assert loaded is not None
    await store.set("nul", {"cookie": {**COOKIE}, "user_id": 42, "name": "a\u0000b", "other": 1})
    assert await store.update("nul", {"cookie": COOKIE, "x": "\u0000"}, changed={"x"}, expected=loaded.text)
    assert await stored(engine, "nul") == {
        "cookie": COOKIE,
        "user_id": 42,
        "name": "a\u0000b",
        "other": 1,
        "x": "\u0000",
    }
    assert await store.destroy_all(user_id=42) == 2
    assert await rows(engine) == {}


async def test_concurrent_writes_to_a_session_holding_nul_all_succeed(store: PrismaSessionStore) -> None:
    app = make_app(store)
    async with client_for(app) as client:
        sid = (await client.post("/write", params={"value": "a\u0000b"})).json()["id"]
        responses = await asyncio.gather(
            *(
                client.post("/write", params={"key": f"k{n}", "value": "v"}, headers=cookie_for(sid))
                for n in range(20)
            )
        )
    assert [r.status_code for r in responses] == [200] * 20
    data = await store.get(sid) or {}
    assert {f"k{n}" for n in range(20)} <= set(data)
    assert data["value"] == "a\u0000b"


# -- item 6: NaN and Infinity are refused at save time, clearly -------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_nan_is_refused_and_the_stored_session_stays(
    store: PrismaSessionStore, engine: AsyncEngine, value: float
) -> None:
    await store.set("s", {"cookie": {**COOKIE}, "n": 1})
    before = (await rows(engine))["s"]["data"]
    with pytest.raises(SessionDataError, match="cannot be saved"):
        await store.set("s", {"cookie": {**COOKIE}, "n": value})
    with pytest.raises(SessionDataError):
        await store.update("s", {"cookie": COOKIE, "n": value}, changed={"n"}, expected=before)
    assert (await rows(engine))["s"]["data"] == before


async def test_nan_from_a_route_is_an_application_error_not_an_outage(
    store: PrismaSessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(store)

    @app.post("/nan")
    async def nan(session: SessionDep) -> dict[str, bool]:
        session["value"] = float("nan")
        return {"ok": True}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
            response = await client.post("/nan")
    assert response.status_code == 500
    assert "unavailable" not in caplog.text  # never reported as a database outage


# -- item 7: a merge changes only the keys written ---------------------------------------------------

AWKWARD_NUMBERS = {
    "big": 2**64 + 1,
    "sum": 0.1 + 0.2,
    "pi": math.pi,
    "huge": 1e300,
    "tiny": 5e-324,
    "negative_zero": -0.0,
    "one_point_oh": 1.0,
    "nested": {"deep": [2**70, 0.30000000000000004, 1e-7]},
}


async def test_a_merge_keeps_every_other_value_exactly(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"cookie": {**COOKIE}, **AWKWARD_NUMBERS})
    loaded = await store.load("s")
    assert loaded is not None
    await store.set("s", {"cookie": {**COOKIE}, **AWKWARD_NUMBERS, "theirs": 1})  # a concurrent write
    assert await store.update("s", {"cookie": COOKIE, "mine": 2}, changed={"mine"}, expected=loaded.text)
    data = await store.get("s") or {}
    for key, value in AWKWARD_NUMBERS.items():
        assert data[key] == value
        assert type(data[key]) is type(value)
        assert json.dumps(data[key]) == json.dumps(value)
    assert data["theirs"] == 1
    assert data["mine"] == 2


async def test_two_concurrent_requests_keep_each_others_numbers(store: PrismaSessionStore) -> None:
    app = make_app(store)

    @app.post("/numbers")
    async def numbers(session: SessionDep) -> dict[str, bool]:
        session.update(AWKWARD_NUMBERS)
        return {"ok": True}

    async with client_for(app) as client:
        await client.post("/numbers")
        await asyncio.gather(*(client.post("/write", params={"key": f"k{n}"}) for n in range(2)))
    sid = next(iter(await store.ids()))
    data = await store.get(sid) or {}
    assert {key: data[key] for key in AWKWARD_NUMBERS} == AWKWARD_NUMBERS
    assert all(type(data[key]) is type(value) for key, value in AWKWARD_NUMBERS.items())


# -- item 8: resave never overwrites another request's keys ------------------------------------------


async def test_resave_keeps_a_concurrent_demotion_and_deletion(store: PrismaSessionStore) -> None:
    app = make_app(store, resave=True)
    async with client_for(app) as client:
        sid = (await client.post("/write", params={"key": "role", "value": "admin"})).json()["id"]
        await client.post("/write", params={"key": "flag", "value": "on"})
        for _ in range(ROUNDS // 5):
            app.state.gate = asyncio.Event()
            slow = asyncio.create_task(client.post("/slow-read", headers=cookie_for(sid)))
            await asyncio.sleep(0)
            data = await store.get(sid) or {}
            data["role"] = "user"  # another request demotes the user and drops a key
            data.pop("flag", None)
            await store.set(sid, data)
            app.state.gate.set()
            assert (await slow).status_code == 200
            final = await store.get(sid) or {}
            assert final["role"] == "user"
            assert "flag" not in final
            await store.set(sid, {**final, "role": "admin", "flag": "on"})


# -- item 9: a malformed stored cookie object is a corrupt row ---------------------------------------


@pytest.mark.parametrize(
    "cookie",
    [
        {"originalMaxAge": 60_000, "expires": "0001-01-01T00:00:00+14:00"},
        {"originalMaxAge": 1e15, "expires": None},
        {"originalMaxAge": -5, "expires": None},
        {"originalMaxAge": "60000", "expires": None},
        {"originalMaxAge": 60_000, "expires": "9999-12-31T23:59:59-14:00"},
    ],
    ids=["year-1", "huge-max-age", "negative", "string", "past-year-9999"],
)
async def test_a_malformed_cookie_object_gives_a_fresh_session_and_keeps_the_row(
    store: PrismaSessionStore, engine: AsyncEngine, cookie: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await insert_row(engine, "odd", {"cookie": cookie, "value": "theirs"})
    async with client_for(make_app(store)) as client:
        with caplog.at_level(logging.WARNING, logger="fastapi_prisma_session"):
            noop = await client.get("/noop", headers=cookie_for("odd"))
            read = await client.get("/read", headers=cookie_for("odd"))
            write = await client.post("/write", headers=cookie_for("odd"))
    assert (noop.status_code, read.status_code, write.status_code) == (200, 200, 200)
    assert read.json()["value"] is None
    assert "no readable cookie object" in caplog.text
    assert json.loads((await rows(engine))["odd"]["data"])["value"] == "theirs"


async def test_a_nan_max_age_in_a_stored_row_is_treated_as_corrupt(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await insert_row(engine, "odd", '{"cookie":{"originalMaxAge":NaN,"expires":null},"value":"theirs"}')
    async with client_for(make_app(store)) as client:
        assert (await client.post("/write", headers=cookie_for("odd"))).status_code == 200


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("expires", ["20000-01-01 00:00:00", "0100-01-01 00:00:00 BC"])
async def test_a_postgresql_expiry_python_cannot_hold_is_a_corrupt_row_not_a_500(
    store: PrismaSessionStore, engine: AsyncEngine, expires: str
) -> None:
    """TIMESTAMP(3) reaches 294276 AD and 4713 BC, Python's datetime years 1 to 9999: asyncpg raises
    OverflowError decoding such a row, which anyone may write."""
    await insert_row(engine, "odd", {"cookie": COOKIE, "kind": "odd"})
    await store.set("fine", {"cookie": COOKIE, "kind": "odd"})
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"UPDATE \"Session\" SET \"expiresAt\" = '{expires}' WHERE sid = 'odd'")
    assert await store.load("odd") is None
    assert set(await store.matching(kind="odd")) == {"fine"}
    async with client_for(make_app(store)) as client:
        response = await client.post("/write", headers=cookie_for("odd"))
    assert response.status_code == 200
    async with engine.connect() as conn:
        kept = (await conn.exec_driver_sql("SELECT data FROM \"Session\" WHERE sid = 'odd'")).scalar_one()
    assert json.loads(kept)["kind"] == "odd"  # kept, as a corrupt row is


# -- item 10: one meaning of matching everywhere ------------------------------------------------------


async def test_matching_compares_top_level_values_as_json(store: PrismaSessionStore) -> None:
    await store.set("list", {"roles": ["admin", "user"]})
    await store.set("exact", {"roles": ["admin"]})
    await store.set("true", {"flag": True})
    await store.set("one", {"flag": 1})
    await store.set("text", {"user_id": "42"})
    await store.set("number", {"user_id": 42})
    await store.set("float", {"user_id": 42.0})
    await store.set("quote", {'we"ird': "yes"})
    await store.set("nested", {"profile": {"a": 1, "b": [1, 2]}})
    assert set(await store.matching(roles=["admin"])) == {"exact"}
    assert set(await store.matching(flag=True)) == {"true"}
    assert set(await store.matching(flag=1)) == {"one"}
    assert set(await store.matching(user_id=42)) == {"number", "float"}
    assert set(await store.matching(user_id="42")) == {"text"}
    assert set(await store.matching(**{'we"ird': "yes"})) == {"quote"}
    assert set(await store.matching(profile={"b": [1, 2], "a": 1})) == {"nested"}
    assert set(await store.matching(profile={"a": 1})) == set()
    assert await store.destroy_all(flag=True) == 1
    assert await store.destroy_all(user_id="42") == 1
    assert "one" in await store.ids()


async def test_python_and_sql_matching_agree(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    """A row PostgreSQL cannot read as jsonb makes it match in Python: the answers are the same."""
    values: list[Any] = [True, 1, 1.0, "1", [1], {"a": 1}, None, 0, False]
    for n, value in enumerate(values):
        await store.set(f"v{n}", {"k": value})
    expected = {repr(value): set(await store.matching(k=value)) for value in values}
    await insert_row(engine, "broken", '{"k": tru')
    for value in values:
        assert set(await store.matching(k=value)) == expected[repr(value)]


# -- item 11: what an exception does to the session ----------------------------------------------------


async def test_an_error_response_saves_nothing_but_a_handled_4xx_saves(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/fails")
    async def fails(session: SessionDep) -> None:
        session["value"] = "from a failed request"
        raise RuntimeError("boom")

    @app.post("/forbidden")
    async def forbidden(session: SessionDep) -> None:
        session["value"] = "from a 403"
        raise HTTPException(403)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        sid = (await client.post("/write", params={"value": "before"})).json()["id"]
        assert (await client.post("/fails")).status_code == 500
        assert (await stored(engine, sid))["value"] == "before"
        assert (await client.post("/forbidden")).status_code == 403
        assert (await stored(engine, sid))["value"] == "from a 403"


async def test_a_logout_holds_even_when_the_request_then_fails(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/logout-then-fail")
    async def logout_then_fail(session: SessionDep) -> None:
        await session.destroy()
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.post("/write", params={"value": "before"})
        assert (await client.post("/logout-then-fail")).status_code == 500
    assert await rows(engine) == {}


async def test_an_expired_row_is_not_merged_back_to_life(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await insert_row(engine, "old", {"cookie": COOKIE, "a": 1}, utcnow() - timedelta(seconds=1))
    assert await store.update("old", {"cookie": COOKIE, "b": 2}, changed={"b"}) is False
    assert json.loads((await rows(engine))["old"]["data"]) == {"cookie": COOKIE, "a": 1}


async def test_a_lone_surrogate_is_stored_escaped_as_json_stringify_does(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/surrogate")
    async def surrogate(session: SessionDep) -> dict[str, bool]:
        session["name"] = "\ud800"
        return {"ok": True}

    async with client_for(app) as client:
        assert (await client.post("/surrogate")).status_code == 200
        sid = next(iter(await rows(engine)))
        assert "\\ud800" in (await rows(engine))[sid]["data"]
        assert (await store.get(sid) or {})["name"] == "\ud800"
        assert (await client.post("/write", params={"value": "more"})).status_code == 200  # still saveable


async def test_regenerate_keep_data_derives_the_new_row_id_like_the_first(
    make_store: Any, engine: AsyncEngine
) -> None:
    store = make_store(db_record_id_function=lambda sid: f"id-{sid}")
    await store.create_table()
    await store.set("old", {"cookie": {**COOKIE}, "n": 1})
    assert await store.rename("old", "new")
    assert (await rows(engine))["new"]["id"] == "id-new"
