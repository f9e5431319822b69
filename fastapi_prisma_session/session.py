"""`Session`, the dict a request sees, bound to the backend that loads and saves it.

The app sees a dict (`session_data.py`: the data, read only once loaded, each change recorded) and
express-session's methods. What the backend (the middleware's
`SessionLifecycle`) reads and records of a session, such as which keys changed, what was loaded and what
the response must send, is a `SessionState` the session carries, reached through `state_of()`.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import SessionInterruptedError, SessionNotFoundError, SessionNotLoadedError
from .logs import middleware_logger, redact
from .session_data import (
    _UNLOADED,
    NOT_LOADED,
    SessionData,
    SessionState,
    _clear,
    _items,
    _mark,
    _update,
)

if TYPE_CHECKING:
    from .cookies import SessionCookie

__all__ = ["NOT_LOADED", "Session", "SessionBackend", "SessionState", "data_of", "mark_saved", "state_of"]


class SessionBackend(Protocol):
    """What a session asks of whoever loads and saves it (the middleware's `SessionLifecycle`)."""

    #: whether a session keeps its request's ASGI scope (a device record or `genid` needs it)
    keeps_scope: bool

    def new_id(self, state: SessionState) -> str:
        """A new session id; `state` is the session's, which may carry the request's scope."""
        ...

    def new_cookie(self) -> SessionCookie: ...

    async def read(self, sid: str, state: SessionState) -> tuple[dict[str, Any], SessionCookie] | None:
        """The data and cookie of the stored session `sid`, for the session to take over, or None.
        What the backend needs of the row later (its expiry and text) it records in `state`."""
        ...

    async def save(self, session: Session) -> bool: ...

    async def destroy(self, sid: str) -> None: ...

    async def rename(self, sid: str, new_sid: str) -> bool: ...


class Session(SessionData):
    """The current request's session: a dict of JSON-serializable values, as Starlette's session is.

    Assigning or deleting a key (by any of dict's methods) marks the session modified, and a modified
    session is saved when the response starts. Only the keys this request set or deleted are written: a
    concurrent request that changed other keys keeps its changes. Changing a value in place
    (`session["cart"].append(x)`) is not seen: assign the value back (`session["cart"] = cart`) or set
    `session.modified = True`, which writes every key. A session not loaded yet raises
    `SessionNotLoadedError` on any use, `json.dumps(session)` included.
    """

    __slots__ = ("_backend", "_cookie", "_id", "is_new")

    def __init__(
        self,
        backend: SessionBackend,
        sid: str | None = None,
        secure: bool = False,
        loaded: bool = True,
        scope: MutableMapping[str, Any] | None = None,
    ) -> None:
        state = self._state = SessionState()  # the backend's bookkeeping: see SessionState
        if secure:
            state.secure = True
        if backend.keeps_scope:
            state.request_scope = scope
        self._loaded = loaded  # False until first use, for a request's session (autoload aside)
        if not loaded:
            _mark(self, _UNLOADED)  # json.dumps of the session then asks items(), which raises
        self._backend = backend
        self._id = sid
        #: True until the session has a row: it was created by this request, regenerated or destroyed.
        self.is_new = sid is None
        # Made when first asked for: a session nobody uses, and one whose load brings the stored cookie,
        # never need a new one.
        self._cookie: SessionCookie | None = None

    @property
    def id(self) -> str:
        """The session id (the `sid` column). A new session gets one the first time it is asked for."""
        self._use()
        if self._id is None:
            self._id = self._backend.new_id(self._state)
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
        expired or unreadable one becomes a new, empty session; without a cookie, the new session is
        there at once, with no query."""
        if self._loaded:
            return
        sid = self._id
        found = None if sid is None else await self._backend.read(sid, self._state)
        if found is None:
            self._id, self.is_new, self._cookie = None, True, None  # a new session, with a new cookie
            self._take({})
        else:
            data, self._cookie = found
            _clear(self)  # self._take(data), inline: into an empty dict, the data's table is copied
            _update(self, data)
            self._loaded = True

    def __repr__(self) -> str:
        data = repr(dict(_items(self))) if self._loaded else "(not loaded)"
        return f"<Session {redact(self._id)} {data}>"

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
            new = self._backend.new_id(state)
            moved = await self._backend.rename(self.id, new)
            self._id, state.dropped = new, True
            if moved:
                state.refresh = True  # saved, and its cookie sent, under the new id
            else:
                middleware_logger.info("session %s was gone before it could be regenerated", redact(old))
                dict.clear(self)
                self.is_new = True
                self.modified = False
        else:
            await self._drop()
            if not keep_data:
                dict.clear(self)
            self.modified = False
            state.everything = bool(dict.__len__(self))  # a kept new session is saved whole under its new id
        if middleware_logger.isEnabledFor(logging.INFO):
            middleware_logger.info("regenerated session %s as %s", redact(old), redact(self.id))
        state.absolute_expires = None  # a new session (a log-in): its absolute timeout starts again
        self.cookie.reset()

    async def destroy(self) -> None:
        """Delete the session's row now. The response clears the cookie; setting a key afterwards starts
        a new session with a new id."""
        await self._drop()
        self._state.absolute_expires = None
        dict.clear(self)
        self.cookie.reset()
        self.modified = False

    async def reload(self) -> None:
        """Replace the data with what is stored now. Raises `SessionNotFoundError` if the row is gone."""
        await self.load()
        found = None if self.is_new else await self._backend.read(self.id, self._state)
        if found is None:
            raise SessionNotFoundError(f"session {redact(self.id)} is not stored (destroyed or expired)")
        self._take(found[0])  # the cookie stays this request's
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
        if not self._loaded:
            self._take({})


# -- the backend's side: what the lifecycle reads and records, out of the app's sight ---------------


def state_of(session: Session) -> SessionState:
    """The backend's bookkeeping of `session`."""
    return session._state


def data_of(session: Session) -> dict[str, Any]:
    """A plain dict of the loaded session's data (a copy), for the backend: read without marking it
    accessed."""
    if not session._loaded:
        raise SessionNotLoadedError(NOT_LOADED)
    return dict(_items(session))


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
