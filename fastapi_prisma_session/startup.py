"""The middleware's part in the app's lifespan.

Mistakes in setting the middleware up surface when the app starts, not at its first request: Starlette
builds its middleware lazily, on the first call of the app, which under a server is the lifespan's
startup. An exception there reads to the server as "this app has no lifespan" (so the ASGI spec says),
and uvicorn would serve an app that fails every request. So a SessionMiddleware that cannot be built
inside a running event loop becomes a stand-in (`Unbuilt`) that fails the startup with the error
(`lifespan.startup.failed`, as Starlette's router reports its own startup errors), and one that finds
another inside its requests fails the startup too. Once the app's own startup is done, the database is
looked at: a missing table, a table of the wrong shape or a refused login fails the startup with one
line that names the fix; a database that does not answer is logged, and the app starts (routes without
sessions work through its restart).
"""

from __future__ import annotations

import asyncio
import inspect
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .dburl import DatabaseURL
from .deadlines import not_on_asyncio
from .exceptions import ConfigurationError, StoreSetupError, StoreUnavailableError, TableMissingError
from .logs import middleware_logger as logger
from .session import Session

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from .middleware import SessionMiddleware
    from .store import PrismaSessionStore

# The lifespan scope's list of the SessionMiddleware instances it has passed, outermost first.
STACK_KEY = "fastapi_prisma_session.middleware"
# The database is not set up for the store: no table, a table of the wrong shape, a refused login. They
# stop the startup; at a request (the table dropped, the password changed meanwhile) they answer 500.
SETUP_ERRORS = (StoreSetupError, TableMissingError)
# What keeps a request from its session: answered by `responses.refuse` (503, or 500 for the above).
REFUSALS = (StoreUnavailableError, *SETUP_ERRORS)


class BuiltOrReported(type):
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


async def run_lifespan(middleware: SessionMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
    """The app's lifespan through `middleware`: refused on trio or when another SessionMiddleware serves
    the same requests; the database looked at once the app's own startup is done; pruning from then on."""
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
        if middleware.shares_requests_with(other):
            error = ConfigurationError(twice(None, middleware.cookie.path))
            await fail_startup(receive, send, error)
            raise error
    outer.append(middleware)

    refused: Exception | None = None

    # The database is looked at once the app's own startup is done (which may create the table), and
    # pruning follows the app's lifespan, so users add nothing to theirs.
    async def lifespan_send(message: Message) -> None:
        nonlocal refused
        if refused is not None:
            return  # the app's own report of the refusal raised into it: the server has it already
        if message["type"] == "lifespan.startup.complete":
            refused = await check_database(middleware.store)
            if refused is not None:
                await middleware.store.shutdown()
                line = f"fastapi_prisma_session, on {_database(middleware.store)}: {refused}"
                await send({"type": "lifespan.startup.failed", "message": line})
                raise refused  # the app's lifespan ends; a TestClient raises it to the test
            middleware.store.start_interval()
        elif message["type"] == "lifespan.shutdown.complete":
            await middleware.store.shutdown()
        await send(message)

    await middleware.app(scope, receive, lifespan_send)


async def check_database(store: PrismaSessionStore) -> Exception | None:
    """The error that must stop the startup (no table, a table of the wrong shape, a refused
    login), or None. An unreachable database does not: routes that use no session keep working,
    those that do answer 503 until it is back, and its table is looked at when it answers."""
    try:
        await store.check_table()
    except SETUP_ERRORS as error:
        return error
    except StoreUnavailableError as error:
        logger.warning(
            "fastapi_prisma_session, on %s: starting without the session database (%s); requests "
            "that use a session answer 503 until it answers",
            _database(store),
            error,
        )
    return None


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


def twice(found: object, path: str) -> str:
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
    url = store.url  # not store.engine's: making it would import SQLAlchemy, after a shutdown too
    if isinstance(url, DatabaseURL):
        return url.render(hide_password=True)
    return str(url.render_as_string(hide_password=True))  # the caller's engine's
