"""`Session`, the dict-like object a request sees, bound to the backend that loads and saves it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import COOKIE_KEY, SessionCookie
from .exceptions import SessionNotFoundError
from .logs import middleware_logger, redact

if TYPE_CHECKING:
    from datetime import datetime

    from .store import StoredSession


class SessionBackend(Protocol):
    """What a session asks of whoever loads and saves it (the middleware's `SessionLifecycle`)."""

    def new_id(self) -> str: ...

    async def save(self, session: Session) -> bool: ...

    async def destroy(self, sid: str) -> None: ...

    async def rename(self, sid: str, new_sid: str) -> bool: ...

    async def fetch(self, sid: str) -> StoredSession | None: ...


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
        "_backend",
        "_changed",
        "_data",
        "_dropped",
        "_everything",
        "_id",
        "_loaded_text",
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
        backend: SessionBackend,
        data: dict[str, Any],
        cookie: SessionCookie,
        sid: str | None = None,
        *,
        secure: bool = False,
        row_expires: datetime | None = None,
        loaded_text: str | None = None,
    ) -> None:
        self._backend = backend
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
        self._row_expires = row_expires  # the loaded row's expiresAt
        self._loaded_text = loaded_text  # the loaded row's data, as text
        self._secure = secure  # the request came over https
        self._send_cookie = False  # the session was written: the response carries its cookie

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        self._accessed = True
        if self._id is None:
            self._id = self._backend.new_id()
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

    # -- what the backend reads and records; the app has no need of these ---------------------------

    @property
    def accessed(self) -> bool:
        """The request read or wrote the session, so its response depends on the Cookie header."""
        return self._accessed

    @property
    def secure(self) -> bool:
        """The request came over https."""
        return self._secure

    @property
    def needs_save(self) -> bool:
        """Keys changed, `touch()` was called, or the cookie got a new `max_age`."""
        return self.modified or self._refresh or self.cookie.changed

    @property
    def dropped(self) -> bool:
        """The row the request's cookie named was deleted (destroy, regenerate)."""
        return self._dropped

    @property
    def send_cookie(self) -> bool:
        """The session was written (or its expiry moved): the response carries its cookie."""
        return self._send_cookie

    @property
    def row_expires(self) -> datetime | None:
        """The stored row's `expiresAt` as loaded, or None for a session this request created."""
        return self._row_expires

    @property
    def loaded_text(self) -> str | None:
        """The stored row's `data` as loaded, while it is still what this session last saw."""
        return self._loaded_text

    def data(self) -> dict[str, Any]:
        """The session's data itself (not a copy), read without marking the session accessed."""
        return self._data

    def changes(self) -> tuple[set[str], set[str]]:
        """The keys to write and the keys to delete, to bring the stored row up to date."""
        changed = set(self._data) if self._everything else set(self._changed or ())
        return changed, set(self._removed or ())

    def mark_saved(self, *, stored: bool) -> None:
        """The backend wrote the session; `stored` is False when its row was gone and stays gone."""
        self.is_new = False
        self._accessed = True
        self._everything = self._refresh = False
        self._changed = self._removed = None
        self._loaded_text = None  # what is stored now is no longer known here
        self.cookie.saved()
        self._send_cookie = stored

    def mark_touched(self, expires: datetime | None, *, send_cookie: bool) -> None:
        """The backend moved the stored expiry of this unchanged session to `expires`."""
        self.cookie.expires = expires
        self._send_cookie = send_cookie

    # -- mapping -------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == COOKIE_KEY:
            raise KeyError("'cookie' is reserved for the session cookie; use session.cookie instead")
        self._accessed = True
        self._data[key] = value
        if self._changed is None:
            self._changed = set()
        self._changed.add(key)
        if self._removed:
            self._removed.discard(key)

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

    def _mark_removed(self, key: str) -> None:
        if self._removed is None:
            self._removed = set()
        self._removed.add(key)
        if self._changed:
            self._changed.discard(key)

    # -- express-session's Session methods -----------------------------------------------------------

    async def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new id and delete the old row at once. Call it on login (session fixation).

        Like express-session the data starts empty; `keep_data=True` carries it over (Django's cycle_key):
        the stored row moves to the new id in one statement, so a logout (or `destroy_all`) that got to
        it first is never undone: the session then starts empty instead.
        """
        old = self._id
        if keep_data and not self.is_new:
            self._accessed = True
            new = self._backend.new_id()
            moved = await self._backend.rename(self.id, new)
            self._id, self._dropped = new, True
            if moved:
                self._refresh = True  # saved, and its cookie sent, under the new id
            else:
                middleware_logger.info("session %s was gone before it could be regenerated", redact(old))
                self._data.clear()
                self.is_new = True
                self.modified = False
        else:
            await self._drop()
            if not keep_data:
                self._data.clear()
            self.modified = False
            self._everything = bool(self._data)  # a kept new session is saved whole under its new id
        if middleware_logger.isEnabledFor(logging.INFO):
            middleware_logger.info("regenerated session %s as %s", redact(old), redact(self.id))
        self.cookie.reset()

    async def destroy(self) -> None:
        """Delete the session's row now. The response clears the cookie; setting a key afterwards starts
        a new session with a new id."""
        await self._drop()
        self._data.clear()
        self.cookie.reset()
        self.modified = False

    async def reload(self) -> None:
        """Replace the data with what is stored now. Raises `SessionNotFoundError` if the row is gone."""
        stored = None if self.is_new else await self._backend.fetch(self.id)
        if stored is None:
            raise SessionNotFoundError(f"session {redact(self.id)} is not stored (destroyed or expired)")
        self._data = stored.data
        self._data.pop(COOKIE_KEY, None)
        self._loaded_text = stored.text
        self.modified = False

    async def save(self) -> None:
        """Write the session now instead of when the response starts."""
        await self._backend.save(self)

    def touch(self) -> None:
        """Restart the lifetime from now; the response saves the new expiry and re-sends the cookie."""
        self.cookie.reset()
        self._refresh = True

    async def _drop(self) -> None:
        self._accessed = True
        if not self.is_new:
            await self._backend.destroy(self.id)
            middleware_logger.info("destroyed session %s", redact(self.id))
            self._dropped = True
        self._id = None
        self.is_new = True
