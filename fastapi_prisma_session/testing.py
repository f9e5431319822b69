"""Helpers for testing your own routes without logging in through the UI (the pytest fixtures built on
them are in `pytest_plugin`).

    from fastapi_prisma_session.testing import create_session, read_session

    async def test_profile(client: httpx.AsyncClient) -> None:       # client on your app
        client.cookies.update(await create_session(app, {"user_id": 42}))
        assert (await client.get("/profile")).status_code == 200
        assert (await read_session(app, client))["user_id"] == 42

Both take your app (FastAPI or Starlette, with `SessionMiddleware` added) and use its store, secret and
cookie name. The session is written to the store's database, exactly as a request would write it; to
keep tests off your app's real database, run them inside `use_database(app, test_database_url)`. A
client whose routes log in (`regenerate()`) should keep one cookie per name, as a browser does:
`one_cookie_per_name(client)`, which the `session_client` fixture uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .cookies import COOKIE_KEY
from .middleware import SessionMiddleware
from .startup import Unbuilt
from .store import PrismaSessionStore

if TYPE_CHECKING:
    import httpx
    from starlette.types import Receive, Scope, Send


@asynccontextmanager
async def use_database(app: Any, database_url: str) -> AsyncIterator[PrismaSessionStore]:
    """Within the block, the session store of `app` works on `database_url` (a test database), with
    its table created if missing and emptied; the store is yielded.

    It is the same store object, with the same options, so routes that call it directly use the test
    database too. At the end its connections are closed, in the running event loop (connections belong
    to the loop that opened them, and each test may have its own), and it goes back to its own database.
    """
    store = session_middleware(app).store
    stand_in = PrismaSessionStore(database_url, **store.options)
    own = dict(vars(store))
    vars(store).update(vars(stand_in))
    try:
        await store.create_table()
        await store.clear()
        yield store
    finally:
        try:
            await store.shutdown()
        finally:
            vars(store).clear()
            vars(store).update(own)


async def create_session(app: Any, data: Mapping[str, Any]) -> dict[str, str]:
    """Store a new session holding `data`; returns the cookie that carries it, for `client.cookies`."""
    lifecycle = session_middleware(app).lifecycle
    session = lifecycle.new(secure=False)
    session.update(data)
    await lifecycle.save(session)
    return {lifecycle.cookie.name: lifecycle.cookie_value(session.id)}


async def read_session(app: Any, client: httpx.AsyncClient | Mapping[str, str]) -> dict[str, Any] | None:
    """The data of the session the app would read from a client's cookies (without express-session's
    `cookie` key), or None when they carry no valid session cookie or the session is gone.

    With an httpx client, the cookies are the ones it would send to the app (its base URL, under the
    cookie's path), in the order it sends them: the app takes the first validly signed one, and so does
    this."""
    middleware = session_middleware(app)
    name = middleware.cookie.name
    if isinstance(client, Mapping):
        header = f"{name}={client[name]}" if name in client else ""
    else:
        request = client.build_request("GET", client.base_url.join(middleware.cookie.path))
        header = request.headers.get("cookie", "")
    sid, _ = middleware.lifecycle.signer.find_session_id([(b"cookie", header.encode("latin-1"))], name)
    data = None if sid is None else await middleware.store.get(sid)
    if data is not None:
        data.pop(COOKIE_KEY, None)
    return data


def one_cookie_per_name(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Have `client` keep one cookie per name, as a browser keeps one session cookie for a site: each
    cookie a response sets (or clears) replaces every cookie of that name in the client's jar.

    httpx keys its jar by domain: a cookie a test puts there has none, a response's has the server's
    (`testserver.local`), so after a login's new cookie both would be sent, the stale one first, and the
    app would read the session the login ended. Returns `client`."""

    async def replace_same_named(response: httpx.Response) -> None:
        names = {header.partition("=")[0].strip() for header in response.headers.get_list("set-cookie")}
        if not names:
            return
        jar = client.cookies.jar
        for cookie in [cookie for cookie in jar if cookie.name in names]:
            jar.clear(cookie.domain, cookie.path, cookie.name)
        client.cookies.extract_cookies(response)  # the response's cookies alone, as it set them

    hooks = client.event_hooks
    client.event_hooks = {"request": hooks["request"], "response": [*hooks["response"], replace_same_named]}
    return client


def session_middleware(app: Any) -> SessionMiddleware:
    """A SessionMiddleware configured like the one added to `app` (or `app` itself, if it is one)."""
    if isinstance(app, SessionMiddleware):
        return app
    for entry in getattr(app, "user_middleware", ()):
        if entry.cls is SessionMiddleware:
            middleware = SessionMiddleware(_no_app, *entry.args, **entry.kwargs)
            if isinstance(middleware, Unbuilt):  # built in a running event loop: reported, not raised
                raise middleware.error
            return middleware
    raise ValueError(
        "this app has no SessionMiddleware: add it with app.add_middleware(SessionMiddleware, ...)"
    )


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the testing helpers never call the app")
