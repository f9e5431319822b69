"""Server-side sessions for FastAPI and Starlette in a SQL table shared with prisma-session-store.

The module map, and the walk of one request through it, is in docs/architecture.md.
"""

from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING, Any

from .cookies import SessionCookie
from .dependencies import get_session, load_session
from .device_list import Device, list_devices, revoke_device, revoke_other_devices
from .devices import DeviceOptions
from .exceptions import (
    ConfigurationError,
    ReservedKeyError,
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
from .serializers import JSONSerializer, Serializer
from .session import Session
from .store import PrismaSessionStore
from .urls import pooler_connect_args

if TYPE_CHECKING:
    from .csrf import CsrfDep, csrf_token, require_csrf
    from .dependencies import SessionDep
    from .models import SessionRecord, session_table
    from .typed import TypedSession, session_model

__version__ = _distribution_version("fastapi-prisma-session")


# What imports FastAPI (and pydantic) is imported on first use (dependencies.py says why), and so is
# what imports SQLAlchemy and SQLModel (the table's objects): a process serving sessions loads neither.
_LAZY = {
    "SessionDep": "dependencies",
    "CsrfDep": "csrf",
    "csrf_token": "csrf",
    "require_csrf": "csrf",
    "TypedSession": "typed",
    "session_model": "typed",
    "SessionRecord": "models",
    "session_table": "models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigurationError",
    "CsrfDep",
    "Device",
    "DeviceOptions",
    "JSONSerializer",
    "PrismaSessionStore",
    "ReservedKeyError",
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
    "TypedSession",
    "csrf_token",
    "get_session",
    "list_devices",
    "load_session",
    "pooler_connect_args",
    "require_csrf",
    "revoke_device",
    "revoke_other_devices",
    "session_model",
    "session_table",
]
