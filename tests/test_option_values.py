"""Values checked where they are given (issue 24, item 4): durations in milliseconds are refused with the
value meant, and a short secret is warned about when the app starts."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware
from fastapi_prisma_session.cookies import SessionCookie
from fastapi_prisma_session.durations import to_seconds
from fastapi_prisma_session.signing import MIN_SECRET_LENGTH

LONG_SECRET = "k" * MIN_SECRET_LENGTH
ESCAPE = " (to mean {0} s, pass datetime.timedelta(seconds={0}))"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


async def start_and_stop(app: FastAPI) -> list[str]:
    """Run the app's lifespan as a server does, its startup then its shutdown; the message types it sent."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    try:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    finally:
        await app.user_middleware[0].kwargs["store"].shutdown()
    return sent


def middleware(url: str, **options: Any) -> SessionMiddleware:
    return SessionMiddleware(FastAPI(), store=PrismaSessionStore(url), **{"secret": LONG_SECRET, **options})


# -- the three examples, word for word --------------------------------------------------------


def test_max_age_in_milliseconds_is_refused_with_the_value_meant(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        middleware(sqlite_url, max_age=604800000)
    expected = "max_age is in seconds; 604800000 s is 19 years; did you mean 604800?"
    assert str(refused.value) == expected + ESCAPE.format(604800000)


def test_check_period_in_milliseconds_is_refused_with_the_value_meant(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        PrismaSessionStore(sqlite_url, check_period=120000)
    expected = "check_period is in seconds; 120000 s is 1.4 days; did you mean 120?"
    assert str(refused.value) == expected + ESCAPE.format(120000)


def test_ttl_in_milliseconds_is_refused_with_the_value_meant(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        PrismaSessionStore(sqlite_url, ttl=86_400_000)
    expected = "ttl is in seconds; 86400000 s is 2.7 years; did you mean 86400?"
    assert str(refused.value) == expected + ESCAPE.format(86400000)


# -- every option, and what stays accepted --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_age": 2_592_000_000.0},
            "max_age is in seconds; 2592000000 s is 82 years; did you mean 2592000?",
        ),
        ({"absolute_timeout": 43_200_000}, "absolute_timeout is in seconds; 43200000 s is 1.4 years"),
        ({"absolute_timeout": 86_400_000}, "did you mean 86400?"),
        # touch_after: above the session's max_age it would never be due (default max_age: 14 days)
        ({"touch_after": 3_600_000}, "touch_after is in seconds; 3600000 s is 42 days; did you mean 3600?"),
        ({"touch_after": 60_000, "max_age": 3600}, "touch_after is in seconds; 60000 s is 17 hours"),
        ({"touch_after": 86_400_000, "max_age": None}, "did you mean 86400?"),
    ],
)
def test_each_middleware_duration_is_checked(sqlite_url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        middleware(sqlite_url, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"check_period": 600_000}, "check_period is in seconds; 600000 s is 6.9 days; did you mean 600?"),
        ({"check_period": 3_600_000.0}, "did you mean 3600?"),
        ({"ttl": timedelta(days=1), "check_period": 100_000}, "did you mean 100?"),
        ({"ttl": 1_209_600_000}, "ttl is in seconds; 1209600000 s is 38 years; did you mean 1209600?"),
    ],
)
def test_each_store_duration_is_checked(sqlite_url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        PrismaSessionStore(sqlite_url, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"max_age": 400 * 86400},  # the longest cookie browsers keep, in seconds
        {"max_age": 400 * 86400 + 1},  # above it, but not a whole number of thousands
        {"max_age": 10 * 365 * 86400 + 0.5},
        {"max_age": timedelta(seconds=604800000)},  # a timedelta names its unit: taken as it is
        {"absolute_timeout": timedelta(days=3650)},
        {"touch_after": 5 * 86400, "max_age": 14 * 86400},  # under max_age: a plausible number of seconds
        {"touch_after": 1_000_000, "max_age": timedelta(days=30)},
    ],
)
def test_durations_that_are_plausible_in_seconds_are_accepted(
    sqlite_url: str, options: dict[str, Any]
) -> None:
    built = middleware(sqlite_url, **options)
    assert built.lifecycle.max_age is not None


@pytest.mark.parametrize(
    "options",
    [
        {"check_period": 86400},  # daily
        {"check_period": 90_061},  # above a day, not a whole number of thousands
        {"check_period": 120},
        {"check_period": timedelta(seconds=120000)},
        {"ttl": 365 * 86400},
        {"ttl": timedelta(days=1000)},
    ],
)
def test_store_durations_that_are_plausible_are_accepted(sqlite_url: str, options: dict[str, Any]) -> None:
    store = PrismaSessionStore(sqlite_url, **options)
    assert store.options["check_period"] == options.get("check_period")


def test_a_value_in_milliseconds_of_milliseconds_gets_the_plain_message() -> None:
    # A thousandth of it would be refused too: no suggestion to give, only the bound.
    with pytest.raises(ConfigurationError, match="must be a finite number of seconds up to"):
        to_seconds(604_800_000_000, "max_age", ceiling=400 * 86400)


def test_a_cookie_max_age_set_in_a_route_is_checked() -> None:
    cookie = SessionCookie(60.0)
    with pytest.raises(
        ConfigurationError, match=re.escape("max_age is in seconds; 2592000000 s is 82 years")
    ):
        cookie.max_age = 30 * 24 * 3600 * 1000
    cookie.max_age = 30 * 24 * 3600
    assert cookie.original_max_age == 30 * 24 * 3600


async def test_a_ttl_function_that_returns_milliseconds_is_refused(sqlite_url: str) -> None:
    store = PrismaSessionStore(sqlite_url, ttl=lambda options, session, sid: 3_600_000 * 24)
    try:
        await store.create_table()
        with pytest.raises(ConfigurationError, match=re.escape("the ttl function's result is in seconds")):
            await store.set("s", {"cookie": {"originalMaxAge": None, "expires": None}})
        assert await store.length() == 0  # nothing was written
    finally:
        await store.shutdown()


async def test_an_app_with_a_duration_in_milliseconds_does_not_start(sqlite_url: str) -> None:
    app = FastAPI()
    store = PrismaSessionStore(sqlite_url)
    app.add_middleware(SessionMiddleware, store=store, secret=LONG_SECRET, max_age=604800000)
    sent: list[str] = []
    with pytest.raises(ConfigurationError, match=re.escape("did you mean 604800?")):
        sent = await start_and_stop(app)  # the lifespan's startup builds the middleware, and fails
    assert sent == []


# -- the secret ------------------------------------------------------------------------------------------


def warnings_about_secrets(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "fastapi_prisma_session.signing" and record.levelno == logging.WARNING
    ]


async def test_a_short_secret_is_warned_about_when_the_app_starts(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PrismaSessionStore(sqlite_url)
    await store.create_table()  # the startup's table check passes, so the startup completes
    await store.shutdown()
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, secret="x")
    caplog.set_level(logging.WARNING, logger="fastapi_prisma_session")
    assert warnings_about_secrets(caplog) == []  # added, not yet built
    assert await start_and_stop(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    [warning] = warnings_about_secrets(caplog)  # a warning, and the app runs
    assert warning.startswith("secret is 1 character long: a short secret can be found offline")
    assert "OWASP's Session Management Cheat Sheet" in warning
    assert "python -c 'import secrets; print(secrets.token_urlsafe(32))'" in warning
    assert f"{MIN_SECRET_LENGTH} characters or more" in warning


def test_each_secret_of_a_rotation_list_is_checked(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_prisma_session")
    secrets = [LONG_SECRET, "old and short", "k" * (MIN_SECRET_LENGTH - 1)]
    middleware(sqlite_url, secret=secrets)
    warnings = warnings_about_secrets(caplog)
    assert [warning.split(":")[0] for warning in warnings] == [
        "secret 2 of 3 is 13 characters long",
        f"secret 3 of 3 is {MIN_SECRET_LENGTH - 1} characters long",
    ]
    assert not any("old and short" in warning for warning in warnings)  # never the secret itself


def test_a_long_secret_is_not_warned_about(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_prisma_session")
    middleware(sqlite_url, secret=[LONG_SECRET, "z" * 64])
    assert warnings_about_secrets(caplog) == []
