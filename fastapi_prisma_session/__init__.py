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
    StoreSetupError,
    StoreUnavailableError,
    TableMissingError,
)
from .middleware import SessionMiddleware
from .models import SessionRecord, session_table
from .serializers import JSONSerializer, Serializer
from .session import Session
from .store import PrismaSessionStore
from .urls import pooler_connect_args

if TYPE_CHECKING:
    from .dependencies import SessionDep

__version__ = _distribution_version("fastapi-prisma-session")


def __getattr__(name: str) -> Any:
    # SessionDep imports FastAPI on first use (dependencies.py says why).
    if name == "SessionDep":
        from . import dependencies

        return dependencies.SessionDep
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
    "StoreSetupError",
    "StoreUnavailableError",
    "TableMissingError",
    "get_session",
    "load_session",
    "pooler_connect_args",
    "session_table",
]
