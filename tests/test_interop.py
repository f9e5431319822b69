"""Compatibility with the Node system, from cookies and rows that express-session and
prisma-session-store 3.1.21 really wrote (tests/interop/fixtures/express-session-fixtures.json)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.cookies import CookieAttributes, iso_utc
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from tests.helpers import client_for, insert_row, make_app, rows

INTEROP = Path(__file__).resolve().parent / "interop" / "fixtures"
FIXTURES: dict[str, Any] = json.loads((INTEROP / "express-session-fixtures.json").read_text())
NODE_OPTIONS = {
    "secret": FIXTURES["secret"],
    "cookie_name": FIXTURES["cookie_name"],
    "max_age": FIXTURES["max_age_ms"] / 1000,
    "samesite": False,
    "secure": False,
}


@pytest.mark.parametrize("case", FIXTURES["signatures"], ids=lambda case: case["sid"])
def test_node_signatures_verify_and_ours_are_byte_identical(case: dict[str, str]) -> None:
    signer = Signer([case["secret"]])
    assert "s:" + signer.sign(case["sid"]) == case["signed"]
    assert signer.unsign(case["signed"].removeprefix("s:")) == case["sid"]
    assert Signer(["another secret"]).unsign(case["signed"].removeprefix("s:")) is None


@pytest.mark.parametrize("session", FIXTURES["sessions"], ids=lambda s: s["cookie"][:24])
def test_our_set_cookie_is_byte_identical_to_express_session(session: dict[str, Any]) -> None:
    set_cookie: str = session["set_cookie"]
    sid = Signer([FIXTURES["secret"]]).session_id(session["cookie"].split("=", 1)[1])
    assert sid is not None
    expires = parsedate_to_datetime(set_cookie.split("Expires=")[1].split(";")[0]).replace(tzinfo=None)
    attributes = CookieAttributes(name=FIXTURES["cookie_name"], samesite=None)
    ours = attributes.set_cookie(
        Signer([FIXTURES["secret"]]).cookie_value(sid), expires, request_secure=False
    )
    assert ours == set_cookie


def _moved_into_the_future(row: dict[str, str]) -> tuple[dict[str, Any], Any]:
    data = json.loads(row["data"])
    expires = utcnow() + timedelta(days=7)
    data["cookie"]["expires"] = iso_utc(expires)
    return data, expires


async def test_node_cookies_load_node_rows(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    for row in FIXTURES["rows"]:
        data, expires = _moved_into_the_future(row)
        await insert_row(engine, row["sid"], data, expires)
    async with client_for(make_app(store, **NODE_OPTIONS)) as client:
        for session in FIXTURES["sessions"]:
            response = await client.get("/dump", headers={"cookie": session["cookie"]})
            assert response.json() == session["body_after_two_writes"]


async def test_a_node_session_written_by_us_keeps_the_node_shape(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    row = FIXTURES["rows"][0]
    data, expires = _moved_into_the_future(row)
    await insert_row(engine, row["sid"], data, expires)
    async with client_for(make_app(store, **NODE_OPTIONS)) as client:
        response = await client.post("/increment", headers={"cookie": FIXTURES["sessions"][0]["cookie"]})
    assert response.json() == {"n": 3}
    stored = (await rows(engine))[row["sid"]]
    node_data = json.loads(row["data"])
    ours = json.loads(stored["data"])
    # A loaded session is merged into its row key by key, so the key order (and, on PostgreSQL, the
    # spacing of jsonb's text) may differ from JSON.stringify's; JSON.parse reads it all the same.
    assert set(ours) == set(node_data)
    assert set(ours["cookie"]) == set(node_data["cookie"])
    assert ours["cookie"]["originalMaxAge"] == node_data["cookie"]["originalMaxAge"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ours["cookie"]["expires"])
    assert stored["id"] == row["id"]


async def test_a_new_session_has_the_shape_express_session_writes(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    async with client_for(make_app(store, **NODE_OPTIONS)) as client:
        response = await client.post("/increment")
    (stored,) = (await rows(engine)).values()
    text = stored["data"]
    assert re.fullmatch(
        r'\{"cookie":\{"originalMaxAge":604800000,"expires":"[0-9T:.-]{23}Z","httpOnly":true,"path":"/"\},"n":1\}',
        text,
    ), text
    header = response.headers["set-cookie"]
    assert re.fullmatch(r"connect\.sid=s%3A[\w-]{32}\.[\w%]+; Path=/; Expires=[\w ,:]+ GMT; HttpOnly", header)
