"""The device records of the store's `devices` option in the real Node system (express-session +
prisma-session-store, tests/interop/recorder/read.mjs), on SQLite, PostgreSQL and MariaDB: Node loads
the sessions Python recorded, writes them back with its own change and keeps the record as it was; Python
then lists the devices from what Node wrote, and its next sighting of the session keeps Node's data."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cookies import iso_utc
from fastapi_prisma_session.devices import DEVICE_KEY
from fastapi_prisma_session.durations import utcnow
from tests.helpers import client_for, rows, set_data
from tests.node_recorder import read_sessions, reader_database, recordings, require_node
from tests.test_devices import LAPTOP, PHONE, device_app, records
from tests.test_interop_node import node_options

MakeStore = Callable[..., PrismaSessionStore]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mariadb"], indirect=True)
async def test_node_keeps_the_device_records_python_wrote(
    database_url: str, engine: AsyncEngine, make_store: MakeStore
) -> None:
    require_node()
    store = make_store(user_key="user", devices=True)
    await store.create_table()
    options = node_options(next(iter(recordings(reader_database(database_url)).values())))
    name = options["cookie_name"]
    app = device_app(store, **options)
    cookies = []
    for agent in (PHONE, LAPTOP):
        async with client_for(app) as client:
            client.headers["user-agent"] = agent
            await client.post("/login", params={"user": "ada"})
            assert (await client.post("/increment")).status_code == 200
            cookies.append(f"{name}={client.cookies[name]}")
    before = await records(engine)
    assert {record["userAgent"] for record in before.values()} == {PHONE, LAPTOP}

    status, found = read_sessions(database_url, cookies, "--increment")
    assert status == 0, found
    for node in found:
        record = before[node["cookie_sid"]]
        assert node["data"] == {"user": "ada", "n": 1, DEVICE_KEY: record}  # an unknown key to Node
        assert node["data_after_request"] == {"user": "ada", "n": 2, DEVICE_KEY: record}
    assert await records(engine) == before  # Node wrote each row back, the record as it was
    for sid, row in (await rows(engine)).items():
        assert json.loads(row["data"])["n"] == 2, sid

    # Python lists them from Node's rows; a sighting due on the phone keeps Node's n.
    phone = next(node["cookie_sid"] for node in found if before[node["cookie_sid"]]["userAgent"] == PHONE)
    data = json.loads((await rows(engine))[phone]["data"])
    data[DEVICE_KEY]["lastSeen"] = iso_utc(utcnow() - timedelta(days=2))
    await set_data(engine, phone, json.dumps(data, separators=(",", ":")))
    async with client_for(app) as client:
        listed = (await client.get("/devices", headers={"cookie": cookies[1]})).json()
        assert [(device["current"], device["user_agent"]) for device in listed] == [
            (True, LAPTOP),
            (False, PHONE),
        ]
        assert (await client.get("/dump", headers={"cookie": cookies[0]})).json() == {"user": "ada", "n": 2}
    after = json.loads((await rows(engine))[phone]["data"])
    assert after["n"] == 2
    assert after[DEVICE_KEY]["lastSeen"] > data[DEVICE_KEY]["lastSeen"]

    # And Node reads the sighting Python wrote over its row.
    status, found = read_sessions(database_url, cookies[:1])
    assert status == 0
    assert found[0]["data"] == {"user": "ada", "n": 2, DEVICE_KEY: after[DEVICE_KEY]}
