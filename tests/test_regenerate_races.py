"""A logout (`destroy`, `destroy_all`) racing a `regenerate(keep_data=True)` of the same session: whichever
goes first, the user ends up logged out. The regenerate moves the row to a new id; a logout that comes
first leaves it nothing to move, and one that comes second must still end the session it moved to.

Run on SQLite, PostgreSQL and MariaDB, through the real middleware for the regenerate and the logout.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastapi_prisma_session import PrismaSessionStore, SessionDataError
from fastapi_prisma_session.cookies import MOVED_KEY
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.rows import MOVED_COOKIE, marker_sid
from tests.helpers import client_for
from tests.login_app import fresh_events, logged_in, login_app

MakeStore = Callable[..., PrismaSessionStore]
ROUNDS = 150


@pytest.fixture
async def store(make_store: MakeStore) -> PrismaSessionStore:
    """A store whose row ids are random cuid2s: a regenerate moves the row, keeping its id."""
    store = make_store()
    await store.create_table()
    return store


async def user_data_under(store: PrismaSessionStore, *sids: str) -> dict[str, Any]:
    """The sessions among `sids` that load with a user in them, by sid."""
    found = {}
    for sid in sids:
        stored = await store.load(sid)
        if stored is not None and "user_id" in stored.data:
            found[sid] = stored.data
    return found


async def jitter(rng: random.Random) -> None:
    """Nothing, one turn of the event loop, or up to 3 ms: the two sides start in varying orders."""
    pick = rng.random()
    if pick < 0.2:
        return
    await asyncio.sleep(0 if pick < 0.5 else rng.uniform(0, 0.003))


@pytest.mark.parametrize("ids", ["random", "the sid"])
async def test_destroy_all_racing_a_keep_data_regenerate_leaves_no_session_of_the_user(
    make_store: MakeStore, ids: str
) -> None:
    """`destroy_all(user_id=u)` and a request that regenerates u's session with keep_data run at once,
    150 times. Afterwards no live session of u exists under any id, and a destroy_all that reported a
    deletion deleted what it counted: a count of 1 with the moved session still alive is a lie. The
    row ids are random (the move keeps the id) or the sid (the move changes the primary key too)."""
    store = make_store(db_record_id_is_session_id=ids == "the sid")
    await store.create_table()
    rng = random.Random(3)
    failures = []
    async with client_for(login_app(store)) as client:
        for n in range(ROUNDS):
            user = f"user{n}"
            _, cookie = await logged_in(client, user)

            async def destroy_all(user: str = user) -> int:
                await jitter(rng)
                return await store.destroy_all(user_id=user)

            async def rotate(cookie: str = cookie) -> httpx.Response:
                await jitter(rng)
                return await client.post("/rotate", headers={"cookie": cookie})

            deleted, rotated = await asyncio.gather(destroy_all(), rotate())
            assert rotated.status_code == 200, rotated.text
            survivors = await store.matching(user_id=user)
            if survivors:
                failures.append((n, f"destroy_all said {deleted}", sorted(survivors)))
    assert failures == [], f"{len(failures)} of {ROUNDS} rounds left a session of the user: {failures[:3]}"


async def test_a_logout_with_the_old_cookie_ends_a_session_moved_meanwhile(store: PrismaSessionStore) -> None:
    """A request regenerates the session with keep_data (`/rotate`) and is held right after the move,
    before its response; the browser's logout, sent meanwhile with the old cookie, arrives. Once both
    have answered, neither the old id nor the new one loads a session with the user in it."""
    app = login_app(store)
    async with client_for(app) as client:
        sid, cookie = await logged_in(client, "u")
        arrived, release = fresh_events(app)
        rotate = asyncio.create_task(
            client.post("/rotate", params={"hold": "after"}, headers={"cookie": cookie})
        )
        await arrived.wait()  # the row has moved to the new id; the response is not out yet
        logout = await client.post("/logout", headers={"cookie": cookie})
        release.set()
        rotated = await rotate
    assert (logout.status_code, rotated.status_code) == (200, 200)
    new = rotated.json()["new"]
    assert new != sid
    assert await user_data_under(store, sid, new) == {}


async def test_a_logout_racing_a_keep_data_regenerate_always_logs_the_user_out(
    store: PrismaSessionStore,
) -> None:
    """A logout with the old cookie and a regenerate with keep_data of the same session, 150 times, the
    logout sent while the regenerate is in flight: held before its move or after it until a random
    moment after the logout was sent, or not held at all and started a random moment before the
    logout. Afterwards neither id loads a session with the user in it."""
    rng = random.Random(4)
    app = login_app(store)
    failures, overlapped = [], 0
    async with client_for(app) as client:
        for n in range(ROUNDS):
            sid, cookie = await logged_in(client, f"user{n}")
            hold = rng.choice(["", "before", "after"])
            arrived, release = fresh_events(app)
            rotate = asyncio.create_task(
                client.post("/rotate", params={"hold": hold}, headers={"cookie": cookie})
            )
            if hold:
                await arrived.wait()
            else:
                await jitter(rng)
            in_flight = not rotate.done()
            logout = asyncio.create_task(client.post("/logout", headers={"cookie": cookie}))
            await jitter(rng)
            release.set()
            logged_out, rotated = await asyncio.gather(logout, rotate)
            assert (logged_out.status_code, rotated.status_code) == (200, 200), (logged_out, rotated)
            if not in_flight:
                continue  # the regenerate had answered before the logout was sent: not a race
            overlapped += 1
            left = await user_data_under(store, sid, rotated.json()["new"])
            if left:
                failures.append((n, hold or "not held", sorted(left)))
    assert overlapped >= ROUNDS // 3, f"only {overlapped} of {ROUNDS} rounds raced"
    assert failures == [], f"{len(failures)} of {overlapped} races left the user logged in: {failures[:3]}"


async def test_no_writer_can_forge_a_marker_for_a_logout_to_follow(make_store: MakeStore) -> None:
    """The marker a keep-data regenerate leaves names the session it moved to, and a logout follows it.
    No writer of the store can make one: its key and its sid prefix are the store's own. And a logout
    follows only a marker as the store writes it, under the sid the store derives from the old one."""
    store = make_store()
    await store.create_table()
    await store.set("victim", {"cookie": {}, "user_id": "v"})
    forged = {"cookie": dict(MOVED_COOKIE), MOVED_KEY: "victim"}
    with pytest.raises(SessionDataError, match="the store's own"):
        await store.set("attacker", forged)
    with pytest.raises(ValueError, match="the store's own"):
        await store.set(marker_sid("attacker"), {"cookie": {}})
    # A row written behind the store's back (an express app sharing the table) with that data is no
    # marker: it is under the attacker's own sid, which a logout deletes and does not follow.
    row = {**store.rows.new_row("attacker", {"cookie": {}}, utcnow()), "payload": json.dumps(forged)}
    await store.executor.write("insert", row)
    await store.destroy("attacker")
    assert await store.get("victim") == {"cookie": {}, "user_id": "v"}
