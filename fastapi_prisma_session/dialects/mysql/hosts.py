"""Several servers behind one MySQL/MariaDB URL, such as a Galera cluster's nodes:
`mysql://user@node1:3306,node2:3306,node3:3306/db` (urls.py hands them over as `?host=node1:3306&...`).

A connection is opened to the first host that answers, starting from the last one that did: each host
gets an equal share of the connect timeout, so that a host that is down, or frozen and never answering,
costs only its share and the next one is tried within the same deadline. A host whose node left the
cluster's primary component (it refuses every statement) is passed over from then on, until the others
fail too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from ...exceptions import ConfigurationError
from ..host_lists import no_empty_entry, split, with_host_parameters

C = TypeVar("C")

DEFAULT_PORT = 3306
# No host gets less than this to connect, however many there are.
MIN_CONNECT_SHARE = 0.5


def sqlalchemy_url(url: str) -> str:
    """`mysql://user@h1:3306,h2:3306/db?…` (Prisma's and libpq's list of hosts) as SQLAlchemy reads it,
    `mysql://user@/db?host=h1:3306&host=h2:3306&…`; a URL with one host as it is."""
    listed = split(url)
    if listed is None or len(listed.entries) == 1:
        return url
    no_empty_entry(listed, "host1:3306,host2:3306")
    parse_hosts(listed.entries)  # each entry a host and a port, refused here rather than at a connect
    return with_host_parameters(listed, listed.entries)


def parse_hosts(value: str | Sequence[str], default_port: int | None = None) -> list[tuple[str, int]]:
    """`host:port` entries (a `[v6]:port` too) as (host, port); `default_port` (3306) where one has none."""
    entries = [value] if isinstance(value, str) else list(value)
    hosts = []
    for entry in entries:
        host, port = entry, str(default_port or DEFAULT_PORT)
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        if not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError(
                f"the URL's host list gives {entry!r}: a host and a port number, 1 to 65535, are needed"
            )
        hosts.append((host, int(port)))
    return hosts


def host_list(params: Mapping[str, Any]) -> list[tuple[str, int]] | None:
    """The hosts of asyncmy's connect arguments as SQLAlchemy reads them from a URL, when the `host`
    names several (or a port), else None: one host, connected to as it is."""
    value = params.get("host")
    if isinstance(value, str) and ":" not in value.strip("[]"):
        return None
    if not value:
        return None
    return parse_hosts(value, params.get("port"))


class Hosts:
    """The hosts of one URL, and which of them answered last."""

    def __init__(self, hosts: Sequence[tuple[str, int]], connect_timeout: float) -> None:
        self.hosts = list(hosts)
        self.current = 0
        self.share = max(MIN_CONNECT_SHARE, connect_timeout / len(self.hosts))

    async def connect(self, open_one: Callable[..., Awaitable[C]], kwargs: Mapping[str, Any]) -> C:
        """`await open_one(**kwargs)` with the host and port of each host in turn, from the last that
        answered, each within its share of the connect timeout; the first connection made, or the last
        host's error."""
        count = len(self.hosts)
        for step in range(count):
            index = (self.current + step) % count
            host, port = self.hosts[index]
            try:
                async with asyncio.timeout(self.share):
                    connection = await open_one(**{**kwargs, "host": host, "port": port})
            except Exception as error:  # refused, unreachable, or the driver's own error for either
                if step == count - 1:
                    if isinstance(error, TimeoutError):
                        raise TimeoutError(f"{host}:{port} did not answer within {self.share:g} s") from error
                    raise
                continue
            self.current = index
            return connection
        raise AssertionError("unreachable")  # pragma: no cover

    def passed_over(self, host: str, port: int) -> None:
        """The node at `host`:`port` cannot serve: connect to the next one first from now on."""
        if self.hosts[self.current] == (host, port):
            self.current = (self.current + 1) % len(self.hosts)


def engine_creator(params: Mapping[str, Any]) -> Callable[[], Awaitable[Any]] | None:
    """For an engine's `async_creator`: opens an asyncmy connection with `params` (the engine's connect
    arguments) to the first of its hosts that answers; None when they name one host."""
    hosts = host_list(params)
    if hosts is None:
        return None
    import asyncmy

    chosen = Hosts(hosts, float(params.get("connect_timeout") or 10))
    rest = {name: value for name, value in params.items() if name not in ("host", "port")}

    async def create() -> Any:
        return await chosen.connect(asyncmy.connect, rest)

    return create
