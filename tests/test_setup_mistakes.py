"""Mistakes in setting the middleware up surface when the app starts, not at its first request.

Starlette builds an app's middleware at the app's first call, which under uvicorn is the lifespan's
startup: a missing `secret` used to read to uvicorn as "no lifespan", and every request then failed. The
middleware added twice used to run silently, with two SELECTs per request. The database's own mistakes
(no table, a refused login) are test_database_at_startup.py's.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_prisma_session import (
    ConfigurationError,
    PrismaSessionStore,
    SessionDep,
    SessionMiddleware,
)
from tests.helpers import ROOT, SECRET, client_for, free_port

APP_HEAD = """
    import os

    from fastapi import FastAPI
    from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware

    store = PrismaSessionStore(os.environ.get("DATABASE_URL", "sqlite:///sessions.db"))
    app = FastAPI()
"""


def uvicorn_startup(
    folder: Path, setup: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Start `uvicorn app:app` on an app made of APP_HEAD and `setup`; it is expected to exit by itself."""
    (folder / "app.py").write_text(textwrap.dedent(APP_HEAD) + textwrap.dedent(setup))
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(free_port())]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # still serving: the mistake was not caught at startup
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_a_missing_secret_stops_uvicorn_at_startup(tmp_path: Path) -> None:
    done = uvicorn_startup(tmp_path, "app.add_middleware(SessionMiddleware, store=store)\n")
    assert done.returncode == 3, done.stderr  # uvicorn's "startup failed"
    assert "missing 1 required keyword-only argument: 'secret'" in done.stderr
    assert "Application startup failed. Exiting." in done.stderr


def test_the_middleware_added_twice_stops_uvicorn_at_startup(tmp_path: Path) -> None:
    setup = """
        app.add_middleware(SessionMiddleware, store=store, secret="s")
        app.add_middleware(SessionMiddleware, store=store, secret="s")
    """
    done = uvicorn_startup(tmp_path, setup)
    assert done.returncode == 3, done.stderr
    assert "ConfigurationError: SessionMiddleware is added twice" in done.stderr


@pytest.fixture
def sqlite_store(tmp_path: Path) -> PrismaSessionStore:
    return PrismaSessionStore(f"sqlite:///{tmp_path / 'sessions.db'}")


def counter_app(store: PrismaSessionStore, **options: object) -> FastAPI:
    app = FastAPI()

    @app.get("/{name}")
    async def count(name: str, session: SessionDep) -> dict[str, int]:
        session[name] = session.get(name, 0) + 1
        return {name: session[name]}

    app.add_middleware(SessionMiddleware, store=store, **options)  # type: ignore[arg-type]
    return app


async def start(app: ASGIApp) -> tuple[dict[str, Any], asyncio.Task[None], asyncio.Queue[Any]]:
    """Send the lifespan's startup, as a server does; returns the app's answer, the running lifespan and
    its inbox (for the shutdown)."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    answer = asyncio.create_task(outbox.get())
    await asyncio.wait({answer, task}, return_when=asyncio.FIRST_COMPLETED)
    if not answer.done():  # the app raised without answering: what a server reads as "no lifespan"
        answer.cancel()
        await task
        raise AssertionError("the lifespan ended without an answer")
    return answer.result(), task, inbox


async def test_an_invalid_option_fails_the_startup(sqlite_store: PrismaSessionStore) -> None:
    answer, lifespan, _ = await start(counter_app(sqlite_store, secret=""))
    assert answer["type"] == "lifespan.startup.failed"
    assert answer["message"].startswith("ConfigurationError: secret must be")
    with pytest.raises(ConfigurationError, match="secret must be"):
        await lifespan  # raised after the report, as Starlette's router does: a TestClient raises it


async def test_the_middleware_added_twice_fails_the_startup(sqlite_store: PrismaSessionStore) -> None:
    app = counter_app(sqlite_store, secret=SECRET)
    app.add_middleware(SessionMiddleware, store=sqlite_store, secret=SECRET, path="/a")
    answer, lifespan, _ = await start(app)
    assert answer["type"] == "lifespan.startup.failed"
    assert answer["message"].startswith("ConfigurationError: SessionMiddleware is added twice")
    with pytest.raises(ConfigurationError, match="added twice"):
        await lifespan
    assert not sqlite_store.interval_running


async def test_without_a_lifespan_the_first_request_raises_it(sqlite_store: PrismaSessionStore) -> None:
    app = counter_app(sqlite_store, secret=SECRET, samesite="sideways")
    async with client_for(app) as client:
        for _ in range(2):  # every request, with the same message
            with pytest.raises(ConfigurationError, match="samesite must be one of"):
                await client.get("/a")
    await sqlite_store.shutdown()


async def test_a_request_that_reaches_a_second_middleware_raises(sqlite_store: PrismaSessionStore) -> None:
    app = counter_app(sqlite_store, secret=SECRET)
    app.add_middleware(SessionMiddleware, store=sqlite_store, secret=SECRET, cookie_name="other")
    async with client_for(app) as client:
        with pytest.raises(ConfigurationError, match="SessionMiddleware is added twice"):
            await client.get("/a")
    await sqlite_store.shutdown()


def sets_a_session(app: ASGIApp) -> ASGIApp:
    """A cookie-session middleware of another package: it puts a dict in scope["session"]."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"] = {}
        await app(scope, receive, send)

    return middleware


async def test_another_session_middleware_outside_is_named(sqlite_store: PrismaSessionStore) -> None:
    app = counter_app(sqlite_store, secret=SECRET)
    app.add_middleware(sets_a_session)
    async with client_for(app) as client:
        with pytest.raises(ConfigurationError, match=r"runs outside this one \(its dict"):
            await client.get("/a")
    await sqlite_store.shutdown()


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        ({"path": "/a", "cookie_name": "a.sid"}, {"path": "/b", "cookie_name": "b.sid"}),
        ({"exclude": [r"/b"]}, {"path": "/b", "cookie_name": "b.sid"}),
        # "/a" does not cover "/ab" (a browser sends a.sid to /a and /a/..., never to /ab).
        ({"path": "/a", "cookie_name": "a.sid"}, {"path": "/ab", "cookie_name": "b.sid"}),
    ],
    ids=["paths-apart", "outer-excludes-inner", "one-path-a-prefix-of-the-other"],
)
async def test_two_middlewares_that_share_no_request_start_and_serve(
    sqlite_store: PrismaSessionStore, outer: dict[str, object], inner: dict[str, object]
) -> None:
    app = counter_app(sqlite_store, secret=SECRET, **inner)
    app.add_middleware(SessionMiddleware, store=sqlite_store, secret=SECRET, **outer)  # type: ignore[arg-type]
    await sqlite_store.create_table()
    answer, lifespan, inbox = await start(app)
    assert answer["type"] == "lifespan.startup.complete"
    inner_path = str(inner["path"])  # a path inside the inner middleware's cookie path alone
    name = inner_path.removeprefix("/")
    async with client_for(app) as client:
        assert [(await client.get(path)).json() for path in ("/a", "/a", inner_path, inner_path)] == [
            {"a": 1},
            {"a": 2},
            {name: 1},
            {name: 2},
        ]
        assert {cookie.name for cookie in client.cookies.jar} == {
            str(outer.get("cookie_name", "connect.sid")),
            "b.sid",
        }
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


def test_the_class_still_shows_its_options() -> None:
    parameters = inspect.signature(SessionMiddleware).parameters
    assert list(parameters)[:3] == ["app", "store", "secret"]


async def test_built_by_hand_inside_a_running_loop_it_fails_at_its_first_call(tmp_path: Path) -> None:
    """Outside any loop (at import) a build raises at once: test_middleware.py's option tests. Inside one,
    the stand-in raises the error at the first request."""
    store = PrismaSessionStore(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    stand_in = SessionMiddleware(FastAPI(), store=store, secret=[])
    assert not isinstance(stand_in, SessionMiddleware)
    transport = httpx.ASGITransport(app=stand_in)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with pytest.raises(ConfigurationError, match="secret must be"):
            await client.get("/")
