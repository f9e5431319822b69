"""Exceptions raised by fastapi_prisma_session."""

from __future__ import annotations


class SessionError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigurationError(SessionError, ValueError):
    """An option given to the store or the middleware is invalid; the message says how to fix it."""


class StoreSetupError(ConfigurationError):
    """The session database is not as the store needs it: the server refused the store's login, or the
    session table lacks a column or has one of a type the store cannot use. The app's startup stops
    with it (as with `TableMissingError`); the message says how to fix it."""


class TableMissingError(SessionError):
    """The session table does not exist in the database."""

    def __init__(self, table_name: str) -> None:
        named = "" if table_name == "Session" else f" --table-name {table_name}"
        super().__init__(
            f'The session table "{table_name}" does not exist. Create it with '
            f"`fastapi-prisma-session migrate --database-url ...{named}` (or, in a clone of the "
            "repository or your own Alembic project, `alembic upgrade head`; see docs/migrations.md), "
            "or call `await store.create_table()` for a throwaway database."
        )
        self.table_name = table_name


class ReservedKeyError(SessionError, KeyError, ValueError):
    """The app set a key the store keeps for itself (`cookie`, `__absoluteExpires`, `__regeneratedAs`,
    `__encrypted`, `__device`), by any path: `[]`, `update`, `|=`, `setdefault`. Nothing was changed. A
    `KeyError`, as before it had its own class, and a `ValueError`: usually the data came from a client
    (a request's JSON passed to `session.update`), which should not be passed to the session whole."""

    def __init__(self, key: object) -> None:
        super().__init__(
            f"{key!r} is reserved for the store (the session's cookie, its expiry, a regenerate's marker, "
            "the encrypted data, the device record) and cannot be set; use session.cookie for the cookie, "
            "and copy into the session only the keys you expect, never a client's dict whole"
        )
        self.key = key

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError's own would quote the message


class SessionNotFoundError(SessionError, LookupError):
    """`Session.reload()` found no live row: the session was destroyed or has expired."""


class SessionNotLoadedError(SessionError, RuntimeError):
    """The request's session was used from sync code before it was loaded; the message says how to load it."""


class SessionInterruptedError(SessionError):
    """`await session.save()` found the session ended by another request (a logout) meanwhile: nothing
    was written. Like Django's `SessionInterrupted`."""


class SessionTooLargeError(SessionError):
    """A session's serialized data is larger than the store's `max_data_size`, or than what the database
    takes in one statement; nothing was written."""

    def __init__(self, session: str, size: int, limit: int, *, as_sent: bool = False) -> None:
        # `session` names the session as the logs do, never by its whole id. `as_sent`: the database's
        # limit, on the data as the driver sends it (MySQL's quotes and backslashes escaped).
        over = (
            f"takes {size} bytes in a statement (escapes counted), over the {limit} this database takes"
            if as_sent
            else f"serializes to {size} bytes, over the store's max_data_size of {limit}"
        )
        super().__init__(
            f"session {session} {over}; it was not saved. "
            "Keep large data elsewhere and store a reference to it in the session."
        )
        self.size = size
        self.limit = limit


class SessionDataError(SessionError, ValueError):
    """A session holds data its serializer cannot store (NaN or Infinity in JSON, a set, an object);
    nothing was written and the stored session stays as it was."""

    def __init__(self, session: str, cause: Exception) -> None:
        super().__init__(
            f"session {session} cannot be saved: {cause}. Store only JSON values "
            "(str, int, finite float, bool, None, list, dict with str keys)."
        )


class StoreUnavailableError(SessionError):
    """The session database cannot be reached (stopped, restarting, or the network is down).

    The middleware answers such a request with 503 and recovers by itself when the database is back.
    """
