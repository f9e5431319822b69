"""`SessionData`, the dict a session is, and `SessionState`, what the lifecycle keeps beside it.

A session is a `dict` subclass, as Starlette's session is a plain dict: `json.dumps(session)`,
`JSONResponse({"session": request.session})`, `isinstance(session, dict)` and FastAPI's encoder take it.
Its data lives in the dict's own storage (json's C encoder reads that storage's size directly), and every
method is overridden so that each read checks the session is loaded and each change is recorded:

- Overriding `__iter__` and `keys` makes `dict(session)`, `{**session}` and `other.update(session)` go
  through `keys()` and `__getitem__` instead of copying the storage; `json.dumps` calls `items()`.
- An unloaded session's storage holds one entry under `_UNLOADED`, a key that is not a string: the
  storage is never empty before the load, so json's encoder (whose only shortcut is for an empty dict)
  calls `items()`, which raises `SessionNotLoadedError` instead of writing `{}`. A reader of the raw
  storage (orjson) refuses the key instead of returning nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from .cookies import ABSOLUTE_KEY, COOKIE_KEY, MOVED_KEY
from .devices import DEVICE_KEY
from .encryption import ENVELOPE_KEY
from .exceptions import ReservedKeyError, SessionNotLoadedError

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values
    from datetime import datetime

NOT_LOADED = (
    "the session of this request is not loaded yet: sessions load on first use, from async code. Take it "
    "as a dependency (`session: SessionDep`, or `Depends(get_session)`), call `await load_session(request)` "
    "before using `request.session`, or have the middleware load it for this path: "
    "SessionMiddleware(autoload=True) or autoload=[r'/admin'] (see docs/loading.md)"
)
RESERVED = frozenset((COOKIE_KEY, ABSOLUTE_KEY, MOVED_KEY, ENVELOPE_KEY, DEVICE_KEY))
_MISSING: Any = object()


class _NotLoaded:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<session not loaded>"


_UNLOADED: Any = _NotLoaded()
# dict's own methods, on the storage (method descriptors: faster to call than dict.__setitem__'s wrapper)
_mark, _clear, _update, _items, _copy = (
    dict.setdefault,
    dict.clear,
    dict.update,
    dict.items,
    dict.copy,
)


def _refuse(key: object) -> None:
    raise ReservedKeyError(key)


class SessionData(dict[str, Any]):
    """A dict that refuses to be read before it is loaded and records which keys the request changed."""

    __slots__ = ("__weakref__", "_loaded", "_state")

    # Set by the subclass's __init__ (inline: one session is made per request): `_state`, and `_loaded`,
    # False until first use for a session named by the request's cookie, which then holds `_UNLOADED`.
    _state: SessionState
    _loaded: bool

    def _take(self, data: dict[str, Any]) -> None:
        """Hold `data` from now on (a load, a reload, a new session), without recording a change."""
        _clear(self)  # into an empty dict, dict.update copies the data's table whole
        _update(self, data)
        self._loaded = True

    def _use(self) -> None:
        """Before a read or a write by the app: loaded, and the response now varies on Cookie."""
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._state.accessed = True

    def _set(self, key: str) -> None:
        state = self._state
        changed = state.changed
        if changed is None:
            state.changed = {key}
        else:
            changed.add(key)
        if state.removed:
            state.removed.discard(key)

    def _removed(self, key: str) -> None:
        state = self._state
        removed = state.removed
        if removed is None:
            state.removed = {key}
        else:
            removed.add(key)
        if state.changed:
            state.changed.discard(key)

    # -- reads -----------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._state.accessed = True
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._state.accessed = True
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        self._state.accessed = True
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._use()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._use()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._use()
        return dict.__len__(self)

    def keys(self) -> dict_keys[str, Any]:
        self._use()
        return dict.keys(self)

    def values(self) -> dict_values[str, Any]:
        self._use()
        return dict.values(self)

    def items(self) -> dict_items[str, Any]:
        self._use()
        return dict.items(self)

    def __eq__(self, other: object) -> bool:
        self._use()
        if isinstance(other, SessionData):
            other._use()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def copy(self) -> dict[str, Any]:
        """A plain dict of the data, as `dict.copy` gives."""
        self._use()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> Any:  # a plain dict
        if not isinstance(other, dict):
            return NotImplemented
        merged = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other: Any) -> Any:  # a plain dict
        if not isinstance(other, dict):
            return NotImplemented
        self._use()
        merged = dict(other)
        merged.update(dict.items(self))
        return merged

    def __copy__(self) -> dict[str, Any]:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        from copy import deepcopy

        return deepcopy(self.copy(), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.copy(),))  # pickled as the plain dict Starlette's session is

    @classmethod
    def fromkeys(cls, iterable: Iterable[Any], value: Any = None) -> dict[Any, Any]:
        return dict.fromkeys(iterable, value)

    # -- changes: each records its keys ----------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if key in RESERVED:
            _refuse(key)
        if not self._loaded:
            raise SessionNotLoadedError(NOT_LOADED)
        state = self._state
        state.accessed = True
        dict.__setitem__(self, key, value)
        changed = state.changed
        if changed is None:
            state.changed = {key}
        else:
            changed.add(key)
        if state.removed:
            state.removed.discard(key)

    def __delitem__(self, key: str) -> None:
        self._use()
        dict.__delitem__(self, key)
        self._removed(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._use()
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            self[key] = value = default
        return value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """As `dict.update`; a reserved key refuses the whole update, before anything is changed."""
        new = dict(other, **kwargs)
        for key in RESERVED.intersection(new):
            _refuse(key)
        self._use()
        dict.update(self, new)
        for key in new:
            self._set(key)

    def __ior__(self, other: Any) -> SessionData:  # type: ignore[override]
        self.update(other)
        return self

    def pop(self, key: str, /, *default: Any) -> Any:
        self._use()
        value = dict.pop(self, key, _MISSING)
        if value is _MISSING:
            if default:
                return default[0]
            raise KeyError(key)
        self._removed(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        """The last key set and its value, removed (LIFO, as `dict.popitem`)."""
        self._use()
        key, value = dict.popitem(self)
        self._removed(key)
        return key, value

    def clear(self) -> None:
        self._use()
        for key in dict.__iter__(self):
            self._removed(key)
        dict.clear(self)


class SessionState:
    """What the backend keeps of one request's session beside its data: which keys changed, what was
    loaded, and what the response must do. The app never sees it; `state_of(session)` reaches it.

    Each field starts at its class-level default, and only what a request changes is stored on the
    instance: one is made per request, and most requests change nothing."""

    accessed = False  # the request read or wrote the session: the response varies on Cookie
    changed: set[str] | None = None  # keys set since the session was loaded or saved
    removed: set[str] | None = None  # keys deleted since then
    everything = False  # modified = True: write every key
    refresh = False  # touch() asked for a new expiry
    dropped = False  # the row the request's cookie named was deleted (destroy, regenerate)
    send_cookie = False  # the session was written (or its expiry moved): the response sends it
    # As the backend's read() found the row: its expiresAt, and its data as text while that is still what
    # this session last saw (the compare of a compare-and-set write), or None.
    row_expires: datetime | None = None
    loaded_text: str | None = None
    # With absolute_timeout: when the session ends, however active it is.
    absolute_expires: datetime | None = None
    # The stored device record (devices.py).
    device: Any = None
    # The request's ASGI scope, where the lifecycle needs it: a device record is stamped from it, and a
    # `genid` that takes the request is given it.
    request_scope: MutableMapping[str, Any] | None = None
    secure = False  # the request came over https

    @property
    def modified(self) -> bool:
        """A key was set or deleted since the session was loaded or saved, or `modified = True`."""
        return self.everything or bool(self.changed) or bool(self.removed)

    def changes(self, data: dict[str, Any]) -> tuple[set[str], set[str]]:
        """The keys of `data` to write and the keys to delete, to bring the stored row up to date."""
        changed = set(data) if self.everything else set(self.changed or ())
        return changed, set(self.removed or ())
