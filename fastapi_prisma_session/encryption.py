"""Encryption at rest: the session's data sealed with AES-256-GCM in the `data` column, its cookie (and
the `user_key` field) left readable beside it.

A sealed row is JSON as any other, with the user's keys replaced by one entry:

    {"cookie": {...}, "user_id": 42, "__encrypted": "v1.<kid>.<base64url(nonce + ciphertext + tag)>"}

so expiry, pruning, `touch`, the user-key index and the Node side's cookie handling still read it. `kid`
is the hex of the first 4 bytes of the key's SHA-256: a row names the key it was sealed with, and rotation
(`encryption_keys=[newest, ...older]`) finds it. The associated data is the token's "v1.<kid>" header.
The ciphertext is not bound to the row's sid: Node's serializer never sees the sid, and
`regenerate(keep_data=True)` moves a row to a new sid in SQL without reading it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .cookies import COOKIE_KEY
from .exceptions import ConfigurationError

#: The data key a sealed row keeps its ciphertext under (the session's own keys may not use it).
ENVELOPE_KEY = "__encrypted"
#: The environment variable the CLI and the demo read keys from, by default.
KEYS_ENV = "SESSION_ENCRYPTION_KEYS"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
# The cookie always stays readable: the store and Node read the expiry from it.
_ALWAYS_PLAIN = (COOKIE_KEY,)
# urlsafe base64 to the standard alphabet, which `validate=True` checks character by character.
_URLSAFE = str.maketrans("-_", "+/")
_MISSING_PACKAGE = (
    "encryption_keys needs the cryptography package: pip install 'fastapi-prisma-session[encryption]'"
)


class UnreadableEnvelope(Exception):
    """A sealed row that cannot be opened: an unknown key id, a failed authentication, a broken token."""


def key_id(key: bytes) -> str:
    """The id a row sealed with `key` names it by."""
    return hashlib.sha256(key).digest()[:4].hex()


def decode_key(key: bytes | str) -> bytes:
    """A key as its 32 bytes: given raw, or as urlsafe base64 text (padding optional)."""
    if isinstance(key, str):
        try:
            raw = _b64decode(key.strip())
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "an encryption key given as text must be urlsafe base64 of 32 bytes"
            ) from None
    elif isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    else:
        kind = type(key).__name__
        raise ConfigurationError(f"an encryption key is 32 bytes or their base64 text, got {kind}")
    if len(raw) != KEY_BYTES:
        raise ConfigurationError(
            f"an encryption key must be {KEY_BYTES} bytes (AES-256), got {len(raw)}; make one with "
            '`python -c "import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32))'
            '.decode())"`'
        )
    return raw


def _b64decode(text: str) -> bytes:
    """urlsafe (or standard) base64, padded or not, every character checked. Raises binascii.Error."""
    return base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)


def keys_from_environment(name: str = KEYS_ENV, environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys in the environment variable `name`: base64 keys separated by commas, newest first; an
    empty list when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "")
    return [part.strip() for part in value.split(",") if part.strip()]


def new_key() -> str:
    """A new random key, as the urlsafe base64 text `encryption_keys` and the environment take."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


class Encryption:
    """Seals and opens session data with `keys` (newest first); `plain` are the data keys besides the
    cookie that stay readable (the store's `user_key`)."""

    def __init__(self, keys: Sequence[bytes | str], plain: Iterable[str] = ()) -> None:
        if isinstance(keys, (str, bytes)) or not keys:
            raise ConfigurationError(
                "encryption_keys must be a non-empty list of keys, newest first: [newest, ...older]"
            )
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigurationError(_MISSING_PACKAGE) from None
        self._ciphers: dict[str, Any] = {}
        for key in keys:
            raw = decode_key(key)
            kid = key_id(raw)
            if kid in self._ciphers:
                raise ConfigurationError(f"encryption_keys holds the key {kid} twice")
            self._ciphers[kid] = AESGCM(raw)
        #: The id of the key every write seals with.
        self.current = next(iter(self._ciphers))
        self.plain = (*_ALWAYS_PLAIN, *(key for key in plain if key not in _ALWAYS_PLAIN))

    def __repr__(self) -> str:
        return f"<Encryption keys={list(self._ciphers)}>"

    def seal(self, data: Mapping[str, Any], dumps: Callable[[Any], str]) -> dict[str, Any]:
        """`data` as stored: its readable keys, and the rest serialized by `dumps` and sealed."""
        plain = self.plain
        # The user_key field is sealed too: its readable copy serves the index, the sealed one the session,
        # so that editing the readable copy in the table cannot change whose session it is.
        hidden = {key: value for key, value in data.items() if key not in _ALWAYS_PLAIN}
        header = f"{VERSION}.{self.current}"
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, dumps(hidden).encode(), header.encode())
        envelope = {key: data[key] for key in plain if key in data}
        envelope[ENVELOPE_KEY] = f"{header}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"
        return envelope

    def open(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The session `stored` (a sealed row's JSON) holds. Raises UnreadableEnvelope."""
        token = stored.get(ENVELOPE_KEY)
        if not isinstance(token, str) or token.count(".") != 2:
            raise UnreadableEnvelope("not a v1 token")
        version, kid, body = token.split(".")
        cipher = self._ciphers.get(kid)
        if version != VERSION or cipher is None:
            raise UnreadableEnvelope(f"sealed with an unknown key {kid[:8]!r}")
        try:
            raw = _b64decode(body)
            text = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{version}.{kid}".encode())
            hidden = json.loads(text)
        except Exception:  # InvalidTag, a broken base64 body, a body too short: all the same to a reader
            raise UnreadableEnvelope(f"fails authentication with key {kid}") from None
        if not isinstance(hidden, dict):
            raise UnreadableEnvelope("does not hold an object")
        # Only the cookie is taken from the readable part: any other readable key, added or changed by
        # whoever can write to the table, is not the session's.
        data = {key: stored[key] for key in _ALWAYS_PLAIN if key in stored}
        data.update(hidden)
        return data

    def sealed_with(self, stored: Mapping[str, Any]) -> str | None:
        """The key id a stored row was sealed with, or None for a plain row."""
        token = stored.get(ENVELOPE_KEY)
        if not isinstance(token, str):
            return None
        parts = token.split(".")
        return parts[1] if len(parts) == 3 else ""
