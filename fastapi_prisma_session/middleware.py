"""`SessionMiddleware`: the pure-ASGI middleware that gives each request its session.

It reads the signed cookie, has `SessionLifecycle` load the session before the app runs and commit it
when the response starts, and adds the Set-Cookie header. It answers 503 when the store is down, and
500 when the database is not set up for it, with one log line each.

Mistakes in setting it up surface when the app starts (startup.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Literal

from .cookies import CookieAttributes, Priority, SameSite, Secure, path_matches
from .durations import Duration
from .exceptions import ConfigurationError
from .lifecycle import COMMIT, DEFAULT_MAX_AGE, HEADERS, Rolling, SessionLifecycle, Unset
from .logs import middleware_logger as logger
from .responses import TELEMETRY_KEY, add_session_headers, refuse
from .session import Session, state_of
from .session_ids import GenId
from .signing import Signer, warn_if_short
from .startup import REFUSALS, BuiltOrReported, run_lifespan, twice
from .store import PrismaSessionStore

# Schemes of a request that came over TLS.
SECURE_SCHEMES = frozenset(("https", "wss"))

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SessionMiddleware(metaclass=BuiltOrReported):
    """Server-side sessions for Starlette and FastAPI, cookie-compatible with express-session.

    Args:
        app: the ASGI app to wrap.
        store: where sessions live.
        secret: the key that signs the cookie, or a list of keys: the first signs, all verify (rotation).
        cookie_name: the cookie's name; express-session's default is `connect.sid`.
        max_age: cookie and session lifetime (seconds or a timedelta); None: a browser-session cookie.
        path, domain, httponly, samesite, partitioned, priority: the cookie's attributes.
        secure: True, False, or "auto" (Secure when the request came over https).
        proxy: trust `X-Forwarded-Proto` when deciding whether the request is https (and, with the
            store's `devices`, `X-Forwarded-For` for the client's address).
        rolling: True: every response re-sends the cookie with a fresh expiry and moves the row's, as
            express-session's (a route that never used the session loads it for that). "throttled": both
            at most once per `touch_after`, on the requests that load the session.
        resave: save a loaded session on every response even when it was not modified (as in
            express-session, that alone does not re-send the cookie).
        save_uninitialized: save new sessions never modified (off: anonymous traffic costs no rows).
        unset: when the app removes `scope["session"]`, "keep" leaves the stored row, "destroy" deletes it.
        genid: `callable() -> str` or `callable(request) -> str` (given the Starlette `Request`) that
            makes new session ids; default 24 random bytes, URL-safe.
        touch_after: seconds that must pass before an unchanged session's expiry is rewritten, with
            rolling="throttled" and for browser-session cookies; default a tenth of its lifetime.
        absolute_timeout: seconds after which a session ends however active it is (OWASP's absolute
            timeout; `max_age` is the idle one). Default: none.
        autoload: load the session before the app runs, so that sync code can use `request.session`:
            True for every path, or regular expressions of the paths that need it. Elsewhere a session is
            loaded on first use (`Depends(get_session)`, `await load_session(request)`), and a route
            that never uses it costs no query.
        exclude: regular expressions of paths that get no session at all (static files, health checks).

    Invalid options raise `ConfigurationError` (a missing one, `TypeError`) when the middleware is built:
    at once when you build it, and at the app's startup when `app.add_middleware` has Starlette build it.
    A request that another session middleware has already given a session raises `ConfigurationError`:
    the middleware was added twice.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: PrismaSessionStore,
        secret: str | Sequence[str],
        cookie_name: str = "connect.sid",
        max_age: Duration | None = DEFAULT_MAX_AGE,
        path: str = "/",
        domain: str | None = None,
        secure: Secure = "auto",
        httponly: bool = True,
        samesite: SameSite | Literal[False] | None = "lax",
        partitioned: bool = False,
        priority: Priority | None = None,
        rolling: Rolling = False,
        resave: bool = False,
        save_uninitialized: bool = False,
        unset: Unset = "keep",
        genid: GenId | None = None,
        proxy: bool = False,
        touch_after: Duration | None = None,
        absolute_timeout: Duration | None = None,
        autoload: bool | Sequence[str] = False,
        exclude: Sequence[str] = (),
    ) -> None:
        self.app = app
        if not isinstance(store, PrismaSessionStore):
            raise ConfigurationError(
                "store must be a PrismaSessionStore, e.g. PrismaSessionStore(DATABASE_URL)"
            )
        self.store = store
        self._telemetry = store.telemetry  # set when the store is made, never after
        samesite = None if samesite is False else samesite
        self.cookie = CookieAttributes(
            cookie_name, path, domain, secure, httponly, partitioned, priority, samesite
        )
        self.lifecycle = SessionLifecycle(
            store,
            Signer(secret),
            self.cookie,
            max_age=max_age,
            rolling=rolling,
            resave=resave,
            save_uninitialized=save_uninitialized,
            unset=unset,
            genid=genid,
            touch_after=touch_after,
            absolute_timeout=absolute_timeout,
            proxy=proxy,
        )
        warn_if_short(secret)
        self._proxy = proxy
        # autoload=True is the pattern that matches every path.
        self._autoload = _paths(
            "autoload", ([""] if autoload else []) if isinstance(autoload, bool) else autoload
        )
        self._exclude = _paths("exclude", exclude)
        # Every request gets a session (the cookie's path is "/" and nothing is excluded): no path test.
        self._every_path = self.cookie.path == "/" and self._exclude is None
        # A path test, or each request recorded (telemetry): what most apps never need, in one test.
        self._screens = not self._every_path or self._telemetry is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await run_lifespan(self, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self._screens:
            # Only requests the browser sends the cookie with: inside the cookie's path, as browsers match
            # it. Patterns name paths of the app the middleware wraps: inside a Mount, without its prefix.
            exclude = self._exclude
            if not self._every_path and (
                not path_matches(path, self.cookie.path)
                or (exclude is not None and exclude.match(path.removeprefix(scope.get("root_path", ""))))
            ):
                await self.app(scope, receive, send)
                return
            telemetry = self._telemetry
            if telemetry is not None and TELEMETRY_KEY not in scope:  # telemetry.py records it
                await telemetry.request(self, scope, receive, send)  # and calls this again
                return
        if "session" in scope:
            raise ConfigurationError(twice(scope["session"], path))
        lifecycle = self.lifecycle
        secure = scope.get("scheme") in SECURE_SCHEMES or (self._proxy and _forwarded_https(scope))
        sid = None  # and without a Cookie header, none to look for
        for name, _ in scope["headers"]:
            if name == b"cookie":
                sid = self._session_id(scope)
                break
        autoload = self._autoload
        if autoload is not None and autoload.match(path.removeprefix(scope.get("root_path", ""))):
            if sid is None:
                session = lifecycle.new(secure, scope)
            else:
                try:
                    session = await lifecycle.load(sid, secure, scope)
                except REFUSALS as error:
                    await refuse(scope, send, error)
                    return
        else:
            # Unloaded, with a cookie or without: sync code that reads `request.session` unloaded learns
            # it on its first request, not on the second (a new session's load sends no query).
            session = Session(lifecycle, sid, secure, False, scope)
        scope["session"] = session
        try:
            scope["state"]["session"] = session  # the server's dict
        except (KeyError, TypeError):
            scope["state"] = {"session": session}  # a server that gives none (or None)
        exchange = _Exchange(lifecycle, scope, send, session)
        try:
            await self.app(scope, receive, exchange.http if kind == "http" else exchange.websocket)
        except REFUSALS as error:
            # The route loaded its session (on first use) while the database was down: a 503 when the
            # response has not started, a close with 1011 for a websocket before or after its accept.
            # A database not set up for the store (the table dropped meanwhile): a 500, the same way.
            if exchange.answered:
                raise
            await refuse(scope, send, error)

    def shares_requests_with(self, other: SessionMiddleware) -> bool:
        """Whether some request surely reaches both: their cookie paths nest and neither excludes paths.

        Two cookie paths cover a request in common exactly when one of them covers the other."""
        mine, theirs = self.cookie.path, other.cookie.path
        nested = path_matches(mine, theirs) or path_matches(theirs, mine)
        return nested and self._exclude is None and other._exclude is None

    def _session_id(self, scope: Scope) -> str | None:
        sid, rejected = self.lifecycle.signer.find_session_id(scope["headers"], self.cookie.name)
        if rejected and logger.isEnabledFor(logging.INFO):
            # Forged, tampered, or signed with a secret no longer configured: ignored before any query.
            logger.info(
                "rejected %d session cookie(s) without a valid signature from %s", rejected, _client(scope)
            )
        return sid


class _Exchange:
    """One request's messages to the server, through the middleware: the session committed as the
    response starts. A plain object rather than closures: the commonest request, whose route never used
    its session, costs one small object and a test per message."""

    __slots__ = ("answered", "failed", "lifecycle", "scope", "send", "session")

    def __init__(self, lifecycle: SessionLifecycle, scope: Scope, send: Send, session: Session) -> None:
        self.lifecycle = lifecycle
        self.scope = scope
        self.send = send
        self.session = session
        # answered: the app's answer can no longer be replaced by the middleware's own (a 503, or a
        # websocket close with 1011) when its session turns out to be unavailable. failed: it was.
        self.answered = self.failed = False

    def http(self, message: Message) -> Awaitable[None]:
        # A plain method, not a coroutine: a response that needs no commit passes through without one
        # more coroutine per message.
        if self.failed:
            return _drop(message)  # the app's response was replaced by a 503
        self.answered = True
        if message["type"] == "http.response.start":
            session = self.session
            kept = self.scope.get("session") is session
            lifecycle = self.lifecycle
            # The commonest response, a session the route never used on a store that saves no unused one,
            # needs nothing; at_response answers the rest.
            if session._loaded or not kept or lifecycle.commits_unused:
                action = lifecycle.at_response(session, kept)
                if action == COMMIT:
                    return self._commit_then_send(message, kept)
                if action == HEADERS:
                    add_session_headers(message, None)
        return self.send(message)

    async def _commit_then_send(self, message: Message, kept: bool) -> None:
        session = self.session
        try:
            set_cookie = await self.lifecycle.commit(session, kept=kept, failed=message["status"] >= 500)
        except REFUSALS as error:
            self.failed = True
            await refuse(self.scope, self.send, error)
            return
        if set_cookie is not None or state_of(session).accessed:
            add_session_headers(message, set_cookie)
        await self.send(message)

    async def websocket(self, message: Message) -> None:
        # A websocket handshake cannot set cookies: its session is there to read. An accepted socket can
        # still be closed with 1011; one the app closed, or refused with an HTTP response of its own,
        # cannot.
        if message["type"] not in ("websocket.accept", "websocket.send"):
            self.answered = True
        await self.send(message)


def _forwarded_https(scope: Scope) -> bool:
    """With `proxy`: the first X-Forwarded-Proto says https."""
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            return bool(value.split(b",", 1)[0].strip().lower() == b"https")
    return False


def _paths(option: str, patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression matching a path that any of `patterns` matches from its start."""
    if isinstance(patterns, str):
        patterns = [patterns]
    try:
        return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None
    except (re.error, TypeError) as error:
        raise ConfigurationError(f"{option} must be regular expressions of paths: {error}") from None


async def _drop(message: Message) -> None:
    """Send nothing: a message of a response that was replaced by a 503."""


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "an unknown client"
