"""express-session's signed cookie value, and finding it in a request's Cookie headers.

A signed value is `"s:" + sid + "." + base64(HMAC-SHA256(secret, sid))` with the `=` padding stripped,
URL-encoded as `encodeURIComponent` does, byte for byte what express-session (cookie-signature) sends.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from .exceptions import ConfigurationError

logger = logging.getLogger("fastapi_prisma_session.signing")

# Shorter secrets are warned about: 32 characters carry 128 bits even as hex digits, the length OWASP's
# Session Management Cheat Sheet asks of a session ID (at least 64 bits of it entropy).
MIN_SECRET_LENGTH = 32

# Browsers cap a cookie at 4096 bytes; anything longer is not ours and is not worth an HMAC.
MAX_COOKIE_VALUE_LENGTH = 4096
# The most cookie values, and Cookie headers, a Signer remembers as verified; past it, it starts again
# from none. Headers longer than MAX_REMEMBERED_HEADER bytes are not remembered (at most 8 MB in all).
VERIFIED_LIMIT = 4096
MAX_REMEMBERED_HEADER = 2048
# What encodeURIComponent leaves alone, besides letters and digits.
_URI_COMPONENT_SAFE = "-_.!~*'()"
_ENCODE_URI_COMPONENT = {
    code: f"%{code:02X}"
    for code in range(0x20, 0x7F)
    if not (chr(code).isascii() and chr(code).isalnum()) and chr(code) not in _URI_COMPONENT_SAFE
}

# A session id is 1 to 255 visible ASCII characters: what express-session's uid-safe, cuid2 and the
# default genid all produce. Anything else (a NUL byte, say) could not even be stored in PostgreSQL.
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,255}")


def is_valid_session_id(sid: object) -> bool:
    return isinstance(sid, str) and _SESSION_ID.fullmatch(sid) is not None


class Signer:
    """Signs with the first secret and accepts a signature made with any of them (key rotation)."""

    def __init__(self, secrets: str | Sequence[str]) -> None:
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ConfigurationError("secret must be a non-empty string, or a non-empty list of them")
        # A keyed HMAC per secret, copied for each signature: cheaper than keying one per request. Where
        # the hmac module wraps OpenSSL's HMAC (its `_hmac`), the OpenSSL object is copied directly,
        # without the wrapper's Python-level copy; both have the same copy/update/digest.
        macs = [hmac.new(key.encode(), digestmod=hashlib.sha256) for key in keys]
        self._keys: list[Any] = [getattr(mac, "_hmac", None) or mac for mac in macs]
        # Cookie values whose signature checked out, and their sid. A session's browser sends the same
        # value with every request, and its HMAC need not be computed again: the keys never change, and
        # only values that were verified are here, so a forged one is checked in full as ever (finding
        # it here would take the exact text of a valid one). Bounded: emptied when full.
        self._verified: dict[str, str] = {}
        # The same for whole Cookie headers, by cookie name (find_session_id).
        self._headers: dict[str, dict[bytes, str]] = {}

    def _signature(self, key_index: int, value: bytes) -> bytes:
        mac = self._keys[key_index].copy()
        mac.update(value)
        return binascii.b2a_base64(mac.digest(), newline=False).rstrip(b"=")

    def signature(self, value: str, key_index: int = 0) -> str:
        return self._signature(key_index, value.encode()).decode()

    def sign(self, value: str) -> str:
        """cookie-signature's `sign(value, secret)`: `value.signature`."""
        return f"{value}.{self.signature(value)}"

    def unsign(self, signed: str) -> str | None:
        """The value if `signed` carries a valid signature from any secret, else None (constant time)."""
        value, dot, signature = signed.rpartition(".")
        if not dot:
            return None
        given, message = signature.encode(), value.encode()
        valid = False
        for index in range(len(self._keys)):
            valid |= hmac.compare_digest(self._signature(index, message), given)
        return value if valid else None

    def cookie_value(self, sid: str) -> str:
        """The URL-encoded cookie value for `sid`, as it goes into Set-Cookie."""
        # Valid ids are visible ASCII and signatures base64, so a translation table encodes them
        # exactly as encodeURIComponent (and urllib's quote) would, several times faster.
        return ("s:" + self.sign(sid)).translate(_ENCODE_URI_COMPONENT)

    def session_id(self, raw_value: str) -> str | None:
        """The sid inside a cookie value as the browser sent it, or None if it is not validly signed."""
        sid = self._verified.get(raw_value)
        if sid is None:
            sid = self._verify(raw_value)
            if sid is not None:
                if len(self._verified) >= VERIFIED_LIMIT:
                    self._verified = {}  # rebound, not cleared: a reader on another thread is unharmed
                self._verified[raw_value] = sid
        return sid

    def _verify(self, raw_value: str) -> str | None:
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

    def find_session_id(self, headers: Iterable[tuple[bytes, bytes]], name: str) -> tuple[str | None, int]:
        """The first validly signed sid in cookie `name` of the ASGI headers, and how many values of
        that cookie were rejected before it (forged, tampered, or signed with a retired secret)."""
        rejected = 0
        first = True
        for header, value in headers:
            if header == b"cookie":
                if first:
                    # A browser sends the same Cookie header request after request: one whose own
                    # first value of `name` was verified before gives its sid at once.
                    first = False
                    known = self._headers.get(name)
                    sid = None if known is None else known.get(value)
                    if sid is not None:
                        return sid, 0
                for candidate in cookie_values(value.decode("latin-1"), name):
                    sid = self.session_id(candidate)
                    if sid is not None:
                        if not rejected:
                            self._remember(name, value, sid)
                        return sid, rejected
                    rejected += 1
        return None, rejected

    def _remember(self, name: str, header: bytes, sid: str) -> None:
        """Remember that the Cookie header `header` holds, as its first value of cookie `name` and with no
        rejected value before it, one validly signed for `sid`."""
        if len(header) > MAX_REMEMBERED_HEADER:
            return
        known = self._headers.get(name)
        if known is None or len(known) >= VERIFIED_LIMIT:
            known = self._headers[name] = {}  # a new one: a reader on another thread is unharmed
        known[header] = sid


def warn_if_short(secrets: str | Sequence[str]) -> None:
    """Log a warning for each secret shorter than MIN_SECRET_LENGTH (each of a rotation list, by its
    place in it). The secret itself is never logged."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    for place, key in enumerate(keys, 1):
        if len(key) < MIN_SECRET_LENGTH:
            which = "secret" if len(keys) == 1 else f"secret {place} of {len(keys)}"
            logger.warning(
                "%s is %d character%s long: a short secret can be found offline from any one signed "
                "cookie, and then forged cookies pass the signature check. OWASP's Session Management "
                "Cheat Sheet asks of a session ID at least 64 bits of entropy from a good random "
                "generator, and the secret that signs it should be no weaker: use a random secret of "
                "%d characters or more, such as the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                which,
                len(key),
                "" if len(key) == 1 else "s",
                MIN_SECRET_LENGTH,
            )


def cookie_values(header: str, name: str) -> Iterator[str]:
    """Every value of cookie `name` in a Cookie header, in order (a name may be sent more than once)."""
    for part in header.split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            yield value.strip()
