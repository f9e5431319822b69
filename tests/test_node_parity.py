"""rolling, resave and genid as express-session has them, over HTTP through the ASGI app, on each
database; and, for the same requests, what the real Node system (tests/interop/recorder) does."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from fastapi_prisma_session.testing import create_session
from tests.helpers import SECRET, StatementLog, client_for, close_to, free_port, make_app, rows, shift_expiry
from tests.node_recorder import read_sessions, require_node
from tests.test_one_path import row_locked

NODE_SECRET = "a santa at nasa"  # read.mjs's default secret, cookie name and max age (7 days)
NODE_OPTIONS = {"secret": NODE_SECRET, "max_age": 7 * 86400, "samesite": False, "secure": False}
WEEK = timedelta(days=7)
# Each request starts with the row's expiry moved this far back: a request that moves it shows.
AGED = timedelta(hours=1)


def cookie_header(sid: str, secret: str = NODE_SECRET) -> str:
    return f"connect.sid={Signer([secret]).cookie_value(sid)}"


async def expiry(engine: AsyncEngine, sid: str) -> datetime:
    return (await rows(engine))[sid]["expires_at"]  # type: ignore[no-any-return]


async def new_session(client: httpx.AsyncClient) -> str:
    """A session written over HTTP; the client keeps no cookie, so each request names it explicitly."""
    response = await client.post("/write")
    assert response.headers.get("set-cookie") is not None
    client.cookies.clear()
    return str(response.json()["id"])


async def aged_request(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    sid: str,
    method: str = "GET",
    path: str = "/read",
    log: StatementLog | None = None,
) -> tuple[bool, bool]:
    """One request with the session's cookie, its row aged first: (Set-Cookie sent, row expiry moved).
    `log`, if given, holds the statements of the request alone."""
    await shift_expiry(engine, sid, -AGED)
    before = await expiry(engine, sid)
    if log is not None:
        log.clear()
    response = await client.request(method, path, headers={"cookie": cookie_header(sid)})
    sent = list(log.statements) if log is not None else []
    assert response.status_code == 200
    client.cookies.clear()
    after = await expiry(engine, sid)
    if log is not None:
        log.statements[:] = sent  # the request's, without this function's own reads
    moved = after - before > AGED / 2
    if moved:
        assert close_to(after, utcnow() + WEEK)
    return "set-cookie" in response.headers, moved


# -- rolling=True: every response --------------------------------------------------------------------


async def test_rolling_resends_the_cookie_and_moves_the_row_on_every_response(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        for _ in range(3):
            assert await aged_request(client, engine, sid, log=statements) == (True, True)
            assert statements.statements == ["SELECT", "UPDATE"]


async def test_rolling_refreshes_a_session_the_route_never_used(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    """express-session loads the session of every request: its rolling refreshes it on any route."""
    async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        assert await aged_request(client, engine, sid, path="/noop") == (True, True)
        # No cookie, or one naming no stored session: nothing is sent or written.
        statements.clear()
        assert "set-cookie" not in (await client.get("/noop")).headers
        assert statements.count() == 0
        gone = await client.get("/noop", headers={"cookie": cookie_header("not-stored")})
    assert "set-cookie" not in gone.headers
    assert set(await rows(engine)) == {sid}


async def test_rolling_leaves_a_route_alone_when_the_database_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refresh of a session the route never used is given up (logged), not turned into a 503."""
    store = PrismaSessionStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none", operation_timeout=1)
    try:
        async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
            response = await client.get("/noop", headers={"cookie": cookie_header("some-session")})
    finally:
        await store.shutdown()
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert "was not refreshed (rolling)" in caplog.text


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
async def test_rolling_leaves_a_route_alone_when_its_row_stays_locked(
    make_store: Callable[..., PrismaSessionStore], engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The refresh's UPDATE waits on a row another transaction holds, and gives up at the deadline: the
    route, which used no session, still answers 200."""
    store = make_store(operation_timeout=1)
    await store.create_table()
    async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        async with row_locked(engine, sid):
            response = await client.get("/noop", headers={"cookie": cookie_header(sid)})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert "was not refreshed (rolling)" in caplog.text


async def test_rolling_leaves_a_route_alone_when_the_table_is_gone(
    make_store: Callable[..., PrismaSessionStore], engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store()
    await store.create_table()
    async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        async with engine.begin() as connection:
            table = engine.dialect.identifier_preparer.quote(store.table_name)
            await connection.execute(text(f"DROP TABLE {table}"))
        response = await client.get("/noop", headers={"cookie": cookie_header(sid)})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert "was not refreshed (rolling)" in caplog.text


async def test_rolling_does_not_start_sessions(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with client_for(make_app(store, rolling=True, **NODE_OPTIONS)) as client:
        response = await client.get("/read")
    assert "set-cookie" not in response.headers
    assert await rows(engine) == {}


async def test_throttled_rolling_refreshes_once_per_touch_after(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    options = {**NODE_OPTIONS, "rolling": "throttled", "touch_after": 2 * AGED.total_seconds()}
    async with client_for(make_app(store, **options)) as client:
        sid = await new_session(client)
        assert await aged_request(client, engine, sid) == (False, False)  # aged 1 h: not due
        assert await aged_request(client, engine, sid) == (True, True)  # aged 2 h: due
        assert await aged_request(client, engine, sid, path="/noop") == (False, False)  # never loaded


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rolling": True, "touch_after": 0}, "touch_after does nothing with rolling=True"),
        ({"rolling": "always"}, "rolling must be one of False, True, 'throttled'"),
        ({"genid": lambda a, b: "x"}, "genid must take no argument or one"),
    ],
)
async def test_invalid_options(store: PrismaSessionStore, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        async with client_for(make_app(store, **options)) as client:
            await client.get("/noop")


# -- resave -----------------------------------------------------------------------------------------


async def test_resave_rewrites_the_row_but_sends_the_cookie_only_when_it_changed(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    async with client_for(make_app(store, resave=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        assert await aged_request(client, engine, sid, log=statements) == (False, True)
        assert statements.statements == ["SELECT", "UPDATE"]
        assert await aged_request(client, engine, sid, "POST", "/write") == (True, True)
        assert await aged_request(client, engine, sid, path="/noop") == (False, False)  # never loaded


async def test_resave_with_rolling_sends_the_cookie(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with client_for(make_app(store, resave=True, rolling=True, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        assert await aged_request(client, engine, sid) == (True, True)


# -- genid ------------------------------------------------------------------------------------------


async def test_genid_can_take_the_request(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    seen: list[Request] = []

    def genid(request: Request) -> str:
        seen.append(request)
        return f"{request.headers['x-tenant']}.{request.url.path.strip('/')}.{len(seen)}"

    async with client_for(make_app(store, genid=genid)) as client:
        first = await client.post("/write", headers={"x-tenant": "acme"})
        second = await client.post("/login", headers={"x-tenant": "acme"})  # regenerates
    assert first.json()["id"] == "acme.write.1"
    assert second.json()["id"] == "acme.login.2"
    assert set(await rows(engine)) == {"acme.login.2"}
    assert all(isinstance(request, Request) for request in seen)


async def test_outside_a_request_each_genid_call_gets_a_request_of_its_own(
    store: PrismaSessionStore,
) -> None:
    """`create_session` has no request: the genid gets a stand-in, new each time, so what one call
    writes into `request.state` is not there for the next."""

    def genid(request: Request) -> str:
        earlier = getattr(request.state, "calls", 0)
        request.state.calls = earlier + 1
        return f"{request.url.path.strip('/') or 'root'}.{earlier}.{secrets.token_hex(8)}"

    app = make_app(store, genid=genid)
    async with client_for(app):  # the app started: its middleware and store are built
        ids = [(await create_session(app, {"n": n}))["connect.sid"] for n in range(2)]
    sids = [str(Signer(SECRET).session_id(unquote(cookie))) for cookie in ids]
    assert [sid[:7] for sid in sids] == ["root.0.", "root.0."]


async def test_a_genid_that_can_take_no_argument_gets_none(store: PrismaSessionStore) -> None:
    async with client_for(make_app(store, genid=secrets.token_hex)) as client:
        sid = (await client.post("/write")).json()["id"]
    assert len(sid) == 64
    assert set(sid) <= set("0123456789abcdef")


# -- the same requests, through the Node system ------------------------------------------------------


@pytest.mark.parametrize(
    ("rolling", "resave"), [(False, False), (True, False), (False, True), (True, True)], ids=str
)
async def test_the_same_requests_through_node(
    database_url: str, store: PrismaSessionStore, engine: AsyncEngine, rolling: bool, resave: bool
) -> None:
    """Two unchanged reads of one session, each with its row aged first, through our app and through
    express-session + prisma-session-store: the same Set-Cookie headers, and the row's expiry moved
    alike, except where ours deliberately differs (below)."""
    require_node()
    flags = [flag for flag, on in (("--rolling", rolling), ("--resave", resave)) if on]
    async with client_for(make_app(store, rolling=rolling, resave=resave, **NODE_OPTIONS)) as client:
        sid = await new_session(client)
        ours = [await aged_request(client, engine, sid) for _ in range(2)]
        changed = await aged_request(client, engine, sid, "POST", "/write")
    age = str(AGED // timedelta(milliseconds=1))
    status, results = read_sessions(database_url, [cookie_header(sid)] * 2, "--age-ms", age, *flags)
    assert status == 0, results
    node = [(bool(r["set_cookie"]), moved(r["row_expires_at"], r["row_expires_at_after"])) for r in results]
    status, (written,) = read_sessions(database_url, [cookie_header(sid)], "--increment", *flags)
    assert status == 0

    assert [cookie for cookie, _ in ours] == [cookie for cookie, _ in node] == [rolling] * 2
    assert changed[0] is bool(written["set_cookie"]) is True
    if rolling or resave:
        assert [row for _, row in ours] == [row for _, row in node] == [True] * 2
    else:
        # prisma-session-store's touch moves the row on every read, past the browser's cookie, which
        # express-session does not re-send; without rolling, ours leaves the row as the cookie has it.
        assert [row for _, row in ours] == [False] * 2
        assert [row for _, row in node] == [True] * 2


def moved(before: str, after: str) -> bool:
    parse = datetime.fromisoformat
    return parse(after) - parse(before) > AGED / 2
