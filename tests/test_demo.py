"""The demo app, in process on SQLite: count visits (a typed session), log in (new id), log out, see
and log out your devices, every form with the session's CSRF token."""

from __future__ import annotations

import base64
import importlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.helpers import client_for

# The demo encrypts the session data when SESSION_ENCRYPTION_KEYS is set: every test runs both ways.
DEMO_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


@pytest.fixture(params=["plain", "encrypted"])
async def demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[ModuleType]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    if request.param == "encrypted":
        monkeypatch.setenv("SESSION_ENCRYPTION_KEYS", DEMO_KEY)
    else:
        monkeypatch.delenv("SESSION_ENCRYPTION_KEYS", raising=False)
    import demo.app

    module = importlib.reload(demo.app)
    await module.store.create_table()
    yield module
    await module.store.shutdown()


def session_prefix(page: httpx.Response) -> str:
    found = re.search(r"Session <code>([\w-]+)…</code>", page.text)
    assert found is not None
    return found.group(1)


def token_in(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def post_form(client: httpx.AsyncClient, action: str, **fields: str) -> httpx.Response:
    """What the browser does: the form of the page, with its hidden token."""
    token = token_in(await client.get("/"))
    return await client.post(action, data={"csrf_token": token, **fields}, follow_redirects=True)


async def test_count_log_in_and_log_out(demo: ModuleType) -> None:
    async with client_for(demo.app) as client:
        first = await client.get("/")
        assert "Visits in this session: <strong>1</strong>" in first.text
        assert "Not logged in" in first.text
        second = await client.get("/")
        assert "<strong>2</strong>" in second.text

        token = token_in(second)
        logged_in = await client.post(
            "/login", data={"csrf_token": token, "username": "ann <b>"}, follow_redirects=True
        )
        assert "Logged in as <strong>ann &lt;b&gt;</strong>" in logged_in.text
        assert "<strong>3</strong>" in logged_in.text  # regenerate kept the visits
        assert session_prefix(logged_in) != session_prefix(second)
        assert token_in(logged_in) != token  # a new id, a new token

        logged_out = await client.post(
            "/logout", data={"csrf_token": token_in(logged_in)}, follow_redirects=True
        )
        assert "Not logged in" in logged_out.text
        assert "<strong>1</strong>" in logged_out.text
    assert await demo.store.length() == 1  # the visit after logout; the logged-in session is gone


def device_rows(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr class="device[^"]*">.*?</tr>', page.text, re.S)


async def test_a_user_sees_their_devices_and_logs_one_out(demo: ModuleType) -> None:
    async with client_for(demo.app) as phone, client_for(demo.app) as laptop, client_for(demo.app) as bob:
        phone.headers["user-agent"] = "Mozilla/5.0 (Linux; Android 14) Firefox/128.0"
        laptop.headers["user-agent"] = "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 Safari/537.36"
        await post_form(phone, "/login", username="ada")
        page = await post_form(laptop, "/login", username="ada")
        await post_form(bob, "/login", username="bob")
        assert '<a id="devices-link" href="/devices">Your devices (2)</a>' in page.text

        devices = await laptop.get("/devices")
        laptops, phones = device_rows(devices)
        assert 'class="device this-device"' in laptops
        assert "Chrome on Windows" in laptops
        assert "This device" in laptops
        assert "Firefox on Android" in phones
        assert "127.0.0.1" in phones
        assert "Log out all other devices" in devices.text
        assert "<th>First seen</th>" in devices.text  # a login keeps its record: not "Logged in"
        phone_sid = session_prefix(await phone.get("/"))
        assert phone_sid not in devices.text  # the page names sessions by handles, never by their ids

        handle = re.search(r'name="handle" value="([^"]+)"', phones)
        assert handle is not None
        after = await laptop.post(
            "/devices/revoke",
            data={"csrf_token": token_in(devices), "handle": handle.group(1)},
            follow_redirects=True,
        )
        assert len(device_rows(after)) == 1
        assert "Not logged in" in (await phone.get("/")).text
        assert "Logged in as <strong>bob</strong>" in (await bob.get("/")).text


async def test_a_user_logs_out_their_other_devices(demo: ModuleType) -> None:
    async with client_for(demo.app) as phone, client_for(demo.app) as laptop:
        await post_form(phone, "/login", username="ada")
        await post_form(laptop, "/login", username="ada")
        devices = await laptop.get("/devices")
        page = await laptop.post(
            "/devices/revoke-others", data={"csrf_token": token_in(devices)}, follow_redirects=True
        )
        assert len(device_rows(page)) == 1
        assert "Log out all other devices" not in page.text
        assert "Logged in as <strong>ada</strong>" in (await laptop.get("/")).text  # the laptop stays
        assert "Not logged in" in (await phone.get("/")).text
        # Logged out, the page sends you home.
        assert (await phone.get("/devices")).headers["location"] == "/"


async def test_the_forms_refuse_a_post_without_the_sessions_token(demo: ModuleType) -> None:
    async with client_for(demo.app) as client, client_for(demo.app) as attacker:
        page = await client.get("/")
        stolen = token_in(await attacker.get("/"))
        for action in ("/login", "/logout", "/devices/revoke", "/devices/revoke-others"):
            response = await client.post(action, data={"username": "eve", "handle": "h"})
            assert response.status_code == 403, action
            response = await client.post(
                action, data={"csrf_token": stolen, "username": "eve", "handle": "h"}
            )
            assert response.status_code == 403, action
        assert "Not logged in" in (await client.get("/")).text
        assert token_in(page) == token_in(await client.get("/"))


async def test_a_session_that_does_not_fit_the_model_starts_afresh(demo: ModuleType) -> None:
    async with client_for(demo.app) as client:
        await post_form(client, "/login", username="ann")
        [sid] = await demo.store.ids()
        data = await demo.store.get(sid)
        assert data is not None
        await demo.store.set(sid, {**data, "visits": "many"})
        page = await client.get("/")
        assert page.status_code == 200
        assert "Not logged in" in page.text
        assert "Visits in this session: <strong>1</strong>" in page.text


async def test_with_keys_the_demo_stores_no_user_name_in_plain_text(demo: ModuleType) -> None:
    async with client_for(demo.app) as client:
        page = await post_form(client, "/login", username="grace")
        assert "Logged in as <strong>grace</strong>" in page.text
    async with demo.store.engine.connect() as conn:
        texts = (await conn.exec_driver_sql('SELECT data FROM "Session"')).scalars().all()
    assert len(texts) == 2  # the session, and the marker its move on log in left (no data in it)
    encrypted = demo.store.rows.encryption is not None
    assert any("grace" in text for text in texts) is not encrypted
    assert any('"__encrypted":"v1.' in text for text in texts) is encrypted


async def test_with_session_telemetry_console_the_store_prints_its_spans_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.setenv("SESSION_TELEMETRY", "console")
    monkeypatch.delenv("SESSION_ENCRYPTION_KEYS", raising=False)
    import demo.app

    module = importlib.reload(demo.app)
    telemetry = module.store.options["telemetry"]
    try:
        async with module.lifespan(module.app), client_for(module.app) as client:
            assert "<strong>1</strong>" in (await client.get("/")).text
            assert "<strong>2</strong>" in (await client.get("/")).text
    finally:
        await module.store.shutdown()
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()  # prints the metrics a last time
    printed = capfd.readouterr().out
    spans = re.findall(r'^    "name": "(\w+ Session)",$', printed, flags=re.M)  # ConsoleSpanExporter's JSON
    assert spans == ["save Session", "load Session", "save Session"]
    for metric in ("prisma_session.request.statements", "db.client.connection.wait_time"):
        assert f'"name": "{metric}"' in printed
