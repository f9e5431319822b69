"""`SessionMiddleware`: the pure-ASGI middleware that gives each request its session.

It reads the signed cookie, has `SessionLifecycle` load the session before the app runs and commit it
when the response starts, and adds the Set-Cookie header. It answers 503 when the store is down, and
500 when the database is not set up for it, with one log line each.

Mistakes in setting it up surface when the app starts, not at its first request: Starlette builds its
middleware lazily, on the first call of the app, which under a server is the lifespan's startup. An
exception there reads to the server as "this app has no lifespan" (so the ASGI spec says), and uvicorn
would serve an app that fails every request. So a SessionMiddleware that cannot be built inside a running
event loop becomes a stand-in that fails the startup with the error (`lifespan.startup.failed`, as
Starlette's router reports its own startup errors), and one that finds another inside its requests fails
the startup too. Once the app's own startup is done, the database is looked at: a missing table, a table
of the wrong shape or a refused login fails the startup with one line that names the fix; a database
that does not answer is logged, and the app starts (routes without sessions work through its restart).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .cookies import CookieAttributes, Priority, SameSite, Secure, path_matches
from .deadlines import not_on_asyncio
from .durations import Duration
from .exceptions import ConfigurationError, StoreSetupError, StoreUnavailableError, TableMissingError
from .lifecycle import DEFAULT_MAX_AGE, GenId, Rolling, SessionLifecycle, Unset
from .logs import middleware_logger as logger
from .responses import TELEMETRY_KEY, add_session_headers, refuse
from .session import Session, state_of
from .signing import Signer, warn_if_short
from .store import PrismaSessionStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The lifespan scope's list of the SessionMiddleware instances it has passed, outermost first.
STACK_KEY = "fastapi_prisma_session.middleware"
# The database is not set up for the store: no table, a table of the wrong shape, a refused login. They
# stop the startup; at a request (the table dropped, the password changed meanwhile) they answer 500.
SETUP_ERRORS = (StoreSetupError, TableMissingError)
# What keeps a request from its session: answered by `responses.refuse` (503, or 500 for the above).
REFUSALS = (StoreUnavailableError, *SETUP_ERRORS)


class _BuiltOrReported(type):
    """Builds a SessionMiddleware; inside a running event loop (Starlette building its middleware at the
    app's first call), one that cannot be built becomes `Unbuilt`, which reports why at startup."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise error from None  # built by hand, at import: the caller sees it now
            return Unbuilt(error)

    @property
    def __signature__(cls) -> inspect.Signature:
        # What inspect shows for the class: its __init__'s parameters, not this __call__'s.
        init = inspect.signature(cls.__init__)  # type: ignore[misc]
        return init.replace(parameters=list(init.parameters.values())[1:])


class SessionMiddleware(metaclass=_BuiltOrReported):
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await (self._lifespan if kind == "lifespan" else self.app)(scope, receive, send)
            return
        path = scope["path"]
        # Patterns name paths of the app the middleware wraps: inside a Mount, without its prefix.
        route_path = path.removeprefix(scope.get("root_path", ""))
        # Only requests the browser sends the cookie with: inside the cookie's path, as browsers match it.
        if not self._every_path and (
            not path_matches(path, self.cookie.path)
            or (self._exclude is not None and self._exclude.match(route_path))
        ):
            await self.app(scope, receive, send)
            return
        if "session" in scope:
            raise ConfigurationError(_twice(scope["session"], path))
        if self.store.telemetry is not None and TELEMETRY_KEY not in scope:  # telemetry.py records it
            await self.store.telemetry.request(self, scope, receive, send)
            return
        lifecycle = self.lifecycle
        secure = self._request_is_secure(scope)
        sid = None  # and without a Cookie header, none to look for
        for name, _ in scope["headers"]:
            if name == b"cookie":
                sid = self._session_id(scope)
                break
        if self._autoload is not None and self._autoload.match(route_path):
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
            session = lifecycle.lazy(sid, secure, scope)
        scope["session"] = session
        scope.setdefault("state", {})["session"] = session
        if lifecycle.genid_takes_request:
            state_of(session).scope = scope
        # answered: the app's answer can no longer be replaced by the middleware's own (a 503, or a
        # websocket close with 1011) when its session turns out to be unavailable.
        answered = failed = False

        async def commit_then_send(message: Message, kept: bool) -> None:
            nonlocal failed
            try:
                set_cookie = await lifecycle.commit(session, kept=kept, failed=message["status"] >= 500)
            except REFUSALS as error:
                failed = True
                await refuse(scope, send, error)
                return
            if set_cookie is not None or state_of(session).accessed:
                add_session_headers(message, set_cookie)
            await send(message)

        # A plain function, not a coroutine: the commonest responses (a route that never used its session)
        # pass through without one more coroutine per message.
        def send_with_cookie(message: Message) -> Awaitable[None]:
            nonlocal answered
            if failed:
                return _drop(message)  # the app's response was replaced by a 503
            answered = True
            if message["type"] == "http.response.start":
                kept = scope.get("session") is session
                if lifecycle.wants_commit(session, kept):
                    return commit_then_send(message, kept)
            return send(message)

        async def websocket_send(message: Message) -> None:
            # A websocket handshake cannot set cookies: its session is there to read. An accepted socket
            # can still be closed with 1011; one the app closed, or refused with an HTTP response of its
            # own, cannot.
            nonlocal answered
            if message["type"] not in ("websocket.accept", "websocket.send"):
                answered = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie if kind == "http" else websocket_send)
        except REFUSALS as error:
            # The route loaded its session (on first use) while the database was down: a 503 when the
            # response has not started, a close with 1011 for a websocket before or after its accept.
            # A database not set up for the store (the table dropped meanwhile): a 500, the same way.
            if answered:
                raise
            await refuse(scope, send, error)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Served on trio (anyio runs Starlette on either): the drivers need asyncio. Said at startup,
            # once, rather than by every request's first statement.
            error = not_on_asyncio()
            await fail_startup(receive, send, error)
            raise error from None
        outer = scope.setdefault(STACK_KEY, [])
        for other in outer:
            if self._shares_requests_with(other):
                error = ConfigurationError(_twice(None, self.cookie.path))
                await fail_startup(receive, send, error)
                raise error
        outer.append(self)

        refused: Exception | None = None

        # The database is looked at once the app's own startup is done (which may create the table), and
        # pruning follows the app's lifespan, so users add nothing to theirs.
        async def lifespan_send(message: Message) -> None:
            nonlocal refused
            if refused is not None:
                return  # the app's own report of the refusal raised into it: the server has it already
            if message["type"] == "lifespan.startup.complete":
                refused = await self._check_database()
                if refused is not None:
                    await self.store.shutdown()
                    line = f"fastapi_prisma_session, on {_database(self.store)}: {refused}"
                    await send({"type": "lifespan.startup.failed", "message": line})
                    raise refused  # the app's lifespan ends; a TestClient raises it to the test
                self.store.start_interval()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.store.shutdown()
            await send(message)

        await self.app(scope, receive, lifespan_send)

    async def _check_database(self) -> Exception | None:
        """The error that must stop the startup (no table, a table of the wrong shape, a refused
        login), or None. An unreachable database does not: routes that use no session keep working,
        those that do answer 503 until it is back, and its table is looked at when it answers."""
        try:
            await self.store.check_table()
        except SETUP_ERRORS as error:
            return error
        except StoreUnavailableError as error:
            logger.warning(
                "fastapi_prisma_session, on %s: starting without the session database (%s); requests "
                "that use a session answer 503 until it answers",
                _database(self.store),
                error,
            )
        return None

    def _shares_requests_with(self, other: SessionMiddleware) -> bool:
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

    def _request_is_secure(self, scope: Scope) -> bool:
        if scope.get("scheme") in ("https", "wss"):
            return True
        if self._proxy:
            for name, value in scope["headers"]:
                if name == b"x-forwarded-proto":
                    return bool(value.split(b",", 1)[0].strip().lower() == b"https")
        return False


class Unbuilt:
    """Stands in for a SessionMiddleware that could not be built when Starlette built the app's middleware:
    it fails the app's startup with the error and, where there is no lifespan, raises it on every request."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self._traceback: TracebackType | None = error.__traceback__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await fail_startup(receive, send, self.error)
        # The traceback of the build each time, rather than one that grows with every request.
        raise self.error.with_traceback(self._traceback)


async def fail_startup(receive: Receive, send: Send, error: Exception) -> None:
    """Answer the lifespan's startup with `lifespan.startup.failed` and the error's message: the server
    prints it and stops, and Starlette's TestClient raises the error the caller raises next."""
    message = await receive()
    if message["type"] == "lifespan.startup":
        await send({"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"})


def _twice(found: object, path: str) -> str:
    """What to say when a request that already has a session reaches this middleware."""
    if found is None or isinstance(found, Session):
        return (
            f"SessionMiddleware is added twice: requests to {path} would get two sessions, each loaded and "
            "saved. Call app.add_middleware(SessionMiddleware, ...) once; to give a mounted app sessions "
            "of its own, name its path in the outer middleware's `exclude`."
        )
    return (
        f"another session middleware runs outside this one (its {type(found).__name__} is in "
        f"scope['session'] for {path}): keep one of them, e.g. remove Starlette's SessionMiddleware."
    )


def _database(store: PrismaSessionStore) -> str:
    """The store's database, as a log line names it: its URL without the password."""
    return str(store.engine.url.render_as_string(hide_password=True))


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
