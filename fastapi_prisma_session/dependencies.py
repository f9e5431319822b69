"""Getting the session from async code: `load_session`, FastAPI's `get_session` and `SessionDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
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


SessionDep = Annotated[Session, Depends(get_session)]
