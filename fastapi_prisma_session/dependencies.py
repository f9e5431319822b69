"""FastAPI dependencies: `get_session` and the `SessionDep` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .session import Session


async def get_session(connection: HTTPConnection) -> Session:
    """The current request's session. Async, so FastAPI does not send it to a thread pool."""
    session = connection.scope.get("session")
    if not isinstance(session, Session):
        raise RuntimeError(
            "No session on this request: add SessionMiddleware(app, store=..., secret=...) to the app, "
            "and check that the request path is inside the cookie's path"
        )
    return session


SessionDep = Annotated[Session, Depends(get_session)]
