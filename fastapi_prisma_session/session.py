"""`Session`, the dict-like object a request sees, and `SessionCookie`, its per-session expiry."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .durations import Duration, to_seconds
from .exceptions import SessionNotFoundError
from .logs import middleware_logger, redact
from .store import COOKIE_KEY, utcnow

if TYPE_CHECKING:
    from .middleware import SessionMiddleware


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
    response starts. Only the keys this request set or deleted are written: a concurrent request that
    changed other keys keeps its changes. Changing a value in place (`session["cart"].append(x)`) is not
    seen: assign the value back (`session["cart"] = cart`) or set `session.modified = True`, which
    writes every key.
    """

    __slots__ = (
        "__weakref__",
        "_accessed",
        "_changed",
        "_data",
        "_dropped",
        "_everything",
        "_id",
        "_loaded_text",
        "_middleware",
        "_refresh",
        "_removed",
        "_row_expires",
        "_secure",
        "_send_cookie",
        "cookie",
        "is_new",
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
        self._changed: set[str] | None = None  # keys set since the session was loaded or saved
        self._removed: set[str] | None = None  # keys deleted since then
        self._everything = False  # modified = True: write every key
        self._accessed = False  # the request read or wrote the session: the response varies on Cookie
        self._refresh = False  # touch() asked for a new expiry
        self._dropped = False  # the row the browser's cookie names was deleted in this request
        self._row_expires: datetime | None = None  # the loaded row's expiresAt
        self._loaded_text: str | None = None  # the loaded row's data, as text
        self._secure = False  # the request came over https
        self._send_cookie = False  # the session was written: the response carries its cookie

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        self._accessed = True
        if self._id is None:
            self._id = self._middleware.generate_id()
        return self._id

    @property
    def modified(self) -> bool:
        """True once a key was set or deleted since the session was loaded or saved. Set it to True
        after changing a value in place, to have every key written."""
        return self._everything or bool(self._changed) or bool(self._removed)

    @modified.setter
    def modified(self, value: bool) -> None:
        self._accessed = True
        if value:
            self._everything = True
        else:
            self._everything = False
            self._changed = self._removed = None

    def _mark_changed(self, key: str) -> None:
        if self._changed is None:
            self._changed = set()
        self._changed.add(key)
        if self._removed:
            self._removed.discard(key)

    def _mark_removed(self, key: str) -> None:
        if self._removed is None:
            self._removed = set()
        self._removed.add(key)
        if self._changed:
            self._changed.discard(key)

    def changes(self) -> tuple[set[str], set[str]]:
        """The keys to write and the keys to delete, to bring the stored row up to date."""
        changed = set(self._data) if self._everything else set(self._changed or ())
        return changed, set(self._removed or ())

    # -- mapping -------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == COOKIE_KEY:
            raise KeyError("'cookie' is reserved for the session cookie; use session.cookie instead")
        self._accessed = True
        self._data[key] = value
        self._mark_changed(key)

    def __delitem__(self, key: str) -> None:
        self._accessed = True
        del self._data[key]
        self._mark_removed(key)

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(self._data)

    def __len__(self) -> int:
        self._accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        self._accessed = True
        return self._data.get(key, default)

    def clear(self) -> None:
        self._accessed = True
        for key in list(self._data):
            self._mark_removed(key)
        self._data.clear()

    def __repr__(self) -> str:
        return f"<Session {redact(self._id)} {self._data!r}>"

    # -- express-session's Session methods -----------------------------------------------------------

    async def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new id and delete the old row at once. Call it on login (session fixation).

        Like express-session the data starts empty; `keep_data=True` carries it over (Django's cycle_key).
        """
        old = self._id
        await self._drop()
        if not keep_data:
            self._data.clear()
        if middleware_logger.isEnabledFor(logging.INFO):
            middleware_logger.info("regenerated session %s as %s", redact(old), redact(self.id))
        self.cookie.reset()
        self.modified = False
        self._everything = bool(self._data)  # a kept session is saved whole under its new id

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
            raise SessionNotFoundError(f"session {redact(self.id)} is not stored (destroyed or expired)")
        self._data = stored.data
        self._data.pop(COOKIE_KEY, None)
        self._loaded_text = stored.text
        self.modified = False

    async def save(self) -> None:
        """Write the session now instead of when the response starts."""
        await self._middleware.save(self)

    def touch(self) -> None:
        """Restart the lifetime from now; the response saves the new expiry and re-sends the cookie."""
        self.cookie.reset()
        self._refresh = True

    async def _drop(self) -> None:
        self._accessed = True
        if not self.is_new:
            await self._middleware.store.destroy(self.id)
            middleware_logger.info("destroyed session %s", redact(self.id))
            self._dropped = True
        self._id = None
        self.is_new = True
