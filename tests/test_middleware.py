"""The middleware over real HTTP (httpx against the ASGI app), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, StatementLog, client_for, close_to, insert_row, make_app, rows, shift_expiry

COOKIE = "connect.sid"


def cookie_header(sid: str, secret: str = SECRET) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={Signer([secret]).cookie_value(sid)}"}


def set_cookie_of(response: httpx.Response) -> str | None:
    values = response.headers.get_list("set-cookie")
    assert len(values) <= 1
    return values[0] if values else None


def sent_cookie(response: httpx.Response) -> str:
    """The response's one Set-Cookie header; fails the test when there is none."""
    header = set_cookie_of(response)
    assert header is not None, "the response set no cookie"
    return header


def sid_of(response: httpx.Response) -> str:
    value = sent_cookie(response).split(";", 1)[0].split("=", 1)[1]
    sid = Signer([SECRET]).session_id(value)
    assert sid is not None
    return sid


def expires_of(header: str) -> Any:
    for part in header.split("; "):
        if part.startswith("Expires="):
            return parsedate_to_datetime(part.removeprefix("Expires=")).replace(tzinfo=None)
    return None


async def start(store: PrismaSessionStore, **options: Any) -> httpx.AsyncClient:
    return client_for(make_app(store, **options))


# -- the upstream integration cases ------------------------------------------------------------------


async def test_untouched_session_costs_nothing(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with await start(store) as client:
        statements.clear()
        response = await client.get("/noop")
    assert response.status_code == 200
    assert set_cookie_of(response) is None
    assert statements.count() == 0
    assert await rows(engine) == {}


async def test_setting_a_value_creates_one_row_and_a_cookie(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with await start(store) as client:
        statements.clear()
        response = await client.post("/write", params={"value": "hello"})
    assert statements.statements == ["INSERT"]
    header = set_cookie_of(response)
    assert header is not None
    assert header.startswith(f"{COOKIE}=s%3A{response.json()['id']}.")
    assert "; Path=/; Expires=" in header
    assert header.endswith("; HttpOnly; SameSite=Lax")
    stored = await rows(engine)
    assert list(stored) == [response.json()["id"]]
    data = json.loads(stored[response.json()["id"]]["data"])
    assert data["value"] == "hello"
    assert list(data) == ["cookie", "value"]


async def test_destroying_the_session_deletes_its_row_and_clears_the_cookie(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with await start(store) as client:
        await client.post("/write")
        response = await client.delete("/session")
        assert await rows(engine) == {}
        header = set_cookie_of(response)
        assert header is not None
        assert header.startswith(f"{COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970")
        assert (await client.get("/read")).json()["value"] is None


async def test_changing_the_value_rewrites_the_row_with_one_update(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with await start(store) as client:
        sid = (await client.post("/write", params={"value": "one"})).json()["id"]
        statements.clear()
        response = await client.put("/write", params={"value": "two"})
    assert response.json()["id"] == sid
    assert statements.statements == ["SELECT", "UPDATE"]
    assert json.loads((await rows(engine))[sid]["data"])["value"] == "two"


# -- reading ---------------------------------------------------------------------------------------


async def test_a_read_is_one_select_and_no_cookie(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    async with await start(store) as client:
        await client.post("/write", params={"value": "kept"})
        statements.clear()
        response = await client.get("/read")
    assert response.json()["value"] == "kept"
    assert statements.statements == ["SELECT"]
    assert set_cookie_of(response) is None


async def test_the_session_is_the_same_object_everywhere(store: PrismaSessionStore) -> None:
    async with await start(store) as client:
        assert (await client.get("/same")).json() == {"same": True}


@pytest.mark.parametrize(
    "cookie",
    [
        f"{COOKIE}=s%3Aforged.c2lnbmF0dXJl",
        f"{COOKIE}=unsigned-session-id",
        f"{COOKIE}=s%3A' OR 1=1; --.abc",
        f"{COOKIE}=" + "A" * 5000,
        f"{COOKIE}=%FF%FE%00",
        "other=1",
    ],
)
async def test_a_bad_cookie_is_ignored_before_any_query(
    store: PrismaSessionStore, statements: StatementLog, cookie: str
) -> None:
    async with await start(store) as client:
        statements.clear()
        response = await client.get("/read", headers={"cookie": cookie})
    assert response.status_code == 200
    assert response.json() == {"value": None, "keys": []}
    assert statements.count() == 0


async def test_a_cookie_signed_with_an_unknown_secret_is_ignored(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await insert_row(
        engine, "victim", {"cookie": {"originalMaxAge": None, "expires": None}, "value": "secret"}
    )
    async with await start(store) as client:
        statements.clear()
        response = await client.get("/read", headers=cookie_header("victim", "guessed secret"))
    assert response.json()["value"] is None
    assert statements.count() == 0


async def test_secret_rotation_verifies_old_cookies_and_signs_with_the_first(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await insert_row(engine, "rotated", {"cookie": {"originalMaxAge": None, "expires": None}, "value": "v"})
    async with await start(store, secret=["new secret", SECRET]) as client:
        read = await client.get("/read", headers=cookie_header("rotated", SECRET))
        assert read.json()["value"] == "v"
        written = await client.post("/write", headers=cookie_header("rotated", SECRET))
    header = set_cookie_of(written)
    assert header is not None
    assert Signer(["new secret"]).cookie_value("rotated") in header


async def test_a_duplicated_cookie_name_uses_the_validly_signed_value(store: PrismaSessionStore) -> None:
    async with await start(store) as client:
        sid = (await client.post("/write", params={"value": "mine"})).json()["id"]
        client.cookies.clear()
        good = cookie_header(sid)["cookie"]
        response = await client.get("/read", headers={"cookie": f"{COOKIE}=s%3Aevil.sig; {good}"})
    assert response.json()["value"] == "mine"


async def test_a_corrupt_row_gives_a_fresh_session(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await insert_row(engine, "corrupt", '{"cookie": {"expires"')
    await insert_row(engine, "no-cookie", {"value": "old"})
    async with await start(store) as client:
        for sid in ("corrupt", "no-cookie"):
            response = await client.get("/read", headers=cookie_header(sid))
            assert response.status_code == 200
            assert response.json()["value"] is None
            response = await client.post("/write", headers=cookie_header(sid))
            assert response.json()["id"] != sid
    assert {"corrupt", "no-cookie"} <= set(await rows(engine))  # nothing lost


# -- writing ---------------------------------------------------------------------------------------


async def test_regenerate_gives_a_new_id_and_kills_the_old_one(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with await start(store) as client:
        old = (await client.post("/write", params={"value": "anon"})).json()["id"]
        response = await client.post("/login")
        new = response.json()["id"]
        assert new != old
        assert sid_of(response) == new
        assert set(await rows(engine)) == {new}
        assert (await client.get("/read", headers=cookie_header(old))).json()["keys"] == []
        assert (await client.get("/read")).json()["keys"] == ["user"]


async def test_a_destroyed_session_is_not_revived_by_a_slower_request(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)
    async with client_for(app) as client:
        await client.post("/write", params={"value": "before"})
        app.state.gate = asyncio.Event()
        slow = asyncio.create_task(client.post("/slow-write"))
        await asyncio.sleep(0.2)  # the slow request has loaded the session and waits
        await client.delete("/session")
        app.state.gate.set()
        response = await slow
    assert response.status_code == 200
    assert set_cookie_of(response) is None
    assert await rows(engine) == {}


async def test_save_uninitialized_stores_new_sessions(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with await start(store, save_uninitialized=True) as client:
        response = await client.get("/read")
    assert set_cookie_of(response) is not None
    assert len(await rows(engine)) == 1


async def test_resave_writes_an_unmodified_session(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    async with await start(store, resave=True) as client:
        await client.post("/write")
        statements.clear()
        await client.get("/read")
    assert statements.statements == ["SELECT", "UPDATE"]


async def test_nested_values_are_saved_when_assigned_back(store: PrismaSessionStore) -> None:
    async with await start(store) as client:
        for _ in range(3):
            last = await client.post("/nested")
    assert last.json()["cart"] == [0, 1, 2]


async def test_save_and_reload_inside_a_request(store: PrismaSessionStore, statements: StatementLog) -> None:
    async with await start(store) as client:
        await client.post("/write")
        statements.clear()
        response = await client.post("/save-now")
        assert response.json() == {"modified": False}
        assert statements.statements == ["SELECT", "UPDATE", "SELECT"]
        assert set_cookie_of(response) is not None
        assert (await client.get("/read")).json()["value"] == "saved"


async def test_the_reserved_cookie_key_cannot_be_set(store: PrismaSessionStore) -> None:
    async with await start(store) as client:
        with pytest.raises(KeyError, match="reserved"):
            await client.post("/write", params={"key": "cookie"})


# -- expiry ----------------------------------------------------------------------------------------


async def test_cookie_and_row_expire_together(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with await start(store, max_age=timedelta(hours=2)) as client:
        response = await client.post("/write")
    expires = expires_of(sent_cookie(response))
    assert close_to(expires, utcnow() + timedelta(hours=2))
    row = (await rows(engine))[response.json()["id"]]
    assert close_to(row["expires_at"], expires, seconds=1)
    assert json.loads(row["data"])["cookie"]["originalMaxAge"] == 7_200_000


async def test_a_browser_session_cookie_has_no_expires(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with await start(store, max_age=None) as client:
        response = await client.post("/write")
    header = sent_cookie(response)
    assert "Expires" not in header
    row = (await rows(engine))[response.json()["id"]]
    assert json.loads(row["data"])["cookie"]["expires"] is None
    assert close_to(row["expires_at"], utcnow() + timedelta(days=1))  # the store's default lifetime


async def test_without_rolling_a_read_never_moves_the_expiry(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    """Upstream bug: the stored cookie.expires drifted from the browser's when rolling was off."""
    async with await start(store, touch_after=0) as client:
        sid = (await client.post("/write")).json()["id"]
        before = (await rows(engine))[sid]
        statements.clear()
        response = await client.get("/read")
    assert statements.statements == ["SELECT"]
    assert set_cookie_of(response) is None
    assert (await rows(engine))[sid] == before


async def test_rolling_refreshes_the_expiry_at_most_once_per_touch_after(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with await start(store, rolling="throttled", max_age=3600) as client:
        sid = (await client.post("/write")).json()["id"]
        statements.clear()
        response = await client.get("/read")  # just written: not due
        assert statements.statements == ["SELECT"]
        assert set_cookie_of(response) is None
        await shift_expiry(engine, sid, timedelta(minutes=-10))  # age the row past a tenth of its life
        statements.clear()
        response = await client.get("/read")
    assert statements.statements == ["SELECT", "UPDATE"]
    header = set_cookie_of(response)
    assert header is not None
    assert close_to(expires_of(header), utcnow() + timedelta(hours=1))
    row = (await rows(engine))[sid]
    assert close_to(row["expires_at"], utcnow() + timedelta(hours=1))
    assert json.loads(row["data"])["value"] == "x"


async def test_throttled_rolling_with_touch_after_zero_refreshes_every_response(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    async with await start(store, rolling="throttled", touch_after=0) as client:
        await client.post("/write")
        statements.clear()
        first = await client.get("/read")
        second = await client.get("/read")
    assert statements.statements == ["SELECT", "UPDATE", "SELECT", "UPDATE"]
    assert set_cookie_of(first) is not None
    assert set_cookie_of(second) is not None


async def test_a_per_session_max_age(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with await start(store) as client:
        await client.post("/write")
        response = await client.post("/max-age", params={"seconds": 60})
    header = sent_cookie(response)
    assert close_to(expires_of(header), utcnow() + timedelta(seconds=60))
    (row,) = (await rows(engine)).values()
    assert json.loads(row["data"])["cookie"]["originalMaxAge"] == 60_000
    assert close_to(row["expires_at"], utcnow() + timedelta(seconds=60))


async def test_touch_rewrites_the_expiry_and_resends_the_cookie(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    async with await start(store) as client:
        await client.post("/write")
        statements.clear()
        response = await client.post("/touch")
    assert statements.statements == ["SELECT", "UPDATE"]
    assert set_cookie_of(response) is not None


async def test_an_expired_session_is_not_loaded(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    cookie = {"originalMaxAge": 1000, "expires": "2020-01-01T00:00:00.000Z"}
    await insert_row(engine, "stale", {"cookie": cookie, "value": "old"}, utcnow() - timedelta(seconds=1))
    async with await start(store) as client:
        response = await client.get("/read", headers=cookie_header("stale"))
    assert response.json()["value"] is None
    assert await rows(engine) == {}


# -- options ---------------------------------------------------------------------------------------


async def test_unset_destroy_deletes_the_row(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with await start(store, unset="destroy") as client:
        await client.post("/write")
        response = await client.post("/unset")
    assert await rows(engine) == {}
    assert (sent_cookie(response)).startswith(f"{COOKIE}=;")


async def test_unset_keep_leaves_the_row(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with await start(store, unset="keep") as client:
        await client.post("/write")
        response = await client.post("/unset")
    assert len(await rows(engine)) == 1
    assert set_cookie_of(response) is None


async def test_genid_makes_the_ids(store: PrismaSessionStore) -> None:
    ids = iter(["custom-1", "custom-2"])
    async with await start(store, genid=lambda: next(ids)) as client:
        assert (await client.post("/write")).json()["id"] == "custom-1"


async def test_default_ids_have_192_random_bits(store: PrismaSessionStore) -> None:
    async with await start(store) as client:
        sid = (await client.post("/write")).json()["id"]
    assert len(sid) == 32
    assert set(sid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    ("options", "base_url", "headers", "secure"),
    [
        ({}, "http://testserver", {}, False),
        ({}, "https://testserver", {}, True),
        ({}, "http://testserver", {"x-forwarded-proto": "https"}, False),
        ({"proxy": True}, "http://testserver", {"x-forwarded-proto": "https"}, True),
        ({"proxy": True}, "http://testserver", {"x-forwarded-proto": "http"}, False),
        ({"secure": False}, "https://testserver", {}, False),
    ],
)
async def test_secure_auto_follows_the_scheme_and_a_trusted_proxy(
    store: PrismaSessionStore, options: dict[str, Any], base_url: str, headers: dict[str, str], secure: bool
) -> None:
    async with client_for(make_app(store, **options), base_url=base_url) as client:
        response = await client.post("/write", headers=headers)
    header = sent_cookie(response)
    assert ("; Secure" in header) is secure
    assert response.status_code == 200


async def test_secure_true_on_http_saves_but_sends_no_cookie(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with await start(store, secure=True) as client:
        response = await client.post("/write")
    assert set_cookie_of(response) is None
    assert len(await rows(engine)) == 1


async def test_cookie_attributes(store: PrismaSessionStore) -> None:
    options = {"samesite": False, "partitioned": True, "priority": "high", "domain": "example.com"}
    async with client_for(make_app(store, secure=True, **options), base_url="https://testserver") as client:
        response = await client.post("/write")
    header = sent_cookie(response)
    attributes = header.split("; ")[1:]
    assert attributes[:2] == ["Domain=example.com", "Path=/"]
    assert attributes[3:] == ["HttpOnly", "Secure", "Partitioned", "Priority=High"]


async def test_requests_outside_the_cookie_path_get_no_session(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    async with await start(store, path="/write") as client:
        sid = (await client.post("/write")).json()["id"]
        statements.clear()
        with pytest.raises(RuntimeError, match="No session on this request"):
            await client.get("/read", headers=cookie_header(sid))
    assert statements.count() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": ""}, "secret must be"),
        ({"secret": []}, "secret must be"),
        ({"max_age": -1}, "max_age must be"),
        ({"max_age": "1d"}, "max_age must be a number"),
        ({"secure": "yes"}, "secure must be one of"),
        ({"samesite": "Lax "}, "samesite must be one of"),
        ({"priority": "urgent"}, "priority must be one of"),
        ({"unset": "drop"}, "unset must be one of"),
        ({"path": "app"}, "path must start with"),
        ({"cookie_name": "bad name"}, "cookie_name must be"),
        ({"cookie_name": "__Host-sid", "path": "/app"}, "needs path='/'"),
        ({"cookie_name": "__Secure-sid", "secure": False}, "must be Secure"),
        ({"samesite": "none", "secure": False}, "samesite='none' needs secure"),
        ({"genid": "abc"}, "genid must be a callable"),
        ({"touch_after": timedelta(seconds=-1)}, "touch_after must be"),
        ({"touch_after": float("inf")}, "touch_after must be a finite"),
        ({"max_age": float("nan")}, "max_age must be a finite"),
        ({"absolute_timeout": 0}, "absolute_timeout must be"),
        # Set-Cookie header splitting: an attribute cannot end itself or the header.
        ({"domain": "example.com; Secure"}, "domain must be a host name"),
        ({"domain": "example.com\r\nSet-Cookie: x=1"}, "domain must be a host name"),
        ({"path": "/a;HttpOnly"}, "path must start with '/' and hold no"),
        ({"path": "/a\nb"}, "path must start with '/' and hold no"),
        ({"path": "/é"}, "path must start with '/' and hold no"),
        ({"autoload": ["("]}, "autoload must be regular expressions"),
    ],
)
def test_invalid_options_say_what_to_fix(
    store: PrismaSessionStore, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionMiddleware(make_app(store), store=store, **{"secret": SECRET, **options})


def test_the_store_must_be_a_store(store: PrismaSessionStore) -> None:
    with pytest.raises(ConfigurationError, match="PrismaSessionStore"):
        SessionMiddleware(make_app(store), store={}, secret=SECRET)  # type: ignore[arg-type]


# -- lifespan --------------------------------------------------------------------------------------


async def test_the_lifespan_starts_and_stops_pruning(make_store: Any) -> None:
    store = make_store(check_period=60)
    await store.create_table()  # else the startup stops: test_setup_mistakes.py
    app = make_app(store)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    assert store.interval_running
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    assert not store.interval_running


async def test_no_session_state_outlives_the_response(store: PrismaSessionStore) -> None:
    """Nothing per session stays in process memory: every Session dies with its request."""
    import gc
    import weakref

    app = make_app(store)
    seen: list[weakref.ref[Any]] = []

    @app.middleware("http")
    async def remember(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        seen.append(weakref.ref(request.scope["session"]))
        return response

    async with client_for(app) as client:
        for _ in range(5):
            await client.post("/write")
            await client.get("/read")
    gc.collect()
    assert len(seen) == 10
    assert [ref() for ref in seen] == [None] * 10


async def test_genid_must_return_a_usable_id(store: PrismaSessionStore) -> None:
    async with await start(store, genid=lambda: "has space") as client:
        with pytest.raises(ValueError, match="genid must return"):
            await client.post("/write")
