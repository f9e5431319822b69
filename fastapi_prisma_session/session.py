"""`Session`, the dict-like object a request sees, bound to the backend that loads and saves it.

The app sees the mapping and express-session's methods. What the backend (the middleware's
`SessionLifecycle`) reads and records of a session, such as which keys changed, what was loaded and what
the response must send, is a `SessionState` the session carries, reached through `state_of()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import ABSOLUTE_KEY, COOKIE_KEY, MOVED_KEY, SessionCookie
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


class SessionBackend(Protocol):
    """What a session asks of whoever loads and saves it (the middleware's `SessionLifecycle`)."""

    def new_id(self) -> str: ...

    def new_cookie(self) -> SessionCookie: ...

    async def read(self, sid: str, state: SessionState) -> tuple[dict[str, Any], SessionCookie] | None:
        """The data and cookie of the stored session `sid`, for the session to take over, or None.
        What the backend needs of the row later (its expiry and text) it records in `state`."""
        ...

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

    __slots__ = ("__weakref__", "_backend", "_cookie", "_data", "_id", "_loaded", "_state", "is_new")

    def __init__(
        self, backend: SessionBackend, sid: str | None = None, *, secure: bool = False, loaded: bool = True
    ) -> None:
        self._backend = backend
        self._data: dict[str, Any] = {}
        self._id = sid
        #: True until the session has a row: it was created by this request, regenerated or destroyed.
        self.is_new = sid is None
        self._loaded = loaded  # False until first use, for a session named by the request's cookie
        # Made when first asked for: a session nobody uses, and one whose load brings the stored cookie,
        # never need a new one.
        self._cookie: SessionCookie | None = None
        self._state = SessionState(secure)  # the backend's bookkeeping: see SessionState

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        self._use()
        if self._id is None:
            self._id = self._backend.new_id()
        return self._id

    @property
    def cookie(self) -> SessionCookie:
        """The session's lifetime (`max_age`, `expires`), as express-session keeps it in `data.cookie`."""
        cookie = self._cookie
        if cookie is None:
            cookie = self._cookie = self._backend.new_cookie()
        return cookie

    @cookie.setter
    def cookie(self, cookie: SessionCookie) -> None:
        self._cookie = cookie

    @property
    def modified(self) -> bool:
        """True once a key was set or deleted since the session was loaded or saved. Set it to True
        after changing a value in place, to have every key written."""
        return self._state.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        state = self._state
        state.accessed = True
        state.everything = bool(value)
        if not value:
            state.changed = state.removed = None

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
        found = None if sid is None else await self._backend.read(sid, self._state)
        if found is None:
            self._id, self.is_new, self._cookie = None, True, None  # a new session, with a new cookie
        else:
            self._data, self._cookie = found
        self._loaded = True

    # -- mapping -------------------------------------------------------------------------------------

    def _use(self) -> dict[str, Any]:
        """The data, for a read or a write by the app: loaded, and the response now varies on Cookie."""
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._state.accessed = True
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._use()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in (COOKIE_KEY, ABSOLUTE_KEY, MOVED_KEY):
            raise KeyError(
                f"{key!r} is reserved for the store (the session's cookie, its expiry, a regenerate's "
                "marker); use session.cookie for the cookie"
            )
        self._use()[key] = value
        state = self._state
        changed = state.changed
        if changed is None:
            state.changed = {key}
        else:
            changed.add(key)
        if state.removed:
            state.removed.discard(key)

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
        state = self._state
        removed = state.removed
        if removed is None:
            state.removed = {key}
        else:
            removed.add(key)
        if state.changed:
            state.changed.discard(key)

    # -- express-session's Session methods -----------------------------------------------------------

    async def regenerate(self, *, keep_data: bool = False) -> None:
        """Give the session a new id and delete the old row at once. Call it on login (session fixation).

        Like express-session the data starts empty; `keep_data=True` carries it over (Django's cycle_key):
        the stored row moves to the new id in one statement, so a logout (or `destroy_all`) that got to
        it first is never undone: the session then starts empty instead.
        """
        await self.load()
        state = self._state
        old = self._id
        if keep_data and not self.is_new:
            state.accessed = True
            new = self._backend.new_id()
            moved = await self._backend.rename(self.id, new)
            self._id, state.dropped = new, True
            if moved:
                state.refresh = True  # saved, and its cookie sent, under the new id
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
            state.everything = bool(self._data)  # a kept new session is saved whole under its new id
        if middleware_logger.isEnabledFor(logging.INFO):
            middleware_logger.info("regenerated session %s as %s", redact(old), redact(self.id))
        state.absolute_expires = None  # a new session (a log-in): its absolute timeout starts again
        self.cookie.reset()

    async def destroy(self) -> None:
        """Delete the session's row now. The response clears the cookie; setting a key afterwards starts
        a new session with a new id."""
        await self._drop()
        self._state.absolute_expires = None
        self._data.clear()
        self.cookie.reset()
        self.modified = False

    async def reload(self) -> None:
        """Replace the data with what is stored now. Raises `SessionNotFoundError` if the row is gone."""
        await self.load()
        found = None if self.is_new else await self._backend.read(self.id, self._state)
        if found is None:
            raise SessionNotFoundError(f"session {redact(self.id)} is not stored (destroyed or expired)")
        self._data = found[0]  # the cookie stays this request's
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
        self._state.refresh = True

    async def _drop(self) -> None:
        state = self._state
        state.accessed = True
        if not self.is_new and self._id is not None:  # an unloaded session is dropped by its cookie's id
            await self._backend.destroy(self._id)
            middleware_logger.info("destroyed session %s", redact(self._id))
            state.dropped = True
        self._id = None
        self.is_new = True
        self._loaded = True


# -- the backend's side: what the lifecycle reads and records, out of the app's sight ---------------


class SessionState:
    """What the backend keeps of one request's session beside its data: which keys changed, what was
    loaded, and what the response must do. The app never sees it; `state_of(session)` reaches it."""

    __slots__ = (
        "absolute_expires",
        "accessed",
        "changed",
        "dropped",
        "everything",
        "loaded_text",
        "refresh",
        "removed",
        "row_expires",
        "secure",
        "send_cookie",
    )

    def __init__(self, secure: bool) -> None:
        self.secure = secure  # the request came over https
        self.accessed = False  # the request read or wrote the session: the response varies on Cookie
        self.changed: set[str] | None = None  # keys set since the session was loaded or saved
        self.removed: set[str] | None = None  # keys deleted since then
        self.everything = False  # modified = True: write every key
        self.refresh = False  # touch() asked for a new expiry
        self.dropped = False  # the row the request's cookie named was deleted (destroy, regenerate)
        self.send_cookie = False  # the session was written (or its expiry moved): the response sends it
        # As the backend's read() found the row: its expiresAt, and its data as text while that is still
        # what this session last saw (the compare of a compare-and-set write), or None.
        self.row_expires: datetime | None = None
        self.loaded_text: str | None = None
        # With absolute_timeout: when the session ends, however active it is.
        self.absolute_expires: datetime | None = None

    @property
    def modified(self) -> bool:
        """A key was set or deleted since the session was loaded or saved, or `modified = True`."""
        return self.everything or bool(self.changed) or bool(self.removed)

    def changes(self, data: dict[str, Any]) -> tuple[set[str], set[str]]:
        """The keys of `data` to write and the keys to delete, to bring the stored row up to date."""
        changed = set(data) if self.everything else set(self.changed or ())
        return changed, set(self.removed or ())


def state_of(session: Session) -> SessionState:
    """The backend's bookkeeping of `session`."""
    return session._state


def data_of(session: Session) -> dict[str, Any]:
    """The session's data itself (not a copy), for the backend: read without marking it accessed."""
    return session._data


def mark_saved(session: Session, *, stored: bool) -> None:
    """The backend wrote `session`; `stored` is False when its row was gone and stays gone."""
    session.is_new = False
    session.cookie.saved()
    state = session._state
    state.accessed = True
    state.everything = state.refresh = False
    state.changed = state.removed = None
    state.loaded_text = None  # what is stored now is no longer known here
    state.send_cookie = stored
