"""The demo in a real browser: Debian's Chromium driven by Playwright, against uvicorn on loopback.

It logs in (through forms carrying the session's CSRF token), counts, logs another device out from the
"Your devices" page and logs out, and checks the cookie as the browser stored it. A failing run leaves
screenshots in test-artifacts/.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import IN_CI, serve

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
WEEK = 7 * 24 * 3600


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    with serve("demo.app:app", {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"}) as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if shutil.which(CHROMIUM) is None:
        message = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        await browser.close()


async def test_log_in_count_revoke_and_log_out_in_chromium(browser: Any, demo_url: str) -> None:
    laptop_context = await browser.new_context()
    phone_context = await browser.new_context()
    laptop, phone = await laptop_context.new_page(), await phone_context.new_page()
    try:
        await laptop.goto(demo_url + "/")
        assert await laptop.inner_text("#visits") == "Visits in this session: 1"
        await laptop.reload()
        assert await laptop.inner_text("#visits") == "Visits in this session: 2"
        before = await laptop.inner_text("#session")
        token = await laptop.get_attribute("input[name=csrf_token]", "value")
        assert token  # the form carries the session's CSRF token, which the POST checks

        await laptop.fill("input[name=username]", "ada")
        await laptop.click("text=Log in")
        assert await laptop.get_attribute("input[name=csrf_token]", "value") not in (None, token)
        assert await laptop.inner_text("#user") == "Logged in as ada"
        assert await laptop.inner_text("#visits") == "Visits in this session: 3"
        assert await laptop.inner_text("#session") != before  # a new id on login

        (cookie,) = [c for c in await laptop_context.cookies() if c["name"] == "connect.sid"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["path"] == "/"
        assert cookie["secure"] is False  # plain http: secure="auto" leaves it off
        assert abs(cookie["expires"] - (time.time() + WEEK)) < 120
        assert cookie["value"].startswith("s%3A")

        await phone.goto(demo_url + "/")
        await phone.fill("input[name=username]", "ada")
        await phone.click("text=Log in")
        assert await phone.inner_text("#devices-link") == "Your devices (2)"
        await phone.click("#devices-link")
        rows = phone.locator("#devices tr.device")
        assert await rows.count() == 2
        this = phone.locator("tr.this-device")
        assert "This device" in await this.inner_text()
        assert "Chrome on Linux" in await this.inner_text()  # Chromium's user agent, as recorded
        assert "127.0.0.1" in await this.inner_text()
        await phone.locator("tr.device:not(.this-device) button").click()  # the laptop's "Log out"
        assert await rows.count() == 1
        assert "This device" in await rows.inner_text()

        await laptop.reload()
        assert await laptop.inner_text("#user") == "Not logged in"  # revoked from the phone

        await phone.click("text=Back")
        assert await phone.inner_text("#user") == "Logged in as ada"
        await phone.click("text=Log out")
        assert await phone.inner_text("#user") == "Not logged in"
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        await laptop.screenshot(path=str(ARTIFACTS / "browser-laptop.png"), full_page=True)
        await phone.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
        raise
    finally:
        await laptop_context.close()
        await phone_context.close()
