"""A user's devices: `list_devices`, `revoke_device` and `revoke_other_devices`, for a "your devices" page.

The user is the one the request's session names under the store's `user_key`: a request can list and
end only the sessions of its own user. Their sessions are found through the user-key index (one
SELECT, however many rows the table holds), and each is named by a handle, the HMAC of its id keyed by
the middleware's secret: the page never sees another session's id, and a handle cannot be turned into a
cookie, nor made up for a session of another user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .cookies import parse_iso_utc
from .dependencies import load_session
from .devices import DEVICE_KEY
from .lifecycle import SessionLifecycle
from .signing import Signer
from .store import PrismaSessionStore

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from .session import Session

__all__ = ["Device", "list_devices", "revoke_device", "revoke_other_devices"]

# Handles travel in forms and URLs as base64url; the signer's signatures are standard base64.
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")
# A handle is 43 characters; anything much longer is not one and is not worth an HMAC.
MAX_HANDLE_LENGTH = 200
# What a handle can hold: base64url. Anything else (a dot, a space, non-ASCII, a lone surrogate from
# JSON's "\ud800") names no session, and is turned away before it is encoded for the HMAC.
_HANDLE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One live session of the user, as its device record has it. A field the record lacks is None:
    switched off (`DeviceOptions`), or a session written before `devices` was on, or by Node."""

    #: names the session for `revoke_device`; not its id
    handle: str
    #: this is the request's own session ("this device")
    current: bool
    created: datetime | None
    last_seen: datetime | None
    ip: str | None
    user_agent: str | None
    #: when the session ends unless it is used again
    expires_at: datetime


class _Devices:
    """The request's session, its middleware's signer and store, and its user's sessions by id."""

    def __init__(self, session: Session, signer: Signer, store: PrismaSessionStore) -> None:
        self.session, self.signer, self.store = session, signer, store

    @classmethod
    async def of(cls, connection: HTTPConnection) -> _Devices:
        session = await load_session(connection)
        lifecycle = session._backend
        store = lifecycle.store if isinstance(lifecycle, SessionLifecycle) else None
        if not isinstance(lifecycle, SessionLifecycle) or not isinstance(store, PrismaSessionStore):
            raise RuntimeError("devices need the session of fastapi_prisma_session's SessionMiddleware")
        if store.devices is None:
            raise RuntimeError(
                "devices are not recorded: PrismaSessionStore(url, user_key=..., devices=True) "
                "(docs/devices.md)"
            )
        return cls(session, lifecycle.signer, store)

    async def sessions(self) -> dict[str, Any]:
        """The live sessions of the request's user, by sid (none for a session that names no user).

        Only an absent or None value names no user: 0, "" and False are values like any other, and
        every session holding the same one is that one user's."""
        key = self.store.user_key  # never None with `devices`: the store's options checked it
        user = None if key is None else self.session.get(key)
        if key is None or user is None:
            return {}
        return await self.store.matching(**{key: user})

    def current(self) -> str | None:
        """The request's session id; None while it has no row (a new session has no id to ask for)."""
        return None if self.session.is_new else self.session.id

    def handle(self, sid: str) -> str:
        return self.signer.signature(_message(sid)).translate(_TO_URLSAFE)

    def names(self, sid: str, handle: str) -> bool:
        """Whether `handle` names `sid`, under any of the middleware's secrets (their rotation)."""
        message = _message(sid)
        return self.signer.unsign(f"{message}.{handle.translate(_FROM_URLSAFE)}") == message


def _message(sid: str) -> str:
    return f"device!{sid}"


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def _moment(record: Mapping[str, Any], key: str) -> datetime | None:
    value = _text(record, key)
    return None if value is None else parse_iso_utc(value)


async def list_devices(connection: HTTPConnection) -> list[Device]:
    """The live sessions of the request's user (their `user_key` value), this one first, then the most
    recently seen. Empty when the session names no user (its `user_key` absent or None). Raises
    RuntimeError without the store's `devices`."""
    devices = await _Devices.of(connection)
    current = devices.current()
    found = []
    for sid, stored in (await devices.sessions()).items():
        record = stored.data.get(DEVICE_KEY)
        if not isinstance(record, Mapping):
            record = {}
        found.append(
            Device(
                handle=devices.handle(sid),
                current=sid == current,
                created=_moment(record, "created"),
                last_seen=_moment(record, "lastSeen"),
                ip=_text(record, "ip"),
                user_agent=_text(record, "userAgent"),
                expires_at=stored.expires_at,
            )
        )
    found.sort(key=lambda device: device.last_seen or datetime.min, reverse=True)
    found.sort(key=lambda device: not device.current)  # stable: the others stay as sorted
    return found


async def revoke_device(connection: HTTPConnection, handle: str) -> bool:
    """End the session of the request's user that `handle` (a `Device.handle`) names: that device is
    logged out. Its own handle logs this session out (`session.destroy()`). Returns False when no
    session of this user has that handle (ended already, or not theirs), and for anything that is not a
    handle at all (not base64url, too long), without looking."""
    if not isinstance(handle, str) or len(handle) > MAX_HANDLE_LENGTH or not _HANDLE.fullmatch(handle):
        return False
    devices = await _Devices.of(connection)
    for sid in await devices.sessions():
        if devices.names(sid, handle):
            if sid == devices.current():
                await devices.session.destroy()
            else:
                await devices.store.destroy(sid)
            return True
    return False


async def revoke_other_devices(connection: HTTPConnection) -> int:
    """End every session of the request's user but this one ("log out the other devices"), in one
    DELETE. Returns how many there were."""
    devices = await _Devices.of(connection)
    current = devices.current()
    others = [sid for sid in await devices.sessions() if sid != current]
    if others:
        await devices.store.destroy(others)
    return len(others)
