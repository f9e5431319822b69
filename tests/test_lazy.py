"""Lazy sessions: a route that never uses its session costs no query, even with a session cookie, and
keeps answering while the database is down; sync code gets a clear error until the session is loaded;
`autoload` and `exclude`; absolute and explicit expiry; an interrupted save."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from fastapi import Request
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import (
    PrismaSessionStore,
    SessionDep,
    SessionInterruptedError,
    SessionNotLoadedError,
    load_session,
)
from fastapi_prisma_session.cookies import iso_utc, parse_iso_utc
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from tests.faultproxy import FaultProxy
from tests.helpers import SECRET, StatementLog, client_for, close_to, insert_row, make_app, rows, set_data


def add_sync_routes(app: Any) -> None:
    @app.get("/sync")
    def sync_read(request: Request) -> dict[str, Any]:
        return {"value": request.session.get("value")}

    @app.get("/sync-error")
    def sync_error(request: Request) -> dict[str, str]:
        try:
            request.session.get("value")
        except SessionNotLoadedError as error:
            return {"error": str(error)}
        return {"error": ""}

    @app.get("/explicit")
    async def explicit(request: Request) -> dict[str, Any]:
        await load_session(request)
        return {"value": request.session.get("value")}

    @app.post("/sync-write")
    def sync_write(request: Request, value: str) -> dict[str, Any]:
        request.session["value"] = value
        return {"value": request.session["value"]}


async def signed_in(client: Any) -> str:
    sid: str = (await client.post("/write", params={"value": "mine"})).json()["id"]
    return sid


@pytest.mark.parametrize("with_cookie", [False, True], ids=["no cookie", "cookie"])
async def test_queries_by_route_kind(
    store: PrismaSessionStore, statements: StatementLog, with_cookie: bool
) -> None:
    app = make_app(store)
    add_sync_routes(app)
    async with client_for(app) as client:
        if with_cookie:
            await signed_in(client)
        else:
            client.cookies.clear()
        statements.clear()
        assert (await client.get("/noop")).status_code == 200
        assert statements.statements == []  # never used: no query, cookie or not
        assert (await client.get("/read")).status_code == 200
        assert statements.statements == (["SELECT"] if with_cookie else [])
        statements.clear()
        assert (await client.get("/explicit")).json()["value"] == ("mine" if with_cookie else None)
        assert statements.statements == (["SELECT"] if with_cookie else [])


@pytest.mark.parametrize("with_cookie", [False, True], ids=["first request", "cookie"])
async def test_sync_access_to_an_unloaded_session_says_what_to_do(
    store: PrismaSessionStore, with_cookie: bool
) -> None:
    """The same on a browser's first request (no cookie yet) as on every later one: a quick try of
    Starlette's habit fails at once, not from the second request on."""
    app = make_app(store)
    add_sync_routes(app)
    async with client_for(app) as client:
        if with_cookie:
            await signed_in(client)
        error = (await client.get("/sync-error")).json()["error"]
        assert "not loaded" in error
        for advice in ("SessionDep", "load_session(request)", "autoload=True"):
            assert advice in error
        with pytest.raises(SessionNotLoadedError):
            await client.post("/sync-write", params={"value": "lost"})
        with pytest.raises(SessionNotLoadedError):
            await client.get("/sync")
    assert await store.length() == (1 if with_cookie else 0)


async def test_a_first_request_writes_from_sync_code_with_autoload(store: PrismaSessionStore) -> None:
    app = make_app(store, autoload=True)
    add_sync_routes(app)
    async with client_for(app) as client:
        assert (await client.get("/sync")).json() == {"value": None}  # no cookie: a new session, no query
        response = await client.post("/sync-write", params={"value": "mine"})
        assert response.json() == {"value": "mine"}
        assert "set-cookie" in response.headers
        assert (await client.get("/sync")).json() == {"value": "mine"}
    assert await store.length() == 1


async def test_a_first_request_writes_from_sync_code_after_load_session(store: PrismaSessionStore) -> None:
    app = make_app(store)

    @app.post("/explicit-write")
    async def explicit_write(request: Request) -> dict[str, Any]:
        await load_session(request)
        request.session["value"] = "mine"
        return dict(request.session)

    add_sync_routes(app)
    async with client_for(app) as client:
        response = await client.post("/explicit-write")
        assert response.json() == {"value": "mine"}
        assert "set-cookie" in response.headers
        assert (await client.get("/explicit")).json() == {"value": "mine"}


async def test_save_uninitialized_stores_a_session_for_a_route_that_never_used_it(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    """As express-session's saveUninitialized: a request without a cookie gets a stored session."""
    app = make_app(store, save_uninitialized=True)
    async with client_for(app) as client:
        statements.clear()
        response = await client.get("/noop")
        assert "set-cookie" in response.headers
        assert statements.statements == ["INSERT"]
        statements.clear()
        assert (await client.get("/noop")).status_code == 200
        assert statements.statements == []  # with its cookie, an unused session stays lazy
    assert await store.length() == 1


async def test_autoload_loads_before_the_app_for_the_paths_it_names(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    app = make_app(store, autoload=[r"/sync$"])
    add_sync_routes(app)
    async with client_for(app) as client:
        await signed_in(client)
        statements.clear()
        assert (await client.get("/sync")).json() == {"value": "mine"}
        assert statements.statements == ["SELECT"]
        statements.clear()
        assert (await client.get("/noop")).status_code == 200
        assert statements.statements == []  # other paths stay lazy


async def test_autoload_true_makes_request_session_work_everywhere(store: PrismaSessionStore) -> None:
    app = make_app(store, autoload=True)
    add_sync_routes(app)
    async with client_for(app) as client:
        await signed_in(client)
        assert (await client.get("/sync")).json() == {"value": "mine"}
        assert (await client.get("/sync-error")).json() == {"error": ""}


async def test_excluded_paths_get_no_session_at_all(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    app = make_app(store, exclude=[r"/static/", r"/health$"], save_uninitialized=True)

    @app.get("/health")
    async def health(request: Request) -> dict[str, bool]:
        return {"session": "session" in request.scope}

    async with client_for(app) as client:
        await signed_in(client)
        statements.clear()
        response = await client.get("/health")
        assert response.json() == {"session": False}
        assert "set-cookie" not in response.headers
        assert statements.statements == []


def test_a_bad_pattern_is_a_configuration_error(store: PrismaSessionStore) -> None:
    from fastapi_prisma_session import ConfigurationError, SessionMiddleware

    with pytest.raises(ConfigurationError, match="exclude"):
        SessionMiddleware(make_app(store), store=store, secret=SECRET, exclude=["("])


async def test_a_session_free_route_answers_during_an_outage(postgres_url: str) -> None:
    server = make_url(postgres_url)
    with FaultProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        direct = PrismaSessionStore(postgres_url, table_name="custom_sessions")
        await direct.create_table()
        through = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
        store = PrismaSessionStore(through, table_name="custom_sessions", operation_timeout=1)
        try:
            async with client_for(make_app(store)) as client:
                await signed_in(client)
                proxy.refuse()
                noops = [(await client.get("/noop")).status_code for _ in range(20)]
                read = await client.get("/read")
                proxy.forward()
            assert noops == [200] * 20  # logged in, and the route never needed the session
            assert read.status_code == 503  # this one did
            assert read.headers["retry-after"] == "5"
        finally:
            await store.shutdown()
            async with direct.engine.begin() as conn:
                await conn.exec_driver_sql('DROP TABLE "custom_sessions"')
            await direct.shutdown()


async def test_setting_cookie_expires_ends_the_session_then(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)
    ends = (utcnow() + timedelta(hours=3)).replace(microsecond=0)

    @app.post("/expires")
    async def expires(session: SessionDep) -> dict[str, bool]:
        session.cookie.expires = ends
        return {"ok": True}

    async with client_for(app) as client:
        sid = await signed_in(client)
        response = await client.post("/expires")
    header = response.headers["set-cookie"]
    sent = parsedate_to_datetime(header.split("Expires=")[1].split(";")[0]).replace(tzinfo=None)
    assert sent == ends
    row = (await rows(engine))[sid]
    assert close_to(row["expires_at"], ends, seconds=1)
    cookie = json.loads(row["data"])["cookie"]
    assert cookie["expires"] == iso_utc(ends)
    assert close_to(utcnow() + timedelta(milliseconds=cookie["originalMaxAge"]), ends, seconds=5)


async def test_absolute_timeout_ends_an_active_session(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store, absolute_timeout=timedelta(hours=1), max_age=timedelta(days=7), rolling=True)
    async with client_for(app) as client:
        sid = await signed_in(client)
        row = (await rows(engine))[sid]
        data = json.loads(row["data"])
        ends = utcnow() + timedelta(hours=1)
        # The row and the cookie end at the absolute timeout, not a week from now.
        assert close_to(row["expires_at"], ends, seconds=5)
        assert "__absoluteExpires" in data
        assert (await client.get("/read")).json()["keys"] == ["value"]  # hidden from the app

        # An hour later, however active: the next request starts afresh and the row is gone.
        data["__absoluteExpires"] = iso_utc(utcnow() - timedelta(seconds=1))
        await set_data(engine, sid, json.dumps(data))
        assert (await client.get("/read")).json()["value"] is None
    assert sid not in await rows(engine)


async def test_an_explicit_save_of_a_session_ended_meanwhile_raises(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/save-after-logout")
    async def save_after_logout(request: Request, session: SessionDep) -> dict[str, str]:
        await store.destroy(session.id)  # another request logged the user out
        session["value"] = "too late"
        try:
            await session.save()
        except SessionInterruptedError as error:
            return {"error": str(error)}
        return {"error": ""}

    async with client_for(app) as client:
        sid = await signed_in(client)
        error = (await client.post("/save-after-logout")).json()["error"]
    assert "ended by another request" in error
    assert sid not in await rows(engine)


async def test_an_implicit_save_of_a_session_ended_meanwhile_is_logged(
    store: PrismaSessionStore, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(store)

    @app.post("/change-after-logout")
    async def change_after_logout(session: SessionDep) -> dict[str, bool]:
        await store.destroy(session.id)
        session["value"] = "too late"
        return {"ok": True}

    async with client_for(app) as client:
        sid = await signed_in(client)
        with caplog.at_level(logging.WARNING, logger="fastapi_prisma_session"):
            response = await client.post("/change-after-logout")
    assert response.status_code == 200
    assert "ended by another request" in caplog.text
    assert sid not in await rows(engine)


async def test_a_stored_session_is_loaded_once_per_request(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await insert_row(engine, "s", {"cookie": {"originalMaxAge": None, "expires": None}, "value": "v"})
    app = make_app(store)
    add_sync_routes(app)

    @app.get("/twice")
    async def twice(request: Request, session: SessionDep) -> dict[str, Any]:
        again = await load_session(request)
        return {"same": again is session, "value": request.session["value"]}

    cookie = {"cookie": "connect.sid=" + Signer([SECRET]).cookie_value("s")}
    async with client_for(app) as client:
        statements.clear()
        assert (await client.get("/twice", headers=cookie)).json() == {"same": True, "value": "v"}
    assert statements.statements == ["SELECT"]


@pytest.mark.parametrize("keep_data", [False, True])
async def test_regenerating_starts_the_absolute_timeout_again(
    store: PrismaSessionStore, engine: AsyncEngine, keep_data: bool
) -> None:
    app = make_app(store, absolute_timeout=timedelta(hours=1))

    @app.post("/log-in")
    async def log_in(session: SessionDep) -> dict[str, str]:
        await session.regenerate(keep_data=keep_data)
        session["user"] = "ada"
        return {"id": session.id}

    async with client_for(app) as client:
        old = await signed_in(client)
        soon = iso_utc(utcnow() + timedelta(seconds=60))
        # The anonymous session was about to reach its limit.
        data = json.loads((await rows(engine))[old]["data"])
        await set_data(engine, old, json.dumps({**data, "__absoluteExpires": soon}))
        new = (await client.post("/log-in")).json()["id"]
    ends = json.loads((await rows(engine))[new]["data"])["__absoluteExpires"]
    assert close_to(parse_iso_utc(ends) or utcnow(), utcnow() + timedelta(hours=1), seconds=10)


async def test_reload_keeps_the_absolute_timeout_out_of_the_data(store: PrismaSessionStore) -> None:
    app = make_app(store, absolute_timeout=timedelta(hours=1))

    @app.post("/reload-keys")
    async def reload_keys(session: SessionDep) -> list[str]:
        await session.reload()
        return sorted(session)

    async with client_for(app) as client:
        await signed_in(client)
        assert (await client.post("/reload-keys")).json() == ["value"]


async def test_a_request_longer_than_the_lifetime_saves_a_live_session(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    # A 3 s lifetime: a busy CI machine can take a second to start a request, and the session must still
    # be live when this one loads it.
    app = make_app(store, max_age=3)

    @app.post("/slow-change")
    async def slow_change(session: SessionDep) -> dict[str, bool]:
        await asyncio.sleep(3.1)
        session["value"] = "after a long request"
        return {"ok": True}

    async with client_for(app) as client:
        sid = await signed_in(client)
        started = utcnow()
        await client.post("/slow-change")
    # The lifetime counts from the save (at least 3.1 s + 3 s after the start), not from the load: a
    # session saved with its load's clock would have expired before the response was sent.
    row = (await rows(engine))[sid]
    assert row["expires_at"] >= started + timedelta(seconds=6)
    assert json.loads(row["data"])["value"] == "after a long request"


async def test_patterns_apply_to_paths_inside_a_mounted_app(store: PrismaSessionStore) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = make_app(store, exclude=[r"/health$"], autoload=[r"/sync$"])
    add_sync_routes(inner)

    @inner.get("/health")
    async def health(request: Request) -> dict[str, bool]:
        return {"session": "session" in request.scope}

    outer = Starlette(routes=[Mount("/sub", app=inner)])
    async with client_for(outer) as client:
        await client.post("/sub/write", params={"value": "mine"})
        assert (await client.get("/sub/health")).json() == {"session": False}
        assert (await client.get("/sub/sync")).json() == {"value": "mine"}


def test_the_package_imports_fastapi_only_for_session_dep() -> None:
    """A Starlette app that never asks for SessionDep does not carry FastAPI's modules, whose objects
    every full garbage collection would walk."""
    import subprocess
    import sys

    check = (
        "import sys, fastapi_prisma_session as package\n"
        "assert 'fastapi' not in sys.modules, 'imported with the package'\n"
        "from fastapi_prisma_session import SessionDep\n"
        "assert 'fastapi' in sys.modules and package.SessionDep is SessionDep\n"
        "from fastapi_prisma_session.dependencies import SessionDep as again\n"
        "assert again is SessionDep\n"
        "try:\n"
        "    package.NoSuchName\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "has no attribute 'NoSuchName'" in done.stdout
