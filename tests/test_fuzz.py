"""Property-based fuzzing of the Cookie header against the real ASGI app, on SQLite and PostgreSQL.

Whatever the header holds, the request gets a correct response and a fresh session: never a 500, never
a database error, and never anyone else's session. FUZZ_CASES is how many headers each property tries
per backend.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.signing import Signer, is_valid_session_id
from tests.helpers import SECRET, make_app

FUZZ_CASES = 200
FUZZ = settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NAME = "connect.sid"
SQL = ["' OR '1'='1", '"; DROP TABLE "Session"; --', "\\x00", "%27%3B", "s:' UNION SELECT 1 --.x", '"']
FRESH = {"value": None, "keys": []}


async def get_read(app: Any, cookie_header: bytes) -> tuple[int, Any]:
    """GET /read with raw header bytes, straight through ASGI (no client sanitises them)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/read",
        "raw_path": b"/read",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie_header)],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body)


async def assert_fresh(app: Any, header: bytes) -> None:
    status, body = await get_read(app, header)
    assert status == 200, (header, status, body)
    assert body == FRESH, header


@FUZZ
@given(header=st.binary(max_size=6000))
async def test_arbitrary_cookie_bytes(store: PrismaSessionStore, header: bytes) -> None:
    await store.set("victim", {"cookie": {"originalMaxAge": None, "expires": None}, "value": "private"})
    await assert_fresh(make_app(store, secret=SECRET), header)


@FUZZ
@given(
    values=st.lists(st.text(max_size=300), min_size=2, max_size=5),
    junk=st.sampled_from(SQL),
)
async def test_duplicated_names_quotes_and_sql(
    store: PrismaSessionStore, values: list[str], junk: str
) -> None:
    parts = [f"{NAME}={quote(v)}{junk}" for v in values] + [f'{NAME}="{junk}"', f"{NAME}=s:{junk}"]
    header = "; ".join(parts).encode("utf-8", "surrogatepass")
    await assert_fresh(make_app(store, secret=SECRET), header)


@FUZZ
@given(sid=st.text(min_size=1, max_size=200), secret=st.text(min_size=1, max_size=40))
async def test_signatures_from_other_secrets(store: PrismaSessionStore, sid: str, secret: str) -> None:
    if secret == SECRET:
        return
    # A row the forged cookie would open, if it were accepted (where the database can hold its sid: MySQL's
    # VARCHAR(191) holds fewer characters than a sid may have).
    stored = is_valid_session_id(sid) and len(sid) <= (store.rows.longest_key or len(sid))
    if stored:
        await store.set(sid, {"cookie": {"originalMaxAge": None, "expires": None}, "value": "private"})
    value = Signer([secret]).cookie_value(sid)
    try:
        await assert_fresh(make_app(store, secret=SECRET), f"{NAME}={value}".encode())
    finally:
        if stored:  # the next example starts without it (MySQL refuses a second sid differing in case)
            await store.destroy(sid)


@FUZZ
@given(sid=st.text(min_size=1, max_size=200))
async def test_valid_signatures_over_sids_without_a_row(store: PrismaSessionStore, sid: str) -> None:
    value = Signer([SECRET]).cookie_value(sid)
    await assert_fresh(make_app(store, secret=SECRET), f"{NAME}={value}".encode())


@FUZZ
@given(
    size=st.integers(min_value=4000, max_value=70_000),
    byte=st.sampled_from([b"A", b"\xff", b"%", b";", b"="]),
)
async def test_oversized_and_non_utf8_cookies(store: PrismaSessionStore, size: int, byte: bytes) -> None:
    await assert_fresh(make_app(store, secret=SECRET), f"{NAME}=s%3A".encode() + byte * size)
