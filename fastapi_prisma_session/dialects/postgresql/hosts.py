"""Several hosts in one PostgreSQL URL: libpq's and Prisma's `h1:5432,h2:5432` written as SQLAlchemy reads
it (`?host=h1:5432&host=h2:5432`), and connecting to the first host that serves.

asyncpg tries a URL's hosts one after the other, all within one connect timeout: a host that accepts the
connection and then never answers (frozen, or cut off by a partition) uses up all of it, and the hosts
after it are never tried. `HostList.connect` starts on the host that served last, and starts the next one
as soon as a host fails, or when it has not answered within its share of the timeout, whichever is
first; the first connection that matches `target_session_attrs` is kept, the others closed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ...exceptions import ConfigurationError
from ..host_lists import no_empty_entry, split, with_host_parameters

# libpq's values of target_session_attrs, which asyncpg takes too.
TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
# libpq's port when a host in a list names none.
DEFAULT_PORT = 5432
# A host's head start before the next one is tried too, at most: a healthy server answers a login in
# milliseconds, so a host silent this long is likely frozen or cut off.
MAX_STAGGER = 1.0
_HOST = re.compile(r"[A-Za-z0-9._~%-]+")


def sqlalchemy_url(url: str) -> str:
    """`url` with a comma-separated host list moved into `?host=` parameters, as SQLAlchemy's asyncpg
    dialect reads several hosts; a URL with one host is returned as it is. A malformed list, or a
    `target_session_attrs` asyncpg does not know, raises ConfigurationError."""
    listed = split(url)
    if listed is None:
        return url
    _check_target_session_attrs(listed.tail)
    if len(listed.entries) == 1:
        return url
    if re.search(r"[?&](host|port)=", listed.tail):
        raise ConfigurationError(
            "the URL lists its hosts twice, before the database and in ?host= or ?port=: keep one list"
        )
    no_empty_entry(listed, "host1:5432,host2:5432")
    hosts = [_host_and_port(entry) for entry in listed.entries]
    # A host is kept as written (a socket directory percent-encoded, as libpq takes one), and SQLAlchemy
    # decodes it.
    return with_host_parameters(listed, [f"{host}:{port}" for host, port in hosts])


def _host_and_port(entry: str) -> tuple[str, int]:
    host, colon, port = entry.partition(":")
    if not host or host.startswith("[") or not _HOST.fullmatch(host):
        raise ConfigurationError(
            f"the URL's host list names {entry!r}: a list takes host names or IPv4 addresses, each with an "
            "optional :port (an IPv6 address needs a host name for it)"
        )
    if not colon:
        return host, DEFAULT_PORT
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigurationError(
            f"the URL's host list gives {entry!r} the port {port!r}: a port number, 1 to 65535, is needed"
        )
    return host, int(port)


def _check_target_session_attrs(tail: str) -> None:
    _, _, query = tail.partition("?")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "target_session_attrs" and value not in TARGET_SESSION_ATTRS:
            raise ConfigurationError(
                f"the URL's target_session_attrs={value} is not one asyncpg knows: use one of "
                f"{', '.join(TARGET_SESSION_ATTRS)} (read-write to reach the primary)"
            )


class Closable(Protocol):
    def terminate(self) -> None: ...


C = TypeVar("C", bound=Closable)


class HostList:
    """The hosts of one URL, in its order, and the one that served last (tried first next time)."""

    def __init__(self, hosts: Sequence[str], ports: Sequence[int]) -> None:
        self.hosts = list(zip(hosts, ports, strict=True))
        self.last = 0

    def order(self) -> list[int]:
        """The hosts to try, by index: the last that served, then the others in the URL's order."""
        return [self.last, *(index for index in range(len(self.hosts)) if index != self.last)]

    async def connect(
        self,
        connect: Callable[..., Awaitable[C]],
        kwargs: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the connect timeout, as asyncpg's connect takes it
        chosen: Callable[[list[BaseException]], BaseException],
    ) -> C:
        """`connect(host=…, port=…, timeout=…, **kwargs)` on the hosts in `order()`, each started when the
        one before it failed or has been silent for its share of `timeout`, all within `timeout`; the
        first that succeeds (it checks `target_session_attrs` itself) is kept. When every host failed,
        `chosen(errors)` is raised."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        stagger = min(MAX_STAGGER, timeout / (len(self.hosts) + 1))
        waiting = self.order()
        trying: dict[asyncio.Task[C], int] = {}
        errors: list[BaseException] = []
        try:
            while waiting or trying:
                if waiting:
                    index = waiting.pop(0)
                    host, port = self.hosts[index]
                    left = max(ends - loop.time(), 0.001)
                    attempt = connect(host=host, port=port, timeout=left, **kwargs)
                    trying[asyncio.ensure_future(attempt)] = index
                patience = stagger if waiting else ends - loop.time()
                done, _ = await asyncio.wait(trying, timeout=max(patience, 0), return_when="FIRST_COMPLETED")
                if not done and not waiting:
                    errors.append(TimeoutError(f"no host answered within {timeout:.1f} s"))
                    break
                winner: asyncio.Task[C] | None = None
                for task in done:
                    index = trying.pop(task)
                    error = task.exception()
                    if error is not None:
                        errors.append(error)
                    elif winner is None:
                        winner, self.last = task, index
                    else:
                        task.result().terminate()  # two answered at once: one is enough
                if winner is not None:
                    return winner.result()
        finally:
            for task in trying:
                task.add_done_callback(_close_late)
                task.cancel()
        raise chosen(errors)


def _close_late(task: asyncio.Task[C]) -> None:
    """A connection that opened as its attempt was given up is closed; a failure is read (not logged)."""
    if not task.cancelled() and task.exception() is None:
        task.result().terminate()
