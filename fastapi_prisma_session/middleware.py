"""`SessionMiddleware`: the pure-ASGI middleware that loads and saves the session of each request."""

from __future__ import annotations

import logging
import secrets as random_source
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from starlette.datastructures import MutableHeaders

from .cookies import (
    CookieAttributes,
    Priority,
    SameSite,
    Signer,
    cookie_values,
    is_valid_session_id,
    iso_utc,
    parse_iso_utc,
)
from .durations import Duration, to_seconds
from .exceptions import ConfigurationError, StoreUnavailableError
from .logs import middleware_logger, redact
from .session import Session, SessionCookie
from .store import COOKIE_KEY, PrismaSessionStore, utcnow

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = middleware_logger

DEFAULT_MAX_AGE = 14 * 24 * 3600
# Without an explicit touch_after, an unchanged session's expiry is rewritten at most once per this
# fraction of its lifetime.
DEFAULT_TOUCH_FRACTION = 0.1


class SessionMiddleware:
    """Server-side sessions for Starlette and FastAPI, cookie-compatible with express-session.

    Args:
        app: the ASGI app to wrap.
        store: where sessions live.
        secret: the key that signs the cookie, or a list of keys: the first signs, all verify (rotation).
        cookie_name: the cookie's name; express-session's default is `connect.sid`.
        max_age: cookie and session lifetime in seconds or a timedelta; None for a cookie that ends with
            the browser session.
        path, domain, httponly, samesite, partitioned, priority: the cookie's attributes.
        secure: True, False, or "auto" (Secure when the request came over https).
        proxy: trust `X-Forwarded-Proto` when deciding whether the request is https.
        rolling: re-send the cookie with a fresh expiry on every response (the stored expiry is rewritten
            at most once per `touch_after`).
        resave: save the session on every response even when it was not modified.
        save_uninitialized: save new sessions that were never modified (default: anonymous traffic costs
            no rows).
        unset: what happens to the stored session when the app removes `scope["session"]`:
            "keep" leaves it, "destroy" deletes it.
        genid: `callable() -> str` that makes new session ids; default 24 random bytes, URL-safe.
        touch_after: seconds that must pass before an unchanged session's expiry is rewritten; default a
            tenth of its lifetime.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: PrismaSessionStore,
        secret: str | Sequence[str],
        cookie_name: str = "connect.sid",
        max_age: Duration | None = DEFAULT_MAX_AGE,
        path: str = "/",
        domain: str | None = None,
        secure: bool | Literal["auto"] = "auto",
        httponly: bool = True,
        samesite: SameSite | Literal[False] | None = "lax",
        partitioned: bool = False,
        priority: Priority | None = None,
        rolling: bool = False,
        resave: bool = False,
        save_uninitialized: bool = False,
        unset: Literal["keep", "destroy"] = "keep",
        genid: Callable[[], str] | None = None,
        proxy: bool = False,
        touch_after: Duration | None = None,
    ) -> None:
        self.app = app
        if not isinstance(store, PrismaSessionStore):
            raise ConfigurationError(
                "store must be a PrismaSessionStore, e.g. PrismaSessionStore(DATABASE_URL)"
            )
        self.store = store
        secrets_list = [secret] if isinstance(secret, str) else list(secret)
        if not secrets_list or not all(isinstance(s, str) and s for s in secrets_list):
            raise ConfigurationError("secret must be a non-empty string, or a non-empty list of them")
        self._signer = Signer(secrets_list)
        self._max_age = to_seconds(max_age, "max_age", allow_zero=False)
        self._touch_after = to_seconds(touch_after, "touch_after")
        _check_choice("secure", secure, (True, False, "auto"))
        _check_choice("samesite", samesite, ("lax", "strict", "none", False, None))
        _check_choice("priority", priority, ("low", "medium", "high", None))
        _check_choice("unset", unset, ("keep", "destroy"))
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"path must start with '/', got {path!r}")
        if genid is not None and not callable(genid):
            raise ConfigurationError("genid must be a callable that returns a new session id")
        _check_cookie_name(cookie_name, secure=secure, path=path, domain=domain)
        if samesite == "none" and secure is False:
            raise ConfigurationError(
                "samesite='none' needs secure=True or 'auto': browsers reject it otherwise"
            )
        self.cookie = CookieAttributes(
            name=cookie_name,
            path=path,
            domain=domain,
            httponly=httponly,
            partitioned=partitioned,
            priority=priority,
            samesite=samesite or None,
        )
        self._secure = secure
        self._proxy = proxy
        self._rolling = rolling
        self._resave = resave
        self._save_uninitialized = save_uninitialized
        self._unset = unset
        self._genid = genid or _default_genid
        self._path = path  # read on every request; saves two attribute lookups

    # -- ASGI ----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket") or not scope["path"].startswith(self._path):
            await self.app(scope, receive, send)
            return

        secure = self._request_is_secure(scope)
        sid = self._session_id_from_cookie(scope)
        try:
            session = (await self._load(sid, secure)) if sid is not None else self._new_session(secure)
        except StoreUnavailableError as error:
            await _unavailable(scope, send, error)
            return
        scope["session"] = session
        scope.setdefault("state", {})["session"] = session
        if kind == "websocket":
            # A websocket handshake cannot set cookies; the session is there to read.
            await self.app(scope, receive, send)
            return

        failed = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal failed
            if failed:
                return  # the app's response was replaced by a 503
            # The commonest response, a new session nobody touched, costs nothing more than this test.
            if message["type"] == "http.response.start" and (
                session._accessed
                or not session.is_new
                or self._save_uninitialized
                or scope.get("session") is not session
            ):
                try:
                    set_cookie = await self._commit(scope, session)
                except StoreUnavailableError as error:
                    failed = True
                    await _unavailable(scope, send, error)
                    return
                headers = MutableHeaders(scope=message)
                if set_cookie is not None:
                    headers.append("set-cookie", set_cookie)
                if session._accessed or set_cookie is not None:
                    _mark_private(headers)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _lifespan_send(self, send: Send) -> Send:
        # Pruning follows the app's lifespan, so users add nothing to theirs.
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.store.start_interval()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.store.shutdown()
            await send(message)

        return lifespan_send

    # -- reading the request -------------------------------------------------------------------------

    def _session_id_from_cookie(self, scope: Scope) -> str | None:
        rejected = 0
        for name, value in scope["headers"]:
            if name == b"cookie":
                for candidate in cookie_values(value.decode("latin-1"), self.cookie.name):
                    sid = self._signer.session_id(candidate)
                    if sid is not None:
                        return sid
                    rejected += 1
        if rejected and logger.isEnabledFor(logging.INFO):
            # Forged, tampered, or signed with a secret no longer configured: ignored before any query.
            logger.info(
                "rejected %d session cookie(s) without a valid signature from %s", rejected, _client(scope)
            )
        return None

    def _request_is_secure(self, scope: Scope) -> bool:
        if scope.get("scheme") in ("https", "wss"):
            return True
        if self._proxy:
            for name, value in scope["headers"]:
                if name == b"x-forwarded-proto":
                    return bool(value.split(b",", 1)[0].strip().lower() == b"https")
        return False

    async def _load(self, sid: str, secure: bool) -> Session:
        stored = await self.store.load(sid)
        if stored is None:
            logger.debug("no live session %s; starting a new one", redact(sid))
            return self._new_session(secure)
        data = stored.data
        cookie = _cookie_from_json(data.pop(COOKIE_KEY, None))
        if cookie is None:
            logger.warning("session %s has no readable cookie object; starting a new session", redact(sid))
            return self._new_session(secure)
        session = Session(self, data, cookie, sid)
        session._row_expires = stored.expires_at
        session._loaded_text = stored.text
        session._secure = secure
        return session

    def _new_session(self, secure: bool) -> Session:
        session = Session(self, {}, SessionCookie(self._max_age, started=False))
        session._secure = secure
        return session

    def generate_id(self) -> str:
        sid = self._genid()
        if not isinstance(sid, str) or not is_valid_session_id(sid):
            raise ValueError(f"genid must return 1 to 255 visible ASCII characters, returned {sid!r:.80}")
        return sid

    # -- writing the response ------------------------------------------------------------------------

    async def save(self, session: Session) -> bool:
        """Write `session` now: an INSERT for a new one, an UPDATE for a loaded one.

        Returns False when a loaded session's row is gone (destroyed or pruned meanwhile): it is not
        brought back.
        """
        session.cookie.reset()
        payload = self._payload(session)
        if session.is_new:
            await self.store.create(session.id, payload)
            logger.debug("created session %s", redact(session.id))
            session.is_new = False
            written = True
        else:
            changed, removed = session.changes()
            if self._resave:
                changed = set(session._data)
            written = await self.store.update(
                session.id, payload, changed=changed, removed=removed, expected=session._loaded_text
            )
            session._loaded_text = None  # what is stored now is no longer known here
        session.modified = session._refresh = session.cookie._changed = False
        session._send_cookie = written
        return written

    async def _commit(self, scope: Scope, session: Session) -> str | None:
        """Persist what the request did to the session; returns the Set-Cookie value, if any."""
        secure = session._secure
        if scope.get("session") is not session:
            # The app removed the session from the request.
            if self._unset == "destroy":
                await session.destroy()
        elif session.is_new:
            if session.modified or (self._save_uninitialized and not session._dropped):
                await self.save(session)
        elif session.modified or session._refresh or session.cookie._changed or self._resave:
            await self.save(session)
        elif self._rolling or session.cookie.original_max_age is None:
            await self._touch_if_due(session)

        if self._secure is True and not secure:
            return None  # a Secure cookie would be dropped by the browser on http
        if session._send_cookie:
            return self.cookie.set_cookie(
                self._signer.cookie_value(session.id), session.cookie.expires, self._cookie_secure(secure)
            )
        if session._dropped:
            return self.cookie.clear_cookie(self._cookie_secure(secure))
        return None

    async def _touch_if_due(self, session: Session) -> None:
        """Refresh an unchanged session's expiry, at most once per `touch_after`."""
        row_expires = session._row_expires
        cookie = SessionCookie(session.cookie.original_max_age, None)
        cookie.reset()
        payload = {COOKIE_KEY: self._cookie_json(cookie, session._secure), **session._data}
        lifetime = self.store.lifetime(session.id, payload)
        touch_after = (
            self._touch_after if self._touch_after is not None else lifetime * DEFAULT_TOUCH_FRACTION
        )
        if row_expires is not None and lifetime - (row_expires - utcnow()).total_seconds() < touch_after:
            return
        if await self.store.touch(session.id, payload):
            session.cookie.expires = cookie.expires
            session._send_cookie = self._rolling

    def _payload(self, session: Session) -> dict[str, Any]:
        return {COOKIE_KEY: self._cookie_json(session.cookie, session._secure), **session._data}

    def _cookie_json(self, cookie: SessionCookie, secure: bool) -> dict[str, Any]:
        """express-session's `cookie` object, with its keys in express-session's order."""
        attrs = self.cookie
        original = cookie.original_max_age
        data: dict[str, Any] = {"originalMaxAge": None if original is None else round(original * 1000)}
        if attrs.partitioned:
            data["partitioned"] = True
        if attrs.priority:
            data["priority"] = attrs.priority
        data["expires"] = None if cookie.expires is None else iso_utc(cookie.expires)
        if self._cookie_secure(secure):
            data["secure"] = True
        data["httpOnly"] = attrs.httponly
        if attrs.domain:
            data["domain"] = attrs.domain
        data["path"] = attrs.path
        if attrs.samesite:
            data["sameSite"] = attrs.samesite
        return data

    def _cookie_secure(self, request_secure: bool) -> bool:
        return request_secure if self._secure == "auto" else bool(self._secure)


async def _unavailable(scope: Scope, send: Send, error: StoreUnavailableError) -> None:
    """Answer 503: the request needs its session and the database cannot be reached."""
    logger.error(
        "session store unavailable, answering 503 to %s %s: %s",
        scope.get("method", "WEBSOCKET"),
        scope["path"],
        error,
    )
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011, "reason": "session store unavailable"})
        return
    body = b"Session store unavailable; try again shortly.\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"5"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _mark_private(headers: MutableHeaders) -> None:
    """A response that read or wrote the session depends on the Cookie header, and must not be stored
    by a shared cache (it may carry one user's data or a Set-Cookie)."""
    headers.add_vary_header("Cookie")
    if "cache-control" not in headers:
        headers["cache-control"] = "private"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "an unknown client"


def _default_genid() -> str:
    return random_source.token_urlsafe(24)


def _cookie_from_json(value: object) -> SessionCookie | None:
    """The SessionCookie described by a stored express-session cookie object, or None if unreadable."""
    if not isinstance(value, dict):
        return None
    original = value.get("originalMaxAge")
    expires = value.get("expires")
    if original is not None and (not isinstance(original, (int, float)) or isinstance(original, bool)):
        return None
    if expires is None:
        when = None
    elif isinstance(expires, str):
        when = parse_iso_utc(expires)
        if when is None:
            return None
    else:
        return None
    return SessionCookie(None if original is None else original / 1000, when)


def _check_choice(option: str, value: object, allowed: Sequence[object]) -> None:
    if not any(value is choice or (type(value) is type(choice) and value == choice) for choice in allowed):
        raise ConfigurationError(f"{option} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_cookie_name(name: object, *, secure: object, path: str, domain: str | None) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in ' \t\r\n;,="()<>@:\\/[]?{}'):
        raise ConfigurationError(f"cookie_name must be a non-empty cookie token, got {name!r}")
    if name.startswith(("__Secure-", "__Host-")) and secure is False:
        raise ConfigurationError(f"a cookie named {name!r} must be Secure: use secure=True or 'auto'")
    if name.startswith("__Host-") and (path != "/" or domain is not None):
        raise ConfigurationError(f"a cookie named {name!r} needs path='/' and no domain")
