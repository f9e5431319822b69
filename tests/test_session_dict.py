"""`request.session` behaves as a dict wherever Starlette's plain-dict session does, through real requests:
JSON, dict's operators and methods, change tracking of each mutating method, reserved keys, lazy loading."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse

from fastapi_prisma_session import (
    PrismaSessionStore,
    ReservedKeyError,
    Session,
    SessionDep,
    SessionNotLoadedError,
)
from fastapi_prisma_session.session_data import RESERVED
from tests.helpers import client_for, make_app, rows

Edit = Callable[[Session], Any]


def dict_app(store: PrismaSessionStore) -> FastAPI:
    """The test app, with routes that hand the session to Starlette's JSONResponse and json.dumps, and one
    that uses it unloaded (from code that never awaited its load)."""
    app = make_app(store)

    @app.get("/json-response")
    async def json_response(session: SessionDep) -> JSONResponse:
        return JSONResponse({"session": session, "is_dict": isinstance(session, dict)})

    @app.get("/dumps")
    async def dumps(session: SessionDep) -> dict[str, str]:
        return {"text": json.dumps(session), "sorted": json.dumps(session, sort_keys=True, indent=1)}

    @app.get("/return-it")
    async def return_it(session: SessionDep) -> Any:
        return session  # FastAPI's jsonable_encoder, as a route returning Starlette's session

    @app.get("/unloaded")
    async def unloaded(request: Request) -> dict[str, Any]:
        session = request.session
        uses: dict[str, Callable[[], Any]] = {
            "json.dumps": lambda: json.dumps(session),
            "json.dumps indent": lambda: json.dumps(session, indent=2),
            "JSONResponse": lambda: JSONResponse(session),
            "dict()": lambda: dict(session),
            "**": lambda: {**session},
            "==": lambda: session == {},
            "reflected ==": lambda: {} == session,  # noqa: SIM300 - the dict on the left is the point
            "!=": lambda: session != {"a": 1},
            "|": lambda: session | {},
            "ror |": lambda: {} | session,
            "copy": lambda: session.copy(),
            "copy.copy": lambda: copy.copy(session),
            "bool": lambda: bool(session),
            "list": lambda: list(session),
            "items": lambda: session.items(),
            "get": lambda: session.get("a"),
            "setdefault": lambda: session.setdefault("a", 1),
            "update": lambda: session.update(a=1),
            "popitem": lambda: session.popitem(),
        }
        refused = []
        for name, use in uses.items():
            try:
                use()
            except SessionNotLoadedError:
                refused.append(name)
        return {"refused": refused, "all": list(uses), "repr": repr(session).endswith(" (not loaded)>")}

    return app


async def seeded(client: Any, data: dict[str, str]) -> None:
    for key, value in data.items():
        assert (await client.post("/write", params={"key": key, "value": value})).status_code == 200


async def stored(engine: AsyncEngine) -> dict[str, Any]:
    session_rows = await rows(engine)
    assert len(session_rows) == 1
    data: dict[str, Any] = json.loads(next(iter(session_rows.values()))["data"])
    data.pop("cookie")
    return data


async def test_starlette_json_response_and_json_dumps_take_the_session(store: PrismaSessionStore) -> None:
    async with client_for(dict_app(store)) as client:
        await seeded(client, {"b": "2", "a": "1"})
        assert (await client.get("/json-response")).json() == {
            "session": {"b": "2", "a": "1"},
            "is_dict": True,
        }
        dumped = (await client.get("/dumps")).json()
        assert dumped["text"] == '{"b": "2", "a": "1"}'
        assert dumped["sorted"] == '{\n "a": "1",\n "b": "2"\n}'
        assert (await client.get("/return-it")).json() == {"b": "2", "a": "1"}


async def test_an_unloaded_session_refuses_every_use_json_and_dict_included(
    store: PrismaSessionStore,
) -> None:
    async with client_for(dict_app(store)) as client:
        await seeded(client, {"a": "1"})
        answer = (await client.get("/unloaded")).json()
    assert answer["refused"] == answer["all"]
    assert answer["repr"] is True  # repr, for a log line, never raises


async def test_an_unloaded_new_session_serializes_nothing_silently(store: PrismaSessionStore) -> None:
    # No cookie: the session is new and loaded, so it is a plain empty dict to json, as Starlette's.
    async with client_for(dict_app(store)) as client:
        assert (await client.get("/json-response")).json() == {"session": {}, "is_dict": True}
        assert (await client.get("/dumps")).json()["text"] == "{}"


def reads(session: Session) -> dict[str, Any]:
    """What dict's reading operations give on the session holding {"a": "1", "b": "2", "c": "3"}."""
    merged = session | {"d": "4"}
    merged_right = {"z": "0"} | session
    copied = session.copy()
    copied["x"] = "only in the copy"
    return {
        "dict": dict(session),
        "spread": {**session},
        "equal": session == {"c": "3", "b": "2", "a": "1"},
        "reflected_equal": {"a": "1", "b": "2", "c": "3"} == session,  # noqa: SIM300
        "not_equal": session != {"a": "1"},
        "or": [type(merged).__name__, merged],
        "ror": [type(merged_right).__name__, list(merged_right)],
        "copy": [type(copied).__name__, "x" in session],
        "copy.copy": type(copy.copy(session)).__name__,
        "deepcopy": copy.deepcopy(session),
        "pickle": [type(pickle.loads(pickle.dumps(session))).__name__, pickle.loads(pickle.dumps(session))],
        "keys": list(session.keys()),
        "values": list(session.values()),
        "items": [list(item) for item in session.items()],
        "in": ["a" in session, "zz" in session],
        "len": len(session),
        "iter": list(session),
        "reversed": list(reversed(session)),
        "get": [session.get("a"), session.get("zz"), session.get("zz", "default")],
        "bool": bool(session),
        "fromkeys": session.fromkeys(["k"], 0),
        "repr": repr(session).endswith(" {'a': '1', 'b': '2', 'c': '3'}>"),
        "modified": session.modified,
    }


async def test_dict_reads_work_as_on_a_dict_and_change_nothing(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)
    seen: list[dict[str, Any]] = []

    @app.get("/reads")
    async def read_route(session: SessionDep) -> None:
        seen.append(reads(session))

    async with client_for(app) as client:
        await seeded(client, {"a": "1", "b": "2", "c": "3"})
        response = await client.get("/reads")
    assert response.headers["vary"] == "Cookie"  # the response read the session: it varies on the cookie
    assert "set-cookie" not in response.headers  # nothing written
    data = {"a": "1", "b": "2", "c": "3"}
    assert seen == [
        {
            "dict": data,
            "spread": data,
            "equal": True,
            "reflected_equal": True,
            "not_equal": True,
            "or": ["dict", {**data, "d": "4"}],
            "ror": ["dict", ["z", "a", "b", "c"]],
            "copy": ["dict", False],
            "copy.copy": "dict",
            "deepcopy": data,
            "pickle": ["dict", data],
            "keys": ["a", "b", "c"],
            "values": ["1", "2", "3"],
            "items": [["a", "1"], ["b", "2"], ["c", "3"]],
            "in": [True, False],
            "len": 3,
            "iter": ["a", "b", "c"],
            "reversed": ["c", "b", "a"],
            "get": ["1", None, "default"],
            "bool": True,
            "fromkeys": {"k": 0},
            "repr": True,
            "modified": False,
        }
    ]
    assert await stored(engine) == data


async def test_a_dict_read_alone_makes_the_response_vary_on_the_cookie(store: PrismaSessionStore) -> None:
    app = make_app(store)

    @app.get("/as-dict")
    async def as_dict(session: SessionDep) -> dict[str, Any]:
        return dict(session)

    async with client_for(app) as client:
        await seeded(client, {"a": "1"})
        response = await client.get("/as-dict")
    assert response.json() == {"a": "1"}
    assert response.headers["vary"] == "Cookie"


def edit_app(store: PrismaSessionStore, edit: Edit) -> FastAPI:
    """`/edit`: the session is loaded, another request rewrites its row (b changed, `theirs` added), then
    `edit(session)` runs, its result is returned, and the response saves the session."""
    app = make_app(store)

    @app.post("/edit")
    async def edit_route(session: SessionDep) -> dict[str, Any]:
        stored_now = await store.get(session.id)
        assert stored_now is not None
        await store.set(session.id, {**stored_now, "b": "their b", "theirs": 1})
        result = edit(session)
        return {"result": result, "data": dict(session), "modified": session.modified}

    return app


def ior(session: Session) -> None:
    session |= {"a": "mine", "e": "new"}


def popitem(session: Session) -> Any:
    return list(session.popitem())


def setdefault_inserting(session: Session) -> Any:
    return [session.setdefault("e", "new"), session.setdefault("a", "unused")]


def clear_then_setdefault(session: Session) -> None:
    session.clear()
    session.setdefault("a", "again")


def modified(session: Session) -> None:
    session.modified = True


START = {"a": "1", "b": "2", "c": "3", "d": "4"}


@pytest.mark.parametrize(
    ("edit", "result", "expected"),
    [
        # Each writes only the keys it set or deleted: b and theirs stay as the other request left them.
        (ior, None, {**START, "a": "mine", "b": "their b", "e": "new", "theirs": 1}),
        (
            lambda session: session.update({"a": "mine"}, e="new"),
            None,
            {**START, "a": "mine", "b": "their b", "e": "new", "theirs": 1},
        ),
        (
            lambda session: session.update([("c", "pair")]),
            None,
            {**START, "b": "their b", "c": "pair", "theirs": 1},
        ),
        (setdefault_inserting, ["new", "1"], {**START, "b": "their b", "e": "new", "theirs": 1}),
        (lambda session: session.pop("a"), "1", {"b": "their b", "c": "3", "d": "4", "theirs": 1}),
        (lambda session: session.pop("zz", "none"), "none", {**START, "b": "their b", "theirs": 1}),
        (popitem, ["d", "4"], {"a": "1", "b": "their b", "c": "3", "theirs": 1}),  # LIFO, as dict's
        (lambda session: session.__delitem__("c"), None, {"a": "1", "b": "their b", "d": "4", "theirs": 1}),
        # Every key this request saw is deleted; the key it never saw stays.
        (clear_then_setdefault, None, {"a": "again", "theirs": 1}),
        # A reserved key refuses the whole update: nothing is changed, nothing written.
        (
            lambda session: _refused(lambda: session.update(a="mine", cookie={})),
            True,
            {**START, "b": "their b", "theirs": 1},
        ),
        # modified = True writes every key this request holds (its b too), and deletes none.
        (modified, None, {**START, "theirs": 1}),
    ],
)
async def test_each_mutating_method_writes_exactly_its_keys_beside_a_concurrent_writer(
    store: PrismaSessionStore, engine: AsyncEngine, edit: Edit, result: Any, expected: dict[str, Any]
) -> None:
    async with client_for(edit_app(store, edit)) as client:
        await seeded(client, START)
        answer = (await client.post("/edit")).json()
    assert answer["result"] == result
    assert await stored(engine) == expected


def _refused(use: Callable[[], Any]) -> bool:
    try:
        use()
    except ReservedKeyError as error:
        # A KeyError as before, and a ValueError; its message names the key, unquoted by KeyError.
        is_both = isinstance(error, KeyError) and isinstance(error, ValueError)
        return is_both and str(error).startswith(f"{error.key!r} is reserved")
    return False


async def test_reserved_keys_are_refused_on_every_insertion_path(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/reserved")
    async def reserved(session: SessionDep) -> dict[str, Any]:
        refused = {}
        for key in RESERVED:
            refused[key] = [
                _refused(lambda key=key: session.__setitem__(key, 1)),
                _refused(lambda key=key: session.update({key: 1})),
                _refused(lambda key=key: session.update(**{key: 1})),
                _refused(lambda key=key: session.update([(key, 1)])),
                _refused(lambda key=key: session.__ior__({key: 1})),
                _refused(lambda key=key: session.setdefault(key, 1)),
            ]
        return {"refused": refused, "data": dict(session), "modified": session.modified}

    async with client_for(app) as client:
        await seeded(client, {"a": "1"})
        answer = (await client.post("/reserved")).json()
    assert answer == {
        "refused": {key: [True] * 6 for key in RESERVED},
        "data": {"a": "1"},
        "modified": False,
    }
    assert await stored(engine) == {"a": "1"}


async def test_a_clients_json_holding_a_reserved_key_is_refused_whole(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    """An app that passes a request's JSON to `session.update` can catch the refusal by its name."""
    app = make_app(store)

    @app.post("/profile")
    async def profile(request: Request, session: SessionDep) -> JSONResponse:
        try:
            session.update(await request.json())
        except ReservedKeyError as error:
            return JSONResponse({"refused": str(error)}, status_code=400)
        return JSONResponse({"refused": None})

    async with client_for(app) as client:
        await seeded(client, {"a": "1"})
        for key in ("__device", "__encrypted", "cookie"):
            response = await client.post("/profile", json={"a": "2", key: {"ip": "1.2.3.4"}})
            assert response.status_code == 400
            assert response.json()["refused"].startswith(f"'{key}' is reserved")
        assert (await client.post("/profile", json={"a": "3"})).json() == {"refused": None}
    assert await stored(engine) == {"a": "3"}


async def test_a_new_session_built_with_dict_methods_is_saved_whole(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    app = make_app(store)

    @app.post("/build")
    async def build(session: SessionDep) -> dict[str, Any]:
        session.update(a=1, b=2)
        session |= {"c": 3}
        session.setdefault("d", [4])
        popped = session.popitem()
        return {"popped": list(popped), "session": session}

    async with client_for(app) as client:
        answer = (await client.post("/build")).json()
        read = (await client.get("/read")).json()
    assert answer == {"popped": ["d", [4]], "session": {"a": 1, "b": 2, "c": 3}}
    assert read["keys"] == ["a", "b", "c"]
    assert await stored(engine) == {"a": 1, "b": 2, "c": 3}
