"""Typed sessions through real requests, on every database; and what mypy sees of them."""

from __future__ import annotations

import logging
import re
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from fastapi_prisma_session import (
    ConfigurationError,
    PrismaSessionStore,
    SessionDep,
    SessionMiddleware,
    TypedSession,
)
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for

COOKIE = {"originalMaxAge": 60_000, "expires": None}


class Cart(BaseModel):
    items: list[str] = []
    user_id: int | None = None
    seen: datetime | None = None
    coupon: str | None = Field(default=None, alias="couponCode")


def typed_app(store: PrismaSessionStore) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET)

    @app.get("/cart")
    async def show(cart: TypedSession[Cart]) -> dict[str, Any]:
        return cart.model_dump(mode="json")

    @app.post("/cart")
    async def add(cart: TypedSession[Cart], item: str) -> list[str]:
        cart.items.append(item)  # in place: seen by comparing the dumps
        cart.seen = datetime(2030, 1, 2, 3, 4, 5)
        return cart.items

    @app.post("/coupon")
    async def coupon(cart: TypedSession[Cart], session: SessionDep, code: str) -> dict[str, Any]:
        cart.coupon = code
        return {"sid": session.id}

    @app.get("/twice")
    async def twice(first: TypedSession[Cart], second: TypedSession[Cart]) -> bool:
        first.items = ["one"]
        return first is second

    @app.get("/raw")
    async def raw(session: SessionDep) -> dict[str, Any]:
        return dict(session)

    return app


def cookie_for(sid: str) -> dict[str, str]:
    return {"connect.sid": Signer([SECRET]).cookie_value(sid)}


async def test_changes_are_saved_as_express_session_data(store: PrismaSessionStore) -> None:
    async with client_for(typed_app(store)) as client:
        assert (await client.post("/cart", params={"item": "tea"})).json() == ["tea"]
        assert (await client.post("/cart", params={"item": "cake"})).json() == ["tea", "cake"]
        sid = (await client.post("/coupon", params={"code": "HALF"})).json()["sid"]
        shown = (await client.get("/cart")).json()
    assert shown["items"] == ["tea", "cake"]
    assert shown["coupon"] == "HALF"
    stored = await store.get(sid)
    assert stored is not None
    # JSON as express-session keeps it: the cookie beside the model's fields, by alias, dates as text;
    # the user_id nobody set is not written.
    assert stored == {
        "cookie": stored["cookie"],
        "items": ["tea", "cake"],
        "seen": "2030-01-02T03:04:05",
        "couponCode": "HALF",
    }
    assert set(stored["cookie"]) >= {"originalMaxAge", "expires"}


async def test_a_read_writes_nothing_and_keys_outside_the_model_stay(store: PrismaSessionStore) -> None:
    await store.set("typed-1", {"cookie": COOKIE, "items": ["pen"], "user_id": 7, "theme": "dark"})
    async with client_for(typed_app(store)) as client:
        client.cookies.update(cookie_for("typed-1"))
        assert (await client.get("/cart")).json()["user_id"] == 7
        assert (await client.post("/cart", params={"item": "ink"})).status_code == 200
        assert (await client.get("/raw")).json()["theme"] == "dark"
    stored = await store.get("typed-1")
    assert stored is not None
    assert stored["theme"] == "dark"
    assert stored["items"] == ["pen", "ink"]
    async with client_for(typed_app(store)) as client:
        await client.get("/cart")  # a new visitor who only reads: no row
    assert await store.length() == 1


@pytest.mark.parametrize(
    "bad", [{"user_id": "not a number"}, {"items": "not a list"}, {"items": [1, {"x": 2}]}, {"seen": "never"}]
)
async def test_an_invalid_row_is_a_fresh_session_and_one_log_line(
    store: PrismaSessionStore, bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await store.set("typed-bad", {"cookie": COOKIE, "theme": "dark", **bad})
    async with client_for(typed_app(store)) as client:
        client.cookies.update(cookie_for("typed-bad"))
        with caplog.at_level(logging.WARNING, "fastapi_prisma_session.typed"):
            response = await client.post("/cart", params={"item": "tea"})
        assert response.status_code == 200
        assert response.json() == ["tea"]
        assert "connect.sid=s%3A" in response.headers["set-cookie"]  # the fresh session's cookie
    lines = [record for record in caplog.records if record.name == "fastapi_prisma_session.typed"]
    assert len(lines) == 1
    assert "does not fit Cart" in lines[0].getMessage()
    assert "fresh session" in lines[0].getMessage()
    assert await store.get("typed-bad") is None  # the old row is gone, as with regenerate
    [fresh] = (await store.all()).values()
    assert fresh["items"] == ["tea"]
    assert "theme" not in fresh


async def test_every_parameter_of_one_model_is_one_instance(store: PrismaSessionStore) -> None:
    async with client_for(typed_app(store)) as client:
        assert (await client.get("/twice")).json() is True
        assert (await client.get("/raw")).json()["items"] == ["one"]


def test_models_a_session_cannot_hold_are_refused_at_once() -> None:
    class Reserved(BaseModel):
        cookie: str = ""

    class Aliased(BaseModel):
        marker: str = Field(default="", alias="__absoluteExpires")

    class Required(BaseModel):
        user_id: int

    for model, words in ((Reserved, "reserved"), (Aliased, "reserved"), (Required, "default")):
        with pytest.raises(ConfigurationError, match=words):
            TypedSession[model]
    with pytest.raises(ConfigurationError, match="pydantic model"):
        TypedSession[dict]


SAMPLE = """
from fastapi import FastAPI
from pydantic import BaseModel

from fastapi_prisma_session import TypedSession

app = FastAPI()


class Cart(BaseModel):
    items: list[str] = []
    user_id: int | None = None


@app.post("/cart")
async def add(cart: TypedSession[Cart], item: str) -> int:
    reveal_type(cart)
    reveal_type(cart.items)
    reveal_type(cart.user_id)
    cart.items.append(item)
    return cart.user_id
"""


def test_mypy_sees_the_models_fields(tmp_path: Path) -> None:
    from mypy import api

    sample = tmp_path / "typed_sample.py"
    sample.write_text(textwrap.dedent(SAMPLE))
    out, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(sample)]
    )
    revealed = re.findall(r'Revealed type is "(.*)"', out)
    # mypy spells builtins in full or not, by version: builtins.list[builtins.str] or list[str].
    assert [name.replace("builtins.", "") for name in revealed] == [
        "typed_sample.Cart",
        "list[str]",
        "int | None",
    ]
    # The one error: user_id may be None where an int is returned.
    assert 'Incompatible return value type (got "int | None", expected "int")' in out
    assert status == 1
    assert "Found 1 error" in out
