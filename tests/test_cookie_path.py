"""The cookie's `path`: a request gets a session exactly when a browser would send it the cookie.

Browsers match a cookie's path as RFC 6265 section 5.1.4 says: "/api" covers "/api" and "/api/x" but
not "/apix", which only starts with the same letters. Over real HTTP through the ASGI app, on SQLite (the
rule is the middleware's, the same on every database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import func, select

from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware, load_session
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[PrismaSessionStore]:
    store = PrismaSessionStore(f"sqlite:///{tmp_path / 'sessions.db'}")
    await store.create_table()
    yield store
    await store.shutdown()


def writes_everywhere(store: PrismaSessionStore, cookie_path: str) -> FastAPI:
    """An app whose every path writes to its session when it has one, and says whether it had one."""
    app = FastAPI()

    @app.post("/{rest:path}")
    async def write(request: Request) -> dict[str, bool]:
        if "session" not in request.scope:
            return {"session": False}
        session = await load_session(request)
        session["path"] = request.url.path
        return {"session": True}

    app.add_middleware(SessionMiddleware, store=store, secret=SECRET, path=cookie_path)
    return app


async def row_count(store: PrismaSessionStore) -> int:
    async with store.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(session_table()))
    return int(count or 0)


async def stored_sids(store: PrismaSessionStore) -> list[str]:
    async with store.engine.connect() as conn:
        return list((await conn.scalars(select(session_table().c.sid))).all())


@pytest.mark.parametrize(
    ("cookie_path", "request_path", "covered"),
    [
        ("/api", "/api", True),
        ("/api", "/api/", True),
        ("/api", "/api/users/1", True),
        ("/api", "/apix", False),
        ("/api", "/apix/users", False),
        ("/api", "/ap", False),
        ("/api", "/", False),
        ("/api/", "/api/users", True),
        ("/api/", "/api/", True),
        ("/api/", "/api", False),  # shorter than the cookie's path: the browser does not send it
        ("/", "/anything", True),
    ],
)
async def test_a_request_gets_a_session_only_inside_the_cookie_path(
    sqlite_store: PrismaSessionStore, cookie_path: str, request_path: str, covered: bool
) -> None:
    async with client_for(writes_everywhere(sqlite_store, cookie_path)) as client:
        response = await client.post(request_path)
    assert response.status_code == 200
    assert response.json() == {"session": covered}
    set_cookies = response.headers.get_list("set-cookie")
    if covered:
        assert len(set_cookies) == 1
        assert f"; Path={cookie_path};" in set_cookies[0]
    else:
        assert set_cookies == []  # no cookie the browser would then send only to other paths
    assert await row_count(sqlite_store) == (1 if covered else 0)


async def test_a_cookie_sent_to_a_path_outside_it_loads_nothing(sqlite_store: PrismaSessionStore) -> None:
    """A client that sends the cookie where a browser would not (a script, a proxy that rewrites paths)
    still gets no session there: the path decides, not the Cookie header."""
    app = writes_everywhere(sqlite_store, "/api")
    async with client_for(app) as client:
        assert (await client.post("/api/login")).json() == {"session": True}
        [sid] = await stored_sids(sqlite_store)
        cookie = f"connect.sid={Signer([SECRET]).cookie_value(sid)}"
        response = await client.post("/apix", headers={"cookie": cookie})
    assert response.json() == {"session": False}
    assert response.headers.get_list("set-cookie") == []
