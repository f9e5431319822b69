"""Server-side sessions for FastAPI and Starlette in a SQL table shared with prisma-session-store.

Modules by role: `middleware` (the ASGI middleware), `cookies` (signing and Set-Cookie), `session` (the
request's session object), `store` (the public store API), `sql` (every SQL statement), `pruning` (the
expiry loop), `connections` (the request path's leased asyncpg connections), `models` (the table),
`migration` (Alembic operations), `dependencies` (FastAPI), `cli` (`python -m fastapi_prisma_session`).
"""

from importlib.metadata import version as _distribution_version

from .dependencies import SessionDep, get_session
from .exceptions import (
    ConfigurationError,
    SessionError,
    SessionNotFoundError,
    SessionTooLargeError,
    StoreUnavailableError,
    TableMissingError,
)
from .middleware import SessionMiddleware
from .models import SessionRecord, session_table
from .serializers import JSONSerializer, Serializer
from .session import Session, SessionCookie
from .store import PrismaSessionStore

__version__ = _distribution_version("fastapi-prisma-session")

__all__ = [
    "ConfigurationError",
    "JSONSerializer",
    "PrismaSessionStore",
    "Serializer",
    "Session",
    "SessionCookie",
    "SessionDep",
    "SessionError",
    "SessionMiddleware",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionTooLargeError",
    "StoreUnavailableError",
    "TableMissingError",
    "get_session",
    "session_table",
]
