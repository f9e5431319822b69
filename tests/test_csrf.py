"""Session-bound CSRF tokens through real requests, on every database."""

from __future__ import annotations

import hmac
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Form
from fastapi.responses import HTMLResponse

from fastapi_prisma_session import (
    CsrfDep,
    PrismaSessionStore,
    SessionDep,
    SessionMiddleware,
    csrf_token,
    require_csrf,
)
from tests.helpers import SECRET, client_for


def csrf_app(store: PrismaSessionStore, secret: Any = SECRET) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret=secret)

    @app.get("/form", response_class=HTMLResponse)
    async def form(token: str = Depends(csrf_token)) -> str:
        return f'<form method="post"><input type="hidden" name="csrf_token" value="{token}"></form>'

    @app.post("/note")
    async def note(_: CsrfDep, session: SessionDep, text: str = Form("")) -> dict[str, str]:
        session["note"] = text
        return {"note": text}

    @app.api_route("/api", methods=["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "POST"])
    async def api(_: CsrfDep) -> dict[str, bool]:
        return {"ok": True}

    @app.post("/login", dependencies=[Depends(require_csrf)])
    async def login(session: SessionDep, keep: bool = False) -> dict[str, str]:
        await session.regenerate(keep_data=keep)
        session["user"] = "ann"
        return {"sid": session.id}

    @app.get("/header-token")
    async def header_token(token: str = Depends(csrf_token)) -> dict[str, str]:
        return {"token": token}

    return app


async def token_of(client: httpx.AsyncClient) -> str:
    token: str = (await client.get("/header-token")).json()["token"]
    return token


async def test_a_form_posts_with_its_hidden_token(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as client:
        page = (await client.get("/form")).text
        token = page.split('value="')[1].split('"')[0]
        response = await client.post("/note", data={"csrf_token": token, "text": "hi"})
        assert response.json() == {"note": "hi"}  # the route's own Form field still reads the body
        assert (await client.post("/note", data={"text": "no token"})).status_code == 403


async def test_the_header_carries_the_token(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as client:
        token = await token_of(client)
        assert token == await token_of(client)  # one token per session, stable across requests
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            good = await client.request(method, "/api", headers={"X-CSRF-Token": token})
            assert good.status_code == 200, method
            bad = await client.request(method, "/api", headers={"X-CSRF-Token": token[:-2] + "AA"})
            assert bad.status_code == 403, method
            assert "invalid" in bad.json()["detail"]


async def test_a_missing_token_is_a_clear_403(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as client:
        await token_of(client)
        response = await client.post("/api", json={"x": 1})
        assert response.status_code == 403
        assert response.json()["detail"].startswith("CSRF token missing")
        assert "X-CSRF-Token" in response.json()["detail"]
        empty = await client.post("/note", data={"csrf_token": "", "text": "x"})
        assert empty.status_code == 403


async def test_safe_methods_are_not_checked(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as client:
        for method in ("GET", "HEAD", "OPTIONS"):
            assert (await client.request(method, "/api")).status_code == 200, method


async def test_a_token_is_good_for_its_own_session_only(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as alice, client_for(csrf_app(store)) as mallory:
        alices = await token_of(alice)
        mallorys = await token_of(mallory)
        assert alices != mallorys
        refused = await mallory.post("/api", headers={"X-CSRF-Token": alices})
        assert refused.status_code == 403
        assert (await alice.post("/api", headers={"X-CSRF-Token": alices})).status_code == 200
    async with client_for(csrf_app(store)) as stranger:  # no session at all
        assert (await stranger.post("/api", headers={"X-CSRF-Token": alices})).status_code == 403


@pytest.mark.parametrize("keep", [False, True])
async def test_regenerate_makes_the_old_token_worthless(store: PrismaSessionStore, keep: bool) -> None:
    async with client_for(csrf_app(store)) as client:
        before = await token_of(client)
        response = await client.post("/login", params={"keep": keep}, headers={"X-CSRF-Token": before})
        assert response.status_code == 200
        assert (await client.post("/api", headers={"X-CSRF-Token": before})).status_code == 403
        after = await token_of(client)
        assert after != before
        assert (await client.post("/api", headers={"X-CSRF-Token": after})).status_code == 200


async def test_a_token_of_another_secret_is_refused_and_rotation_keeps_tokens(
    store: PrismaSessionStore,
) -> None:
    async with client_for(csrf_app(store, secret="an older secret, long enough too!")) as client:
        token = await token_of(client)
        cookies = dict(client.cookies)
    # The same session under a rotated list: the cookie and the token signed by the old secret pass.
    rotated = csrf_app(
        store, secret=["the newest secret, also long enough", "an older secret, long enough too!"]
    )
    async with client_for(rotated) as client:
        client.cookies.update(cookies)
        assert (await client.post("/api", headers={"X-CSRF-Token": token})).status_code == 200
        assert await token_of(client) != token  # new tokens are signed by the newest secret


async def test_the_comparison_is_constant_time(
    store: PrismaSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append(b)
        return real(a, b)

    async with client_for(csrf_app(store)) as client:
        token = await token_of(client)
        monkeypatch.setattr(hmac, "compare_digest", recording)
        assert (await client.post("/api", headers={"X-CSRF-Token": token})).status_code == 200
    # Tokens travel as base64url (no "+" for a form body to read as a space); the signer compares base64.
    assert "+" not in token
    assert "/" not in token
    assert token.translate(str.maketrans("-_", "+/")).encode() in compared


async def test_hostile_tokens_are_403s(store: PrismaSessionStore) -> None:
    async with client_for(csrf_app(store)) as client:
        await token_of(client)
        for token in ("x" * 5000, "a.b", "é", "s:" + "A" * 43):
            response = await client.post("/api", headers={"X-CSRF-Token": token.encode()})
            assert response.status_code == 403, token
            response = await client.post("/note", data={"csrf_token": token})
            assert response.status_code == 403, token
