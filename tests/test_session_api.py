"""The Session object's API, through real requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.websockets import WebSocket

from fastapi_prisma_session import PrismaSessionStore, Session, SessionDep, SessionMiddleware, load_session
from fastapi_prisma_session.rows import marker_sid
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
        # An expired marker of where the session went, under a key of its own, for a logout sent with the
        # old cookie.
        assert set(await rows(engine)) == {response["new"], marker_sid(response["old"])}
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


@pytest.mark.parametrize("state", ["missing", None, "server's"])
async def test_request_state_session_whatever_state_the_server_gives(
    store: PrismaSessionStore, state: str | None
) -> None:
    """`request.state.session` is there whether the server gave the scope a state dict, none, or None."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["state"]["session"] is scope["session"], sorted(scope["state"])))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def collect(message: Any) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "path": "/", "headers": []}
    if state != "missing":
        scope["state"] = None if state is None else {"lifespan": 1}
    await SessionMiddleware(app, store=store, secret=SECRET)(scope, None, collect)  # type: ignore[arg-type]
    keys = ["lifespan", "session"] if state == "server's" else ["session"]
    assert seen == [(True, keys)]
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]


async def test_other_scope_types_pass_through(store: PrismaSessionStore) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await SessionMiddleware(app, store=store, secret=SECRET)({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]


def edit_app(store: PrismaSessionStore, edit: Any) -> Any:
    """The test app with `/edit`: the session is loaded, another request rewrites its row to hold
    `theirs` as well (and `b` changed), then `edit(session)` runs and the response saves the session."""
    app = make_app(store)

    @app.post("/edit")
    async def edit_route(session: SessionDep) -> dict[str, bool]:
        stored = await store.get(session.id)
        assert stored is not None
        await store.set(session.id, {**stored, "b": "their b", "theirs": 1})
        edit(session)
        return {"modified": session.modified}

    return app


async def stored(engine: AsyncEngine) -> dict[str, Any]:
    session_rows = await rows(engine)
    assert len(session_rows) == 1
    data: dict[str, Any] = json.loads(next(iter(session_rows.values()))["data"])
    data.pop("cookie")
    return data


def set_and_delete(session: Session) -> None:
    session["a"] = "mine"
    del session["c"]
    session.pop("d")
    session["e"] = "set, then deleted"
    del session["e"]


def clear_and_set(session: Session) -> None:
    session.clear()
    session["f"] = "after clear"


def modified(session: Session) -> None:
    session.modified = True


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # Only a, c, d and e are written: b and theirs stay as the other request left them.
        (set_and_delete, {"a": "mine", "b": "their b", "theirs": 1}),
        # Every key this request saw is deleted; the key it never saw stays.
        (clear_and_set, {"f": "after clear", "theirs": 1}),
        # modified = True writes every key this request holds (its b too), and deletes none.
        (modified, {"a": "1", "b": "2", "c": "3", "d": "4", "theirs": 1}),
    ],
)
async def test_a_save_writes_the_keys_the_request_set_or_deleted(
    store: PrismaSessionStore, engine: AsyncEngine, edit: Any, expected: dict[str, Any]
) -> None:
    async with client_for(edit_app(store, edit)) as client:
        for key, value in {"a": "1", "b": "2", "c": "3", "d": "4"}.items():
            await client.post("/write", params={"key": key, "value": value})
        assert (await client.post("/edit")).json() == {"modified": True}
        assert await stored(engine) == expected
