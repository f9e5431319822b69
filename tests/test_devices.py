"""The store's `devices` option (issue 27, item 1): each session records when it was created and last
seen, the client's address and its user agent; a user lists their sessions and ends one, or all but
the current one. Over real HTTP through the ASGI app, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import (
    DeviceOptions,
    PrismaSessionStore,
    SessionDep,
    list_devices,
    revoke_device,
    revoke_other_devices,
)
from fastapi_prisma_session.cookies import iso_utc, parse_iso_utc
from fastapi_prisma_session.devices import DEVICE_KEY
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.exceptions import ConfigurationError
from tests.helpers import client_for, close_to, make_app, rows, set_data, shift_expiry

MakeStore = Callable[..., PrismaSessionStore]
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def device_app(store: PrismaSessionStore, **options: Any) -> FastAPI:
    """The test app, with the routes of a "your devices" page."""
    app = make_app(store, **options)

    @app.get("/devices")
    async def devices(request: Request) -> list[dict[str, Any]]:
        return [dataclasses.asdict(device) for device in await list_devices(request)]

    @app.post("/devices/revoke")
    async def revoke(request: Request, handle: str) -> dict[str, bool]:
        return {"revoked": await revoke_device(request, handle)}

    @app.post("/devices/revoke-others")
    async def revoke_others(request: Request) -> dict[str, int]:
        return {"revoked": await revoke_other_devices(request)}

    @app.get("/user")
    async def user(session: SessionDep) -> dict[str, Any]:
        return {"user": session.get("user")}

    return app


async def devices_store(make_store: MakeStore, **options: Any) -> PrismaSessionStore:
    store = make_store(user_key="user", **{"devices": True, **options})
    await store.create_table()
    return store


async def records(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Each row's device record, by sid, as stored."""
    return {sid: json.loads(row["data"]).get(DEVICE_KEY) for sid, row in (await rows(engine)).items()}


async def log_in(client: httpx.AsyncClient, user: str, agent: str = LAPTOP, **headers: str) -> str:
    response = await client.post("/login", params={"user": user}, headers={"user-agent": agent, **headers})
    assert response.status_code == 200
    sid: str = response.json()["id"]
    return sid


async def test_a_session_records_when_where_and_what_it_was_used_from(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = await devices_store(make_store)
    before = utcnow()
    async with client_for(device_app(store)) as client:
        sid = await log_in(client, "ada")
    record = (await records(engine))[sid]
    assert set(record) == {"created", "lastSeen", "ip", "userAgent"}
    assert record["created"] == record["lastSeen"]
    created = parse_iso_utc(record["created"])
    assert created is not None
    assert close_to(created, before)
    assert record["ip"] == "127.0.0.1"  # httpx's ASGI transport's client address
    assert record["userAgent"] == LAPTOP
    data = await store.get(sid)
    assert data is not None
    assert data["user"] == "ada"


async def test_the_app_never_sees_the_record_and_cannot_set_it(make_store: MakeStore) -> None:
    store = await devices_store(make_store)
    app = device_app(store)

    @app.post("/forge")
    async def forge(session: SessionDep) -> dict[str, str]:
        try:
            session[DEVICE_KEY] = {"ip": "1.2.3.4"}
        except KeyError as error:
            return {"refused": str(error)}
        return {"refused": ""}

    async with client_for(app) as client:
        await log_in(client, "ada")
        assert (await client.get("/dump")).json() == {"user": "ada"}
        assert "reserved" in (await client.post("/forge")).json()["refused"]


@pytest.mark.parametrize(
    ("proxy", "forwarded", "expected"),
    [
        (False, "203.0.113.7", "127.0.0.1"),  # without `proxy` the header is the client's word
        # The last address: the one the proxy appended. The client wrote what comes before it.
        (True, "1.2.3.4, 10.0.0.1", "10.0.0.1"),
        (True, "203.0.113.7,10.0.0.1, ", "10.0.0.1"),
        (True, "2001:DB8::1", "2001:db8::1"),
        (True, "1.2.3.4, not-an-address", "127.0.0.1"),  # never an address the client chose
        (True, "", "127.0.0.1"),
    ],
)
async def test_the_address_honours_proxy(
    make_store: MakeStore, engine: AsyncEngine, proxy: bool, forwarded: str, expected: str
) -> None:
    store = await devices_store(make_store)
    async with client_for(device_app(store, proxy=proxy)) as client:
        sid = await log_in(client, "ada", **{"x-forwarded-for": forwarded})
    assert (await records(engine))[sid]["ip"] == expected


async def test_of_several_forwarded_for_headers_the_last_address_of_the_last_counts(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = await devices_store(make_store)
    async with client_for(device_app(store, proxy=True)) as client:
        headers = [("user-agent", LAPTOP), ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "10.0.0.9")]
        response = await client.post("/login", params={"user": "ada"}, headers=headers)
    assert (await records(engine))[response.json()["id"]]["ip"] == "10.0.0.9"


async def test_address_and_user_agent_can_be_switched_off(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = await devices_store(make_store, devices=DeviceOptions(ip=False, user_agent=False))
    async with client_for(device_app(store)) as client:
        sid = await log_in(client, "ada")
        [device] = (await client.get("/devices")).json()
    assert set((await records(engine))[sid]) == {"created", "lastSeen"}
    assert (device["ip"], device["user_agent"], device["current"]) == (None, None, True)


async def test_last_seen_is_written_at_most_once_per_touch_after(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = await devices_store(make_store)
    writes: list[str] = []
    store.add_query_logger(lambda logged: writes.append(logged.query.lstrip().split(None, 1)[0].upper()))
    async with client_for(device_app(store, touch_after=3600)) as client:
        sid = await log_in(client, "ada")
        stored = (await rows(engine))[sid]
        writes.clear()
        for _ in range(3):
            assert (await client.get("/user")).json() == {"user": "ada"}
        assert "UPDATE" not in writes  # seen within touch_after: the loads, nothing more
        assert (await rows(engine))[sid] == stored

        # Last seen two hours ago: the next request writes the sighting, and nothing else.
        data = json.loads(stored["data"])
        long_ago = iso_utc(utcnow() - timedelta(hours=2))
        data[DEVICE_KEY] = {**data[DEVICE_KEY], "lastSeen": long_ago, "userAgent": "old"}
        await set_data(engine, sid, json.dumps(data))
        response = await client.get("/user", headers={"user-agent": PHONE})
        assert "set-cookie" not in response.headers  # the cookie and its expiry stay as they were
        assert writes.count("UPDATE") == 1
    after = (await rows(engine))[sid]
    assert after["expires_at"] == stored["expires_at"]
    written = json.loads(after["data"])
    assert written["cookie"] == data["cookie"]
    assert written["user"] == "ada"
    seen = parse_iso_utc(written[DEVICE_KEY]["lastSeen"])
    assert seen is not None
    assert close_to(seen, utcnow())
    assert written[DEVICE_KEY]["created"] == data[DEVICE_KEY]["created"]
    assert written[DEVICE_KEY]["userAgent"] == PHONE


async def test_a_rolling_session_records_its_sighting_with_its_touch(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = await devices_store(make_store)
    async with client_for(device_app(store, rolling="throttled", touch_after=60)) as client:
        sid = await log_in(client, "ada")
        data = json.loads((await rows(engine))[sid]["data"])
        data[DEVICE_KEY]["lastSeen"] = iso_utc(utcnow() - timedelta(hours=2))
        await set_data(engine, sid, json.dumps(data))
        await shift_expiry(engine, sid, -timedelta(hours=2))  # last touched two hours ago
        response = await client.get("/user", headers={"user-agent": PHONE})
        assert "set-cookie" in response.headers  # the touch, which carried the sighting
    record = (await records(engine))[sid]
    seen = parse_iso_utc(record["lastSeen"])
    assert seen is not None
    assert close_to(seen, utcnow())
    assert record["userAgent"] == PHONE


async def test_a_user_lists_their_devices_with_this_one_first(make_store: MakeStore) -> None:
    store = await devices_store(make_store)
    app = device_app(store)
    async with client_for(app) as phone, client_for(app) as laptop, client_for(app) as other:
        phone_sid = await log_in(phone, "ada", PHONE)
        laptop_sid = await log_in(laptop, "ada", LAPTOP)
        await log_in(other, "bob")
        await phone.get("/user")
        statements = store.statistics.statements
        listed = await laptop.get("/devices")
        assert store.statistics.statements == statements + 2  # the session's load, and one SELECT
        devices = listed.json()
        assert [(d["current"], d["user_agent"]) for d in devices] == [(True, LAPTOP), (False, PHONE)]
        assert phone_sid not in listed.text
        assert laptop_sid not in listed.text
        assert len({d["handle"] for d in devices}) == 2
        for device in devices:
            assert device["ip"] == "127.0.0.1"
            assert device["created"] is not None
            assert device["last_seen"] is not None
            assert device["expires_at"] is not None
        assert (await other.get("/devices")).json()[0]["current"] is True
        assert len((await other.get("/devices")).json()) == 1


async def test_a_user_revokes_one_of_their_devices_and_no_one_elses(make_store: MakeStore) -> None:
    store = await devices_store(make_store)
    app = device_app(store)
    async with client_for(app) as phone, client_for(app) as laptop, client_for(app) as bob:
        await log_in(phone, "ada", PHONE)
        await log_in(laptop, "ada", LAPTOP)
        await log_in(bob, "bob")
        bobs = (await bob.get("/devices")).json()[0]["handle"]
        assert (await laptop.post("/devices/revoke", params={"handle": bobs})).json() == {"revoked": False}
        for forged in ("", "x" * 300, "a.b", "not-a-handle"):
            assert (await laptop.post("/devices/revoke", params={"handle": forged})).json()[
                "revoked"
            ] is False
        assert (await bob.get("/user")).json() == {"user": "bob"}

        phones = (await laptop.get("/devices")).json()[1]["handle"]
        assert (await laptop.post("/devices/revoke", params={"handle": phones})).json() == {"revoked": True}
        assert (await phone.get("/user")).json() == {"user": None}  # logged out there
        assert (await laptop.get("/user")).json() == {"user": "ada"}
        assert [d["current"] for d in (await laptop.get("/devices")).json()] == [True]
        assert (await laptop.post("/devices/revoke", params={"handle": phones})).json() == {"revoked": False}

        # Its own handle logs this device out, and its cookie is cleared.
        mine = (await laptop.get("/devices")).json()[0]["handle"]
        response = await laptop.post("/devices/revoke", params={"handle": mine})
        assert response.json() == {"revoked": True}
        assert "connect.sid=;" in response.headers["set-cookie"]
    assert await store.ids() == [next(iter(await store.matching(user="bob")))]


async def test_a_handle_that_is_not_base64url_is_refused_before_any_lookup(make_store: MakeStore) -> None:
    store = await devices_store(make_store)
    app = device_app(store)

    @app.post("/devices/revoke-json")
    async def revoke_json(request: Request) -> dict[str, bool]:
        return {"revoked": await revoke_device(request, (await request.json())["handle"])}

    async with client_for(app) as phone, client_for(app) as laptop:
        await log_in(phone, "ada", PHONE)
        await log_in(laptop, "ada", LAPTOP)
        statements = store.statistics.statements
        # JSON's escapes make a lone surrogate, which no UTF-8 encoder takes; and non-ASCII, and spaces.
        for body in ('{"handle": "\\ud800"}', '{"handle": "h\\u00e9"}', '{"handle": "a b"}'):
            response = await laptop.post(
                "/devices/revoke-json", content=body, headers={"content-type": "application/json"}
            )
            assert (response.status_code, response.json()) == (200, {"revoked": False})
        assert store.statistics.statements == statements  # refused before the session was loaded
        assert len((await laptop.get("/devices")).json()) == 2
        assert (await phone.get("/user")).json() == {"user": "ada"}


@pytest.mark.parametrize("guest", [0, "", False])
async def test_a_falsy_user_key_value_is_a_user_only_none_is_nobody(
    make_store: MakeStore, guest: object
) -> None:
    """docs/devices.md warns of it: sessions that hold the same 0, "" or False are one user's."""
    store = await devices_store(make_store)
    app = device_app(store)

    @app.post("/guest")
    async def as_guest(session: SessionDep, none: bool = False) -> dict[str, bool]:
        session["user"] = None if none else guest
        return {"ok": True}

    async with client_for(app) as first, client_for(app) as second, client_for(app) as nobody:
        for client in (first, second):
            await client.post("/guest")
        await nobody.post("/guest", params={"none": True})
        assert [d["current"] for d in (await second.get("/devices")).json()] == [True, False]
        assert (await nobody.get("/devices")).json() == []


async def test_a_user_logs_out_their_other_devices(make_store: MakeStore) -> None:
    store = await devices_store(make_store)
    app = device_app(store)
    async with client_for(app) as a, client_for(app) as b, client_for(app) as c, client_for(app) as bob:
        for client in (a, b, c):
            await log_in(client, "ada")
        await log_in(bob, "bob")
        assert (await b.post("/devices/revoke-others")).json() == {"revoked": 2}
        assert [(await x.get("/user")).json()["user"] for x in (a, b, c, bob)] == [None, "ada", None, "bob"]
        assert (await b.post("/devices/revoke-others")).json() == {"revoked": 0}
        # A visitor who is not logged in has no devices, and revokes nothing.
        async with client_for(app) as visitor:
            assert (await visitor.get("/devices")).json() == []
            assert (await visitor.post("/devices/revoke-others")).json() == {"revoked": 0}
    assert len(await store.ids()) == 2


async def test_log_in_keeping_the_data_keeps_the_record_and_a_new_session_starts_one(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = await devices_store(make_store)
    async with client_for(device_app(store)) as client:
        first = await log_in(client, "ada")
        created = (await records(engine))[first]["created"]
        moved = (await client.post("/login-keep")).json()
        assert (await records(engine))[moved["new"]]["created"] == created
        assert moved["data"] == {"user": "ada"}
        await client.delete("/session")
        again = await log_in(client, "ada")
    assert again != first
    assert (await records(engine))[again]["created"] >= created  # toISOString()'s text sorts as time


async def test_with_encryption_the_record_is_sealed(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = await devices_store(make_store, encryption_keys=[KEY])
    async with client_for(device_app(store)) as client:
        sid = await log_in(client, "ada", "UniqueAgent/1.0")
        [device] = (await client.get("/devices")).json()
    text = (await rows(engine))[sid]["data"]
    assert DEVICE_KEY not in text
    assert "UniqueAgent" not in text
    assert "127.0.0.1" not in text
    assert device["user_agent"] == "UniqueAgent/1.0"
    assert device["ip"] == "127.0.0.1"


async def test_a_process_without_devices_keeps_the_record_it_finds(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    recording = await devices_store(make_store)
    async with client_for(device_app(recording)) as client:
        sid = await log_in(client, "ada")
        cookie = f"connect.sid={client.cookies['connect.sid']}"
    record = (await records(engine))[sid]
    async with client_for(make_app(make_store(user_key="user"))) as other:
        response = await other.post("/increment", headers={"cookie": cookie})
        assert response.json() == {"user": "ada", "n": 1}  # the app does not see it there either
    assert (await records(engine))[sid] == record


def test_devices_need_the_user_key_and_a_known_value() -> None:
    with pytest.raises(ConfigurationError, match="devices needs user_key"):
        PrismaSessionStore("sqlite:///unused.db", devices=True)
    with pytest.raises(ConfigurationError, match="devices must be True, False or a DeviceOptions"):
        PrismaSessionStore("sqlite:///unused.db", user_key="user", devices="yes")  # type: ignore[arg-type]
    assert PrismaSessionStore("sqlite:///unused.db", user_key="user").devices is None


async def test_listing_without_devices_says_how_to_turn_them_on(make_store: MakeStore) -> None:
    store = make_store(user_key="user")
    await store.create_table()
    app = device_app(store)
    async with client_for(app) as client:
        with pytest.raises(RuntimeError, match="devices=True"):
            await client.get("/devices")
