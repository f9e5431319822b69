"""The Session object's API, through real requests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.websockets import WebSocket

from fastapi_prisma_session import PrismaSessionStore, Session, SessionMiddleware, load_session
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, make_app, rows


async def test_is_new_and_modified(store: PrismaSessionStore) -> None:
    async with client_for(make_app(store)) as client:
        first = (await client.get("/flags")).json()
        second = (await client.get("/flags")).json()
    assert first == {"is_new": True, "modified": False, "modified_after": True}
    assert second == {"is_new": False, "modified": False, "modified_after": True}


async def test_regenerate_can_keep_the_data(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    async with client_for(make_app(store)) as client:
        await client.post("/write", params={"value": "cart"})
        response = (await client.post("/login-keep")).json()
        assert response["old"] != response["new"]
        assert response["data"] == {"value": "cart"}
        assert set(await store.ids()) == {response["new"]}
        # The old id keeps only an expired marker of where the session went, for a logout sent with it.
        assert set(await rows(engine)) == {response["new"], response["old"]}
        assert await store.get(response["old"]) is None
        assert (await client.get("/read")).json()["value"] == "cart"


async def test_reload_of_a_session_destroyed_elsewhere_raises(store: PrismaSessionStore) -> None:
    async with client_for(make_app(store)) as client:
        await client.post("/write")
        response = await client.post("/reload-gone")
    assert "is not stored" in response.json()["error"]


async def test_a_websocket_reads_the_session(store: PrismaSessionStore) -> None:
    await store.set("ws-sid", {"cookie": {"originalMaxAge": None, "expires": None}, "value": "hi"})
    seen: list[Any] = []

    async def websocket_app(scope: Any, receive: Any, send: Any) -> None:
        session = await load_session(WebSocket(scope, receive, send))
        seen.append((type(session), session.get("value"), scope["state"]["session"] is session))

    middleware = SessionMiddleware(websocket_app, store=store, secret=SECRET)
    cookie = f"connect.sid={Signer([SECRET]).cookie_value('ws-sid')}".encode()
    scope = {"type": "websocket", "path": "/ws", "headers": [(b"cookie", cookie)], "scheme": "ws"}

    async def no_messages() -> Any:
        raise AssertionError("not called")

    await middleware(scope, no_messages, no_messages)
    assert seen == [(Session, "hi", True)]


async def test_other_scope_types_pass_through(store: PrismaSessionStore) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await SessionMiddleware(app, store=store, secret=SECRET)({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]
