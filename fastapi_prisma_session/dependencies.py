"""Getting the session from async code: `load_session`, FastAPI's `get_session` and `SessionDep`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from starlette.requests import HTTPConnection

from .session import Session


async def load_session(connection: HTTPConnection) -> Session:
    """The current request's (or websocket's) session, loaded: one indexed SELECT the first time, when
    the request carries a session cookie. After it, `request.session` works from sync code too."""
    session = connection.scope.get("session")
    if not isinstance(session, Session):
        raise RuntimeError(
            "No session on this request: add SessionMiddleware(app, store=..., secret=...) to the app, "
            "and check that the request path is inside the cookie's path and not excluded"
        )
    await session.load()
    return session


#: FastAPI's dependency for the session (`SessionDep`). Async, so FastAPI does not send it to a thread.
get_session = load_session


if TYPE_CHECKING:
    from fastapi import Depends

    SessionDep = Annotated[Session, Depends(get_session)]


def __getattr__(name: str) -> Any:
    # FastAPI is imported when SessionDep is first asked for, not with the package: a Starlette app that
    # never uses it is spared FastAPI's modules, whose objects every full garbage collection of the
    # process would walk.
    if name == "SessionDep":
        from fastapi import Depends

        dependency = Annotated[Session, Depends(get_session)]
        globals()["SessionDep"] = dependency
        return dependency
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
