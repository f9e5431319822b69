"""A drop-in for Starlette's SessionMiddleware: each behaviour a user can observe, run against Starlette's
middleware and ours with the same options, through real HTTP (httpx's ASGITransport), outcomes compared.

Ours runs as docs/guides/starlette.md sets it up: a SQLite file, `autoload=True`, and Starlette's
options by our names (secret_key→secret, session_cookie→cookie_name, https_only→secure,
same_site→samesite; max_age, path, domain and partitioned as they are). Where ours differs by design,
the test says how and checks ours: the cookie's lifetime as Expires rather than Max-Age, attribute names
capitalised, a zero max_age refused, and a cleared session kept (empty) rather than its cookie deleted.
Routes return `dict(request.session)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware
from tests.helpers import SECRET, close_to

# Starlette's option → ours.
OUR_NAMES = {
    "secret_key": "secret",
    "session_cookie": "cookie_name",
    "https_only": "secure",
    "same_site": "samesite",
}
KINDS = ("starlette", "ours")


async def show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def noop(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})  # never touches the session


def mutation(change: Callable[[Any, dict[str, str]], object]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        change(request.session, dict(request.query_params))
        return JSONResponse(dict(request.session))

    return endpoint


def _append_in_place(session: Any, query: dict[str, str]) -> None:
    session["items"].append(query["v"])  # no assignment: neither middleware sees it


MUTATIONS: dict[str, Callable[[Any, dict[str, str]], object]] = {
    "set": lambda session, query: session.__setitem__(query["k"], query["v"]),
    "set-list": lambda session, query: session.__setitem__("items", [query["v"]]),
    "append-in-place": _append_in_place,
    "delete": lambda session, query: session.__delitem__(query["k"]),
    "pop": lambda session, query: session.pop(query["k"], None),
    "setdefault": lambda session, query: session.setdefault(query["k"], query["v"]),
    "update": lambda session, query: session.update({query["k"]: query["v"], "nested": {"n": [1, 2]}}),
    "clear": lambda session, query: session.clear(),
}


def routes(prefix: str = "") -> list[Route]:
    made = [Route(f"{prefix}/show", show), Route(f"{prefix}/noop", noop)]
    made += [
        Route(f"{prefix}/{name}", mutation(change), methods=["POST"]) for name, change in MUTATIONS.items()
    ]
    return made


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"

    async def create() -> None:
        async with PrismaSessionStore(url) as store:
            await store.create_table()

    asyncio.run(create())
    return url


@asynccontextmanager
async def client(
    kind: str, url: str, base_url: str = "http://testserver", prefix: str = "", **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app behind Starlette's middleware or ours, given Starlette's `options`."""
    app = Starlette(routes=routes(prefix))
    options = {"secret_key": SECRET, **options}
    store = None
    if kind == "starlette":
        app.add_middleware(StarletteSessionMiddleware, **options)
    else:
        # Starlette's defaults where ours differ: its cookie is "session", never Secure unless https_only.
        ours = {
            "cookie_name": "session",
            "secure": False,
            **{OUR_NAMES.get(k, k): v for k, v in options.items()},
        }
        store = PrismaSessionStore(url)
        app.add_middleware(SessionMiddleware, store=store, autoload=True, **ours)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as http:
        yield http
    if store is not None:
        await store.shutdown()


def attributes(set_cookie: str) -> dict[str, str | bool]:
    """A Set-Cookie's attributes, names lowercased (ours are capitalised, Starlette's mostly not)."""
    found: dict[str, str | bool] = {}
    for part in set_cookie.split(";")[1:]:
        name, has_value, value = part.strip().partition("=")
        found[name.lower()] = value if has_value else True
    return found


def comparable(set_cookie: str) -> dict[str, str | bool]:
    """The attributes both middlewares send alike: all but the lifetime (Max-Age / Expires)."""
    found = attributes(set_cookie)
    found.pop("max-age", None)
    found.pop("expires", None)
    if isinstance(found.get("samesite"), str):
        found["samesite"] = str(found["samesite"]).lower()  # "Lax" here, "lax" in Starlette's
    return found


async def both(scenario: Callable[..., Any], url: str, **options: Any) -> dict[str, Any]:
    return {kind: await scenario(kind, url, **options) for kind in KINDS}


async def test_contents_persist_across_requests_and_mutations_that_count(store_url: str) -> None:
    async def scenario(kind: str, url: str) -> list[Any]:
        async with client(kind, url) as http:
            seen = [(await http.post("/set", params={"k": "user", "v": "alice"})).json()]
            for step in ["set-list", "append-in-place", "setdefault", "update", "pop", "delete"]:
                key = "user" if step == "delete" else "extra"
                seen.append((await http.post(f"/{step}", params={"k": key, "v": "b"})).json())
                seen.append((await http.get("/show")).json())  # what the next request finds
            return seen

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"] == outcomes["starlette"]
    # The in-place append was not saved by either; every assignment was.
    assert outcomes["ours"][4] == {"user": "alice", "items": ["b"]}
    assert outcomes["ours"][-1] == {"items": ["b"], "nested": {"n": [1, 2]}}


async def test_clearing_empties_the_session(store_url: str) -> None:
    async def scenario(kind: str, url: str) -> tuple[Any, Any, list[str]]:
        async with client(kind, url) as http:
            await http.post("/set", params={"k": "user", "v": "alice"})
            cleared = await http.post("/clear")
            return cleared.json(), (await http.get("/show")).json(), cleared.headers.get_list("set-cookie")

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"][:2] == outcomes["starlette"][:2] == ({}, {})
    # By design: Starlette deletes its cookie (the data was in it); ours keeps the id of an empty
    # session, whose cookie it re-sends as any changed session's. `await session.destroy()` ends it.
    assert "expires=Thu, 01 Jan 1970" in outcomes["starlette"][2][0]
    assert attributes(outcomes["ours"][2][0])["path"] == "/"


async def test_an_expired_session_is_gone(store_url: str) -> None:
    async def scenario(kind: str, url: str) -> tuple[Any, Any]:
        async with client(kind, url, max_age=1) as http:
            await http.post("/set", params={"k": "user", "v": "alice"})
            cookie = http.cookies["session"]
            before = (await http.get("/show")).json()
            await asyncio.sleep(2.1)  # Starlette's signature counts whole seconds
            http.cookies.clear()  # the browser would drop it; a replayed cookie must not work either
            return before, (await http.get("/show", headers={"cookie": f"session={cookie}"})).json()

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"] == outcomes["starlette"] == ({"user": "alice"}, {})


@pytest.mark.parametrize("forged", ["garbage", "tampered", "other-secret"])
async def test_an_invalid_cookie_gives_an_empty_session_and_no_set_cookie(
    store_url: str, forged: str
) -> None:
    async def scenario(kind: str, url: str) -> tuple[Any, list[str], Any]:
        async with client(kind, url) as http:
            await http.post("/set", params={"k": "user", "v": "alice"})
            real = http.cookies["session"]
            http.cookies.clear()
            value = {
                "garbage": "not-a-session",
                "tampered": real[:-3] + ("AAA" if real[-3:] != "AAA" else "BBB"),
            }
            if forged == "other-secret":
                async with client(kind, url, secret_key="another secret") as other:
                    await other.post("/set", params={"k": "user", "v": "mallory"})
                    value[forged] = other.cookies["session"]
            shown = await http.get("/show", headers={"cookie": f"session={value[forged]}"})
            written = await http.post(
                "/set", params={"k": "n", "v": "1"}, headers={"cookie": f"session={value[forged]}"}
            )
            return shown.json(), shown.headers.get_list("set-cookie"), written.json()

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"] == outcomes["starlette"] == ({}, [], {"n": "1"})


async def test_the_cookie_attributes_match(store_url: str) -> None:
    options = {
        "path": "/app",
        "domain": "example.com",
        "https_only": True,
        "partitioned": True,
        "same_site": "strict",
    }

    async def scenario(kind: str, url: str) -> tuple[dict[str, Any], Any]:
        async with client(kind, url, base_url="https://www.example.com", prefix="/app", **options) as http:
            written = await http.post("/app/set", params={"k": "user", "v": "alice"})
            again = await http.get("/app/show")  # the client sent the cookie back: path and domain fit
            return comparable(written.headers["set-cookie"]), again.json()

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"] == outcomes["starlette"]
    assert outcomes["ours"] == (
        {
            "path": "/app",
            "domain": "example.com",
            "httponly": True,
            "secure": True,
            "partitioned": True,
            "samesite": "strict",
        },
        {"user": "alice"},
    )


async def test_set_cookie_only_on_change_and_vary_only_on_access(store_url: str) -> None:
    async def scenario(kind: str, url: str) -> list[tuple[bool, str | None]]:
        async with client(kind, url) as http:
            seen = []
            for method, path in [
                ("GET", "/noop"),
                ("GET", "/show"),
                ("POST", "/set"),
                ("GET", "/show"),
                ("GET", "/noop"),
            ]:
                response = await http.request(method, path, params={"k": "user", "v": "alice"})
                seen.append(("set-cookie" in response.headers, response.headers.get("vary")))
            return seen

    outcomes = await both(scenario, store_url)
    assert outcomes["ours"] == outcomes["starlette"]
    assert outcomes["ours"] == [
        (False, None),
        (False, "Cookie"),
        (True, "Cookie"),
        (False, "Cookie"),
        (False, None),
    ]


@pytest.mark.parametrize("max_age", [3600, None])
async def test_the_lifetime_is_sent_as_expires_where_starlette_sends_max_age(
    store_url: str, max_age: int | None
) -> None:
    async def scenario(kind: str, url: str) -> dict[str, Any]:
        async with client(kind, url, max_age=max_age) as http:
            return attributes((await http.post("/set", params={"k": "u", "v": "a"})).headers["set-cookie"])

    outcomes = await both(scenario, store_url)
    if max_age is None:  # a cookie that ends with the browser session, in both
        assert not {"max-age", "expires"} & (outcomes["starlette"].keys() | outcomes["ours"].keys())
        return
    assert outcomes["starlette"]["max-age"] == str(max_age)
    # By design, ours sends express-session's Expires (the same moment, which old browsers read too).
    assert "max-age" not in outcomes["ours"]
    expires = parsedate_to_datetime(str(outcomes["ours"]["expires"]))
    assert close_to(expires, datetime.now(UTC) + timedelta(seconds=max_age))


def test_a_zero_max_age_is_refused(store_url: str) -> None:
    # Starlette sends Max-Age=0, a cookie deleted at once: a session that never comes back. Ours says so.
    app = Starlette(routes=routes())
    StarletteSessionMiddleware(app, secret_key=SECRET, max_age=0)  # accepted there
    with pytest.raises(ConfigurationError, match="max_age"):
        SessionMiddleware(app, store=PrismaSessionStore(store_url), secret=SECRET, max_age=0)
