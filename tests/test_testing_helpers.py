"""fastapi_prisma_session.testing: sessions for tests of an app's own routes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware
from fastapi_prisma_session.testing import create_session, read_session, session_middleware
from tests.helpers import client_for


def profile_app(store: PrismaSessionStore) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret="test secret", cookie_name="sid")

    @app.get("/profile")
    async def profile(session: SessionDep) -> dict[str, object]:
        if "user_id" not in session:
            return {"error": "log in first"}
        session["seen"] = True
        return {"user_id": session["user_id"]}

    return app


async def test_create_a_session_and_read_it_back(store: PrismaSessionStore) -> None:
    app = profile_app(store)
    async with client_for(app) as client:
        assert (await client.get("/profile")).json() == {"error": "log in first"}
        client.cookies.clear()
        client.cookies.update(await create_session(app, {"user_id": 42}))
        assert (await client.get("/profile")).json() == {"user_id": 42}
        assert await read_session(app, client) == {"user_id": 42, "seen": True}


async def test_read_session_without_a_valid_cookie_is_none(store: PrismaSessionStore) -> None:
    app = profile_app(store)
    assert await read_session(app, {}) is None
    assert await read_session(app, {"sid": "s%3Aforged.sig"}) is None
    cookies = await create_session(app, {"n": 1})
    await store.clear()
    assert await read_session(app, cookies) is None


def test_an_app_without_the_middleware_is_named() -> None:
    with pytest.raises(ValueError, match="no SessionMiddleware"):
        session_middleware(FastAPI())
