"""New session ids: the default generator, or the app's `genid`, called as express-session calls it."""

from __future__ import annotations

import inspect
import secrets as random_source
from collections.abc import Callable, MutableMapping
from typing import Any, TypeAlias

from starlette.requests import Request

from .exceptions import ConfigurationError
from .signing import is_valid_session_id

# `genid()`, or express-session's `genid(req)` with the Starlette request.
GenId: TypeAlias = Callable[[], str] | Callable[[Request], str]


class SessionIds:
    """Makes new session ids with `genid` (default: 24 random bytes, URL-safe)."""

    def __init__(self, genid: GenId | None) -> None:
        if genid is not None and not callable(genid):
            raise ConfigurationError("genid must be a callable that returns a new session id")
        self._genid: Callable[..., str] = genid or _default_genid
        #: genid takes the request: it is given the scope the session keeps (see `new`).
        self.takes_request = genid is not None and _takes_request(genid)

    def new(self, scope: MutableMapping[str, Any] | None) -> str:
        """A new id; `scope` is the request's, for a genid that takes the request."""
        if self.takes_request:
            sid = self._genid(Request(_no_request() if scope is None else scope))
        else:
            sid = self._genid()
        if not is_valid_session_id(sid):
            raise ValueError(f"genid must return 1 to 255 visible ASCII characters, returned {sid!r:.80}")
        return sid


def _no_request() -> dict[str, Any]:
    """What a genid that takes the request gets outside one (testing.create_session): a GET of /
    without headers. A new one each call: what a genid writes (`request.state`) stays with its call."""
    return {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}


def _default_genid() -> str:
    return random_source.token_urlsafe(24)


def _takes_request(genid: Callable[..., str]) -> bool:
    """Whether `genid` is called with the request (express-session's `genid(req)`): when it needs one
    positional argument. One that can be called with none (`secrets.token_hex`) gets none."""
    try:
        signature = inspect.signature(genid)
    except (TypeError, ValueError):
        return False  # a builtin without a signature: called as it was before
    for arguments in ((), (None,)):
        try:
            signature.bind(*arguments)
        except TypeError:
            continue
        return bool(arguments)
    raise ConfigurationError(f"genid must take no argument or one (the request), not {signature}")
