"""The session cookie: its attributes and Set-Cookie, its lifetime, and express-session's `cookie` object.

express-session keeps each session's cookie settings inside the stored session, under `COOKIE_KEY`;
`cookie_to_json` and `cookie_from_json` are the two directions of that object. How the cookie's value is
signed lives in `signing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeGuard

from .durations import LIFETIME_CEILING, Duration, naive_utc, to_seconds, utcnow
from .exceptions import ConfigurationError

SameSite = Literal["lax", "strict", "none"]
Priority = Literal["low", "medium", "high"]
Secure = bool | Literal["auto"]

# express-session keeps the cookie's settings in the session object under this key.
COOKIE_KEY = "cookie"
# With absolute_timeout, when the session ends however active it is, kept beside the data (Node
# leaves unknown keys alone, but drops unknown keys inside the cookie object).
ABSOLUTE_KEY = "__absoluteExpires"
# What `regenerate(keep_data=True)` leaves under the old id: no session, but where it went, so that a
# logout sent with the old cookie meanwhile ends the session under its new id too.
MOVED_KEY = "__regeneratedAs"
_EPOCH_EXPIRES = "Thu, 01 Jan 1970 00:00:00 GMT"
# A stored originalMaxAge beyond this (about 300 years) is not a lifetime but corrupt data.
MAX_AGE_MS = 10**13
_SEPARATORS = ' \t\r\n;,="()<>@:\\/[]?{}'  # RFC 9110's, not allowed in a token


class SessionCookie:
    """The session's lifetime, as express-session keeps it in `data.cookie`.

    `max_age` is the seconds left (None for a browser-session cookie); setting it gives this one session
    a new lifetime from now, which is saved and sent with the response. `expires` is a naive UTC
    datetime, or None for a browser-session cookie.
    """

    __slots__ = ("_changed", "_expires", "_fixed", "_started", "original_max_age")

    def __init__(
        self, original_max_age: float | None, expires: datetime | None = None, *, started: bool = True
    ):
        self.original_max_age = original_max_age
        self._expires = expires
        # A new session's lifetime starts when something first asks for it (usually its save): most
        # requests never create a session, and they should not pay for the clock.
        self._started = started
        self._changed = False
        self._fixed = False  # the app set `expires`: this save keeps it rather than starting anew

    @property
    def expires(self) -> datetime | None:
        """When the cookie and the session end (naive UTC), or None for a browser-session cookie.

        Setting it (express-session's `cookie.expires = date`) ends this session then: the response
        saves it and re-sends the cookie, and, as in express-session, `original_max_age` becomes the time
        left, which later requests of a rolling session start again from."""
        if not self._started:
            self.reset()
        return self._expires

    @expires.setter
    def expires(self, value: datetime | None) -> None:
        if value is not None:
            value = naive_utc(value)
        self._expires = value
        self._started = True
        self._changed = self._fixed = True
        self.original_max_age = None if value is None else max((value - utcnow()).total_seconds(), 0.0)

    def moved_to(self, expires: datetime | None) -> None:
        """The stored expiry moved (a touch): the cookie follows, nothing else changes."""
        self._expires = expires
        self._started = True

    @property
    def max_age(self) -> float | None:
        expires = self.expires
        return None if expires is None else (expires - utcnow()).total_seconds()

    @max_age.setter
    def max_age(self, value: Duration | None) -> None:
        self.original_max_age = to_seconds(value, "max_age", ceiling=LIFETIME_CEILING)
        self.reset()
        self._changed = True

    @property
    def changed(self) -> bool:
        """The app gave this session a new `max_age` or `expires` since it was last saved."""
        return self._changed

    @property
    def fixed(self) -> bool:
        """The app set `expires` since the last save: the save keeps it."""
        return self._fixed

    def reset(self, now: datetime | None = None) -> None:
        """Start the lifetime again from `now` (default: the clock)."""
        age = self.original_max_age
        if age is None:
            self._expires = None
        else:
            self._expires = (now or utcnow()) + timedelta(seconds=age)
        self._started = True

    def saved(self) -> None:
        self._changed = self._fixed = False

    def cap(self, latest: datetime) -> None:
        """End no later than `latest` (an absolute timeout)."""
        if self._expires is None or self._expires > latest:
            self._expires = latest


@dataclass(frozen=True, slots=True)
class CookieAttributes:
    """The attributes every session cookie gets, checked once, written in the `cookie` npm package's order.

    `secure` is True, False, or "auto" (Secure when the request came over https).
    """

    name: str = "connect.sid"
    path: str = "/"
    domain: str | None = None
    secure: Secure = "auto"
    httponly: bool = True
    partitioned: bool = False
    priority: Priority | None = None
    samesite: SameSite | None = "lax"

    def __post_init__(self) -> None:
        check_choice("secure", self.secure, (True, False, "auto"))
        check_choice("samesite", self.samesite, ("lax", "strict", "none", None))
        check_choice("priority", self.priority, ("low", "medium", "high", None))
        name = self.name
        if not isinstance(name, str) or not name or not _is_token(name):
            raise ConfigurationError(f"cookie_name must be a non-empty cookie token, got {name!r}")
        if not isinstance(self.path, str) or not self.path.startswith("/") or not _is_attribute(self.path):
            raise ConfigurationError(
                f"path must start with '/' and hold no ';', control or non-ASCII characters: {self.path!r}"
            )
        if self.domain is not None and (
            not isinstance(self.domain, str) or not self.domain or not _is_attribute(self.domain)
        ):
            raise ConfigurationError(
                f"domain must be a host name without ';', control or non-ASCII characters: {self.domain!r}"
            )
        if name.startswith(("__Secure-", "__Host-")) and self.secure is False:
            raise ConfigurationError(f"a cookie named {name!r} must be Secure: use secure=True or 'auto'")
        if name.startswith("__Host-") and (self.path != "/" or self.domain is not None):
            raise ConfigurationError(f"a cookie named {name!r} needs path='/' and no domain")
        if self.samesite == "none" and self.secure is False:
            raise ConfigurationError(
                "samesite='none' needs secure=True or 'auto': browsers reject it otherwise"
            )

    def is_secure(self, request_secure: bool) -> bool:
        """Whether the cookie gets the Secure flag on a request that came over https or not."""
        return request_secure if self.secure == "auto" else bool(self.secure)

    def set_cookie(self, value: str, expires: datetime | None, request_secure: bool) -> str:
        parts = [f"{self.name}={value}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts.append(f"Path={self.path}")
        if expires is not None:
            parts.append(f"Expires={http_date(expires)}")
        parts.extend(self._flags(request_secure))
        return "; ".join(parts)

    def clear_cookie(self, request_secure: bool) -> str:
        """A Set-Cookie that makes the browser forget the session cookie."""
        parts = [f"{self.name}="]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts += [f"Path={self.path}", f"Expires={_EPOCH_EXPIRES}", *self._flags(request_secure)]
        return "; ".join(parts)

    def to_json(self, cookie: SessionCookie, request_secure: bool) -> dict[str, Any]:
        """express-session's `cookie` object for `cookie`, with its keys in express-session's order."""
        original = cookie.original_max_age
        data: dict[str, Any] = {"originalMaxAge": None if original is None else round(original * 1000)}
        if self.partitioned:
            data["partitioned"] = True
        if self.priority:
            data["priority"] = self.priority
        data["expires"] = None if cookie.expires is None else iso_utc(cookie.expires)
        if self.is_secure(request_secure):
            data["secure"] = True
        data["httpOnly"] = self.httponly
        if self.domain:
            data["domain"] = self.domain
        data["path"] = self.path
        if self.samesite:
            data["sameSite"] = self.samesite
        return data

    def _flags(self, request_secure: bool) -> list[str]:
        flags = []
        if self.httponly:
            flags.append("HttpOnly")
        if self.is_secure(request_secure):
            flags.append("Secure")
        if self.partitioned:
            flags.append("Partitioned")
        if self.priority:
            flags.append(f"Priority={self.priority.capitalize()}")
        if self.samesite:
            flags.append(f"SameSite={self.samesite.capitalize()}")
        return flags


def path_matches(request_path: str, cookie_path: str) -> bool:
    """Whether a browser sends a cookie of `cookie_path` with a request for `request_path`: RFC 6265's
    path-match (section 5.1.4). The paths are the same, or the cookie's is a prefix of the request's
    that ends with "/" or is followed by "/" there: "/api" covers "/api" and "/api/x", not "/apix"."""
    if not request_path.startswith(cookie_path):
        return False
    end = len(cookie_path)
    return len(request_path) == end or cookie_path.endswith("/") or request_path[end] == "/"


def cookie_from_json(value: object) -> SessionCookie | None:
    """The SessionCookie described by a stored express-session cookie object, or None if unreadable."""
    if not isinstance(value, dict):
        return None
    original = value.get("originalMaxAge")
    expires = value.get("expires")
    if original is not None:
        # express-session's whole milliseconds tested first, without the call the general test costs.
        if not (type(original) is int and 0 <= original <= MAX_AGE_MS) and not _is_max_age_ms(original):
            return None
        original /= 1000
    if expires is None:
        when = None
    elif isinstance(expires, str):
        when = parse_iso_utc(expires)
        if when is None:
            return None
    else:
        return None
    return SessionCookie(original, when)


def cookie_expiry(value: object, now: datetime) -> datetime | None:
    """When an express-session cookie object says its session ends: its future `expires`, else now plus
    its `originalMaxAge`; None when it says neither (a browser-session cookie, or no cookie)."""
    if not isinstance(value, Mapping):
        return None
    expires = value.get("expires")
    when = parse_iso_utc(expires) if isinstance(expires, str) else None
    if when is not None:
        return when if when > now else None
    original = value.get("originalMaxAge")
    if _is_max_age_ms(original) and original > 0:
        return now + timedelta(milliseconds=original)
    return None


def iso_utc(moment: datetime) -> str:
    """JavaScript's `Date.prototype.toISOString()` for a UTC datetime (naive is UTC), milliseconds
    truncated."""
    # isoformat is C: a third of strftime's cost, on every save of a session with an expiry.
    return naive_utc(moment).isoformat(timespec="milliseconds") + "Z"


def parse_iso_utc(text: str) -> datetime | None:
    """The naive UTC datetime an ISO-8601 string (as `toISOString()` writes it) names, or None."""
    try:
        if len(text) == 24 and text[10] == "T" and text[23] == "Z":
            # toISOString()'s shape, and so every stored cookie's: parsed as naive, no time zone to undo.
            moment = datetime.fromisoformat(text[:23])
            if moment.tzinfo is None:
                return moment
        return naive_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):  # not a date, or out of datetime's range in UTC
        return None


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """The Expires attribute's format (`Date.prototype.toUTCString()`) for a naive UTC datetime."""
    # Spelled out: email.utils.format_datetime costs four times as much, on every Set-Cookie.
    return (
        f"{_WEEKDAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def _is_max_age_ms(value: object) -> TypeGuard[int | float]:
    """A lifetime in ms that a datetime can hold: finite, not negative, not past MAX_AGE_MS."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_AGE_MS
    )


def check_choice(option: str, value: object, allowed: Sequence[object]) -> None:
    if not any(value is choice or (type(value) is type(choice) and value == choice) for choice in allowed):
        raise ConfigurationError(f"{option} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _is_token(name: str) -> bool:
    return name.isascii() and name.isprintable() and not any(c in name for c in _SEPARATORS)


def _is_attribute(value: str) -> bool:
    """A Set-Cookie attribute value that cannot end its attribute or split the header."""
    return value.isascii() and value.isprintable() and ";" not in value
