"""The promises of the most trusted session systems, kept: tampered cookies are ignored, ids cannot be
fixed or guessed, responses are not cached for others, and oversized data is refused."""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import SessionTooLargeError
from fastapi_prisma_session.signing import Signer
from tests.helpers import SECRET, client_for, make_app, rows


def test_signature_checks_are_constant_time_and_try_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    signer = Signer(["first", "second", "third"])
    signed = signer.sign("sid")
    assert signer.unsign(signed) == "sid"
    assert len(calls) == 3  # no early exit on a match: timing does not reveal which secret signed
    calls.clear()
    assert signer.unsign("sid.forged") is None
    assert len(calls) == 3


async def test_cookies_default_to_httponly_samesite_lax_and_secure_on_https(store: Any) -> None:
    async with client_for(make_app(store), base_url="https://testserver") as client:
        header = (await client.post("/write")).headers["set-cookie"]
    assert header.endswith("; HttpOnly; Secure; SameSite=Lax")


async def test_a_response_that_used_the_session_varies_on_cookie_and_is_private(store: Any) -> None:
    async with client_for(make_app(store)) as client:
        noop = await client.get("/noop")
        read = await client.get("/read")
        written = await client.post("/write")
    assert "vary" not in noop.headers
    assert "cache-control" not in noop.headers
    for response in (read, written):
        assert response.headers["vary"] == "Cookie"
        assert response.headers["cache-control"] == "private"


async def test_an_apps_own_cache_control_is_kept(store: Any) -> None:
    async with client_for(make_app(store)) as client:
        response = await client.get("/cached")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Accept-Encoding, Cookie"


async def test_a_host_prefixed_cookie_works(store: Any) -> None:
    app = make_app(store, cookie_name="__Host-sid")
    async with client_for(app, base_url="https://testserver") as client:
        written = await client.post("/write", params={"value": "hosted"})
        read = await client.get("/read")
    header = written.headers["set-cookie"]
    assert header.startswith("__Host-sid=s%3A")
    assert "; Path=/;" in header
    assert "; Secure" in header
    assert "Domain" not in header
    assert read.json()["value"] == "hosted"


async def test_data_over_the_size_limit_fails_the_save_and_keeps_the_stored_session(
    make_store: Any, engine: AsyncEngine
) -> None:
    store = make_store(max_data_size=300)
    await store.create_table()
    async with client_for(make_app(store)) as client:
        sid = (await client.post("/write", params={"value": "small"})).json()["id"]
        with pytest.raises(SessionTooLargeError, match="over the store's max_data_size of 300"):
            await client.post("/write", params={"value": "x" * 400})
        with pytest.raises(SessionTooLargeError):
            await client.post("/write", params={"value": "y" * 400, "key": "other"})
    assert json.loads((await rows(engine))[sid]["data"])["value"] == "small"


async def test_new_oversized_sessions_are_not_created(make_store: Any, engine: AsyncEngine) -> None:
    store = make_store(max_data_size=100)
    await store.create_table()
    async with client_for(make_app(store)) as client:
        with pytest.raises(SessionTooLargeError):
            await client.post("/write", params={"value": "z" * 200})
    assert await rows(engine) == {}


def test_session_ids_from_the_default_generator_do_not_repeat() -> None:
    from fastapi_prisma_session.session_ids import _default_genid

    ids = {_default_genid() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 for i in ids)  # 24 random bytes: 192 bits


def test_a_valid_signature_from_another_secret_is_rejected() -> None:
    ours, theirs = Signer([SECRET]), Signer(["someone else's"])
    assert ours.session_id(theirs.cookie_value("sid")) is None
