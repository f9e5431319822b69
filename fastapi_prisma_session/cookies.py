"""The session cookie: express-session's signed value, reading it from a request, writing Set-Cookie.

A signed value is `"s:" + sid + "." + base64(HMAC-SHA256(secret, sid))` with the `=` padding stripped,
URL-encoded as `encodeURIComponent` does, byte for byte what express-session (cookie-signature) sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal
from urllib.parse import unquote

SameSite = Literal["lax", "strict", "none"]
Priority = Literal["low", "medium", "high"]

# Browsers cap a cookie at 4096 bytes; anything longer is not ours and is not worth an HMAC.
MAX_COOKIE_VALUE_LENGTH = 4096
# What encodeURIComponent leaves alone, besides letters and digits.
_URI_COMPONENT_SAFE = "-_.!~*'()"
_ENCODE_URI_COMPONENT = {
    code: f"%{code:02X}"
    for code in range(0x20, 0x7F)
    if not (chr(code).isascii() and chr(code).isalnum()) and chr(code) not in _URI_COMPONENT_SAFE
}
_EPOCH_EXPIRES = "Thu, 01 Jan 1970 00:00:00 GMT"


# A session id is 1 to 255 visible ASCII characters: what express-session's uid-safe, cuid2 and the
# default genid all produce. Anything else (a NUL byte, say) could not even be stored in PostgreSQL.
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,255}")


def is_valid_session_id(sid: str) -> bool:
    return _SESSION_ID.fullmatch(sid) is not None


class Signer:
    """Signs with the first secret and accepts a signature made with any of them (key rotation)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._keys = [hmac.new(secret.encode(), digestmod=hashlib.sha256) for secret in secrets]

    def signature(self, value: str, key_index: int = 0) -> str:
        mac = self._keys[key_index].copy()
        mac.update(value.encode())
        return base64.b64encode(mac.digest()).decode().rstrip("=")

    def sign(self, value: str) -> str:
        """cookie-signature's `sign(value, secret)`: `value.signature`."""
        return f"{value}.{self.signature(value)}"

    def unsign(self, signed: str) -> str | None:
        """The value if `signed` carries a valid signature from any secret, else None (constant time)."""
        value, dot, signature = signed.rpartition(".")
        if not dot:
            return None
        given = signature.encode()
        valid = False
        for index in range(len(self._keys)):
            valid |= hmac.compare_digest(self.signature(value, index).encode(), given)
        return value if valid else None

    def cookie_value(self, sid: str) -> str:
        """The URL-encoded cookie value for `sid`, as it goes into Set-Cookie."""
        # Valid ids are visible ASCII and signatures base64, so a translation table encodes them
        # exactly as encodeURIComponent (and urllib's quote) would, several times faster.
        return ("s:" + self.sign(sid)).translate(_ENCODE_URI_COMPONENT)

    def session_id(self, raw_value: str) -> str | None:
        """The sid inside a cookie value as the browser sent it, or None if it is not validly signed."""
        if len(raw_value) > MAX_COOKIE_VALUE_LENGTH:
            return None
        if raw_value.startswith('"') and raw_value.endswith('"') and len(raw_value) >= 2:
            raw_value = raw_value[1:-1]
        value = raw_value
        if "%" in value:
            # Our own cookies only ever hold these three escapes; anything else gets full decoding.
            value = value.replace("%3A", ":").replace("%2F", "/").replace("%2B", "+")
            if "%" in value:
                value = unquote(raw_value)
        if not value.startswith("s:"):
            return None
        sid = self.unsign(value[2:])
        return sid if sid is not None and is_valid_session_id(sid) else None


def cookie_values(header: str, name: str) -> Iterator[str]:
    """Every value of cookie `name` in a Cookie header, in order (a name may be sent more than once)."""
    for part in header.split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            yield value.strip()


def iso_utc(moment: datetime) -> str:
    """JavaScript's `Date.prototype.toISOString()` for a naive UTC datetime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> datetime | None:
    """The naive UTC datetime an ISO-8601 string (as `toISOString()` writes it) names, or None."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def http_date(moment: datetime) -> str:
    """The Expires attribute's format (`Date.prototype.toUTCString()`) for a naive UTC datetime."""
    return format_datetime(moment.replace(microsecond=0, tzinfo=UTC), usegmt=True)


@dataclass(frozen=True, slots=True)
class CookieAttributes:
    """The attributes every session cookie gets, in the order the `cookie` npm package writes them."""

    name: str
    path: str = "/"
    domain: str | None = None
    httponly: bool = True
    partitioned: bool = False
    priority: Priority | None = None
    samesite: SameSite | None = "lax"

    def set_cookie(self, value: str, expires: datetime | None, secure: bool) -> str:
        parts = [f"{self.name}={value}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts.append(f"Path={self.path}")
        if expires is not None:
            parts.append(f"Expires={http_date(expires)}")
        parts.extend(self._flags(secure))
        return "; ".join(parts)

    def clear_cookie(self, secure: bool) -> str:
        """A Set-Cookie that makes the browser forget the session cookie."""
        parts = [f"{self.name}="]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts += [f"Path={self.path}", f"Expires={_EPOCH_EXPIRES}", *self._flags(secure)]
        return "; ".join(parts)

    def _flags(self, secure: bool) -> list[str]:
        flags = []
        if self.httponly:
            flags.append("HttpOnly")
        if secure:
            flags.append("Secure")
        if self.partitioned:
            flags.append("Partitioned")
        if self.priority:
            flags.append(f"Priority={self.priority.capitalize()}")
        if self.samesite:
            flags.append(f"SameSite={self.samesite.capitalize()}")
        return flags
