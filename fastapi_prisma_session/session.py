"""`Session`, the dict-like object a request sees, and `SessionCookie`, its per-session expiry."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .durations import Duration, to_seconds
from .exceptions import SessionNotFoundError
from .store import utcnow

if TYPE_CHECKING:
    from .middleware import SessionMiddleware

RESERVED_KEY = "cookie"


class SessionCookie:
    """The session's lifetime, as express-session keeps it in `data.cookie`.

    `max_age` is the seconds left (None for a browser-session cookie); setting it gives this one session
    a new lifetime from now, which is saved and sent with the response. `expires` is a naive UTC
    datetime, or None for a browser-session cookie.
    """

    __slots__ = ("_changed", "_expires", "_started", "original_max_age")

    def __init__(
        self, original_max_age: float | None, expires: datetime | None = None, *, started: bool = True
    ):
        self.original_max_age = original_max_age
        self._expires = expires
        # A new session's lifetime starts when something first asks for it (usually its save): most
        # requests never create a session, and they should not pay for the clock.
        self._started = started
        self._changed = False

    @property
    def expires(self) -> datetime | None:
        if not self._started:
            self.reset()
        return self._expires

    @expires.setter
    def expires(self, value: datetime | None) -> None:
        self._expires = value
        self._started = True

    @property
    def max_age(self) -> float | None:
        expires = self.expires
        return None if expires is None else (expires - utcnow()).total_seconds()

    @max_age.setter
    def max_age(self, value: Duration | None) -> None:
        self.original_max_age = to_seconds(value, "max_age")
        self.reset()
        self._changed = True

    def reset(self) -> None:
        """Start the lifetime again from now."""
        age = self.original_max_age
        self._expires = None if age is None else utcnow() + timedelta(seconds=age)
        self._started = True


class Session(MutableMapping[str, Any]):
    """The current request's session: a mutable mapping of JSON-serializable values.

    Assigning or deleting a key marks the session modified, and a modified session is saved when the
    response starts. Changing a value in place (`session["cart"].append(x)`) is not seen: assign the
    value back (`session["cart"] = cart`) or set `session.modified = True`.
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_dropped",
        "_id",
        "_middleware",
        "_refresh",
        "_row_expires",
        "_secure",
        "_send_cookie",
        "cookie",
        "is_new",
        "modified",
    )

    def __init__(
        self,
        middleware: SessionMiddleware,
        data: dict[str, Any],
        cookie: SessionCookie,
        sid: str | None = None,
    ) -> None:
        self._middleware = middleware
        self._data = data
        self._id = sid
        self.cookie = cookie
        #: True until the session has a row: it was created by this request, regenerated or destroyed.
        self.is_new = sid is None
        #: True once a key was set or deleted since the session was loaded or saved.
        self.modified = False
        self._refresh = False  # touch() asked for a new expiry
        self._dropped = False  # the row the browser's cookie names was deleted in this request
        self._row_expires: datetime | None = None  # the loaded row's expiresAt
        self._secure = False  # the request came over https
        self._send_cookie = False  # the session was written: the response carries its cookie

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        if self._id is None:
            self._id = self._middleware.generate_id()
        return self._id

    # -- mapping -------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == RESERVED_KEY:
            raise KeyError("'cookie' is reserved for the session cookie; use session.cookie instead")
        self._data[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def clear(self) -> None:
        if self._data:
            self._data.clear()
            self.modified = True

    def __repr__(self) -> str:
        shown = self._id[:6] + "…" if self._id else "new"
        return f"<Session {shown} {self._data!r}>"

    # -- express-session's Session methods -----------------------------------------------------------

    async def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new id and delete the old row at once. Call it on login (session fixation).

        Like express-session the data starts empty; `keep_data=True` carries it over (Django's cycle_key).
        """
        await self._drop()
        if not keep_data:
            self._data.clear()
        self.cookie.reset()
        self.modified = bool(self._data)

    async def destroy(self) -> None:
        """Delete the session's row now. The response clears the cookie; setting a key afterwards starts
        a new session with a new id."""
        await self._drop()
        self._data.clear()
        self.cookie.reset()
        self.modified = False

    async def reload(self) -> None:
        """Replace the data with what is stored now. Raises `SessionNotFoundError` if the row is gone."""
        stored = None if self.is_new else await self._middleware.store.load(self.id)
        if stored is None:
            raise SessionNotFoundError(f"session {self.id[:6]}… is not stored (destroyed or expired)")
        self._data = stored.data
        self._data.pop(RESERVED_KEY, None)
        self.modified = False

    async def save(self) -> None:
        """Write the session now instead of when the response starts."""
        await self._middleware.save(self)

    def touch(self) -> None:
        """Restart the lifetime from now; the response saves the new expiry and re-sends the cookie."""
        self.cookie.reset()
        self._refresh = True

    async def _drop(self) -> None:
        if not self.is_new:
            await self._middleware.store.destroy(self.id)
            self._dropped = True
        self._id = None
        self.is_new = True
