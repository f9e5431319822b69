"""Server-side sessions for FastAPI and Starlette in a SQL table shared with prisma-session-store.

The module map, and the walk of one request through it, is in docs/architecture.md.
"""

from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING, Any

from .cookies import SessionCookie
from .dependencies import get_session, load_session
from .exceptions import (
    ConfigurationError,
    SessionDataError,
    SessionError,
    SessionInterruptedError,
    SessionNotFoundError,
    SessionNotLoadedError,
    SessionTooLargeError,
    StoreUnavailableError,
    TableMissingError,
)
from .middleware import SessionMiddleware
from .serializers import JSONSerializer, Serializer
from .session import Session
from .store import PrismaSessionStore
from .urls import pooler_connect_args

if TYPE_CHECKING:
    from .dependencies import SessionDep
    from .models import SessionRecord, session_table

__version__ = _distribution_version("fastapi-prisma-session")


def __getattr__(name: str) -> Any:
    # SessionDep imports FastAPI on first use (dependencies.py says why); the table's SQLAlchemy and
    # SQLModel objects are imported on first use too, so that a process serving sessions loads neither.
    if name == "SessionDep":
        from . import dependencies

        return dependencies.SessionDep
    if name in ("SessionRecord", "session_table"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigurationError",
    "JSONSerializer",
    "PrismaSessionStore",
    "Serializer",
    "Session",
    "SessionCookie",
    "SessionDataError",
    "SessionDep",
    "SessionError",
    "SessionInterruptedError",
    "SessionMiddleware",
    "SessionNotFoundError",
    "SessionNotLoadedError",
    "SessionRecord",
    "SessionTooLargeError",
    "StoreUnavailableError",
    "TableMissingError",
    "get_session",
    "load_session",
    "pooler_connect_args",
    "session_table",
]
