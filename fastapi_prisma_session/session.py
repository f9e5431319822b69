"""`Session`, the dict-like object a request sees, bound to the backend that loads and saves it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import ABSOLUTE_KEY, COOKIE_KEY, SessionCookie
from .exceptions import SessionInterruptedError, SessionNotFoundError, SessionNotLoadedError
from .logs import middleware_logger, redact

if TYPE_CHECKING:
    from datetime import datetime


NOT_LOADED = (
    "the session of this request is not loaded yet: sessions load on first use, from async code. Take it "
    "as a dependency (`session: SessionDep`, or `Depends(get_session)`), call `await load_session(request)` "
    "before using `request.session`, or have the middleware load it for this path: "
    "SessionMiddleware(autoload=True) or autoload=[r'/admin'] (see the README's 'Loading')"
)


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored session as a `Session` takes it over: its data, cookie, row expiry and text."""

    data: dict[str, Any]
    cookie: SessionCookie
    row_expires: datetime
    text: str | None
    absolute_expires: datetime | None = None


class SessionBackend(Protocol):
    """What a session asks of whoever loads and saves it (the middleware's `SessionLifecycle`)."""

    def new_id(self) -> str: ...

    def new_cookie(self) -> SessionCookie: ...

    async def read(self, sid: str) -> Stored | None: ...

    async def save(self, session: Session) -> bool: ...

    async def destroy(self, sid: str) -> None: ...

    async def rename(self, sid: str, new_sid: str) -> bool: ...


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
        "_absolute_expires",
        "_accessed",
        "_backend",
        "_changed",
        "_data",
        "_dropped",
        "_everything",
        "_id",
        "_loaded",
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
        loaded: bool = True,
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
        self._loaded = loaded  # False until first use, for a session named by the request's cookie
        self._absolute_expires: datetime | None = None  # absolute_timeout: when it ends, however active

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        self._use()
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
    def loaded(self) -> bool:
        """The session's data is here: it was loaded, or this request started it."""
        return self._loaded

    async def load(self) -> None:
        """Load the session the request's cookie names, if that has not happened yet. A missing,
        expired or unreadable one becomes a new, empty session."""
        if self._loaded:
            return
        sid = self._id
        stored = None if sid is None else await self._backend.read(sid)
        if stored is None:
            self._id, self.is_new, self.cookie = None, True, self._backend.new_cookie()
        else:
            self._data, self.cookie = stored.data, stored.cookie
            self._row_expires, self._loaded_text = stored.row_expires, stored.text
            self._absolute_expires = stored.absolute_expires
        self._loaded = True

    @property
    def absolute_expires(self) -> datetime | None:
        """With the middleware's `absolute_timeout`: when this session ends, however active it is."""
        return self._absolute_expires

    def start_absolute(self, moment: datetime) -> None:
        """The backend fixes when a new session ends at the latest (`absolute_timeout`)."""
        if self._absolute_expires is None:
            self._absolute_expires = moment

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
        self.cookie.moved_to(expires)
        self._send_cookie = send_cookie

    # -- mapping -------------------------------------------------------------------------------------

    def _use(self) -> dict[str, Any]:
        """The data, for a read or a write by the app: loaded, and the response now varies on Cookie."""
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._accessed = True
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._use()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in (COOKIE_KEY, ABSOLUTE_KEY):
            raise KeyError(f"{key!r} is reserved for the session's cookie and expiry; use session.cookie")
        self._use()[key] = value
        if self._changed is None:
            self._changed = set()
        self._changed.add(key)
        if self._removed:
            self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        del self._use()[key]
        self._mark_removed(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._use())

    def __len__(self) -> int:
        return len(self._use())

    def __contains__(self, key: object) -> bool:
        return key in self._use()

    def get(self, key: str, default: Any = None) -> Any:
        return self._use().get(key, default)

    def clear(self) -> None:
        data = self._use()
        for key in list(data):
            self._mark_removed(key)
        data.clear()

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
        await self.load()
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
        self._absolute_expires = None  # a new session (a log-in): its absolute timeout starts again
        self.cookie.reset()

    async def destroy(self) -> None:
        """Delete the session's row now. The response clears the cookie; setting a key afterwards starts
        a new session with a new id."""
        await self._drop()
        self._absolute_expires = None
        self._data.clear()
        self.cookie.reset()
        self.modified = False

    async def reload(self) -> None:
        """Replace the data with what is stored now. Raises `SessionNotFoundError` if the row is gone."""
        await self.load()
        stored = None if self.is_new else await self._backend.read(self.id)
        if stored is None:
            raise SessionNotFoundError(f"session {redact(self.id)} is not stored (destroyed or expired)")
        self._data, self._loaded_text = stored.data, stored.text
        self._absolute_expires = stored.absolute_expires
        self.modified = False

    async def save(self) -> None:
        """Write the session now instead of when the response starts.

        Raises `SessionInterruptedError` when another request ended the session (a logout, say) while
        this one had it: the changes are dropped, as the session is gone."""
        await self.load()
        if not await self._backend.save(self):
            raise SessionInterruptedError(
                f"session {redact(self._id)} was ended by another request while this one changed it"
            )

    def touch(self) -> None:
        """Restart the lifetime from now; the response saves the new expiry and re-sends the cookie."""
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self.cookie.reset()
        self._refresh = True

    async def _drop(self) -> None:
        self._accessed = True
        if not self.is_new and self._id is not None:  # an unloaded session is dropped by its cookie's id
            await self._backend.destroy(self._id)
            middleware_logger.info("destroyed session %s", redact(self._id))
            self._dropped = True
        self._id = None
        self.is_new = True
        self._loaded = True
