"""What a session records of the device that holds it, with the store's `devices` option: when it
was created, when it was last seen, the client's IP address and its user agent.

The record is kept in the session's data under one reserved key, beside express-session's `cookie`:

    {"cookie": {...}, "user_id": 42, "__device": {"created": "2025-01-02T03:04:05.678Z",
     "lastSeen": "...", "ip": "203.0.113.7", "userAgent": "Mozilla/5.0 ..."}}

so the row keeps Prisma's shape and Node's express-session reads it, and writes it back, as any other
key. With `encryption_keys` it is sealed with the rest of the data. It is written only when the session
is written anyway, or when its last sighting is older than `touch_after`: recording costs no statement
of its own on most requests. `device_list.py` reads it back for the user.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .cookies import iso_utc, parse_iso_utc
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from starlette.types import Scope

#: The data key the record is stored under (the session's own keys may not use it).
DEVICE_KEY = "__device"
# A user agent is cut to this many characters: it is shown, not parsed, and a client may send any length.
USER_AGENT_LENGTH = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceOptions:
    """What each session records of its device, besides when it was created and last seen
    (`PrismaSessionStore(url, user_key=..., devices=DeviceOptions(ip=False))`; `devices=True` records
    both).

    Args:
        ip: the client's IP address: the connection's peer (the client uvicorn's `--proxy-headers`
            resolved, if on), or with the middleware's `proxy` the last address of `X-Forwarded-For`,
            the one the proxy in front of the app appended.
        user_agent: the `User-Agent` header, cut to 512 characters.
    """

    ip: bool = True
    user_agent: bool = True


class DeviceRecorder:
    """Stamps a session's device record on its writes: the store's options, the middleware's `proxy`."""

    def __init__(self, options: DeviceOptions, *, proxy: bool, every: float) -> None:
        self.options = options
        self.proxy = proxy
        #: seconds after which a session that is not written otherwise is written for its last sighting
        self.every = every

    def stamp(self, previous: Mapping[str, Any] | None, scope: Scope | None, now: datetime) -> dict[str, Any]:
        """The record a write stores: seen now, from the request's `scope` (None: outside a request,
        where the previous address and agent stay). A record of another shape counts as none."""
        if not isinstance(previous, Mapping):
            previous = {}
        seen = iso_utc(now)
        created = previous.get("created")
        record: dict[str, Any] = {
            "created": created if isinstance(created, str) else seen,
            "lastSeen": seen,
        }
        options = self.options
        if options.ip:
            ip = client_ip(scope, self.proxy) if scope is not None else previous.get("ip")
            if isinstance(ip, str):
                record["ip"] = ip
        if options.user_agent:
            agent = user_agent(scope) if scope is not None else previous.get("userAgent")
            if isinstance(agent, str):
                record["userAgent"] = agent
        return record

    def due(self, record: Mapping[str, Any] | None, now: datetime) -> bool:
        """Whether a session whose stored record is `record` should be written for its last sighting."""
        seen = record.get("lastSeen") if isinstance(record, Mapping) else None
        last = parse_iso_utc(seen) if isinstance(seen, str) else None
        return last is None or (now - last).total_seconds() >= self.every


def device_options(devices: bool | DeviceOptions, user_key: str | None) -> DeviceOptions | None:
    """The store's `devices` option, checked: what each session records, or None when it is off."""
    if devices is False:
        return None
    if devices is True:
        devices = DeviceOptions()
    if not isinstance(devices, DeviceOptions):
        raise ConfigurationError("devices must be True, False or a DeviceOptions(ip=..., user_agent=...)")
    if user_key is None:
        raise ConfigurationError(
            "devices needs user_key, the session key that names its user, to find a user's sessions: "
            "PrismaSessionStore(url, user_key='user_id', devices=True) (docs/devices.md)"
        )
    return devices


def client_ip(scope: Scope, proxy: bool) -> str | None:
    """The client's address: the connection's peer, or with `proxy` the last entry of
    `X-Forwarded-For`. Proxies append the address they were reached from, so the last entry is the one
    the proxy in front of the app saw; the entries before it are whatever the client sent, and are
    never used. A last entry that is not an address leaves the peer's."""
    if proxy:
        forwarded = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")
        entries = [entry for entry in forwarded.split(b",") if entry.strip()]
        if entries:
            address = _address(entries[-1].strip().decode("latin-1"))
            if address is not None:
                return address
    client = scope.get("client")
    return _address(str(client[0])) if client else None


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def user_agent(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return str(value.decode("latin-1")[:USER_AGENT_LENGTH])
    return None
