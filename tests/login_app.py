"""The app the login, logout and deadline tests drive: log in (regenerate), log out (destroy), rotate a
session's id keeping its data, and write a key, each through the real middleware.

`app.state.arrived` and `app.state.release` (asyncio.Events, None by default) hold `/rotate` at one
step, so that a test can send another request while it is in flight: `/rotate` sets `arrived` and waits
for `release` before (`?hold=before`) or after (`?hold=after`) its `regenerate(keep_data=True)`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI, Request

from fastapi_prisma_session import PrismaSessionStore, Session, SessionDep, SessionMiddleware
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET


def login_app(store: PrismaSessionStore, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET, **options)
    app.state.arrived = None
    app.state.release = None

    @app.post("/login")
    async def login(session: SessionDep, user: str) -> dict[str, str]:
        await session.regenerate()
        session["user_id"] = user
        return {"id": session.id}

    @app.post("/login-keep")
    async def login_keep(session: SessionDep, user: str) -> dict[str, str]:
        await session.regenerate(keep_data=True)
        session["user_id"] = user
        return {"id": session.id}

    @app.post("/rotate")
    async def rotate(request: Request, session: SessionDep, hold: str = "") -> dict[str, str]:
        old = session.id
        session.get("user_id")  # loaded now, as a route that looks at the user first
        if hold == "before":
            await _held(request.app)
        await session.regenerate(keep_data=True)
        if hold == "after":
            await _held(request.app)
        return {"old": old, "new": session.id}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        # Not loaded first: the row the cookie names is deleted, in one statement.
        session: Session = request.scope["session"]
        await session.destroy()
        return {"ok": True}

    @app.post("/write")
    async def write(session: SessionDep, key: str, value: str) -> dict[str, str]:
        session[key] = value
        return {"id": session.id}

    return app


async def _held(app: FastAPI) -> None:
    app.state.arrived.set()
    await app.state.release.wait()


def cookie_of(sid: str) -> str:
    """The Cookie header that names session `sid`."""
    return "connect.sid=" + Signer([SECRET]).cookie_value(sid)


async def logged_in(client: httpx.AsyncClient, user: str) -> tuple[str, str]:
    """A new session of `user`, from a browser of its own: its sid and the Cookie header naming it.

    Every request of these tests names its session by its own Cookie header (which the client's cookie
    jar never overrides), so that concurrent requests of different users do not mix."""
    response = await client.post("/login", params={"user": user}, headers={"cookie": ""})
    assert response.status_code == 200, response.text
    sid: str = response.json()["id"]
    return sid, cookie_of(sid)


def fresh_events(app: FastAPI) -> tuple[asyncio.Event, asyncio.Event]:
    """New `arrived` and `release` events for `/rotate?hold=…`."""
    app.state.arrived, app.state.release = asyncio.Event(), asyncio.Event()
    return app.state.arrived, app.state.release
