"""A URL that lists several hosts, as libpq and Prisma write it (`scheme://user@h1:5432,h2:5432/db?…`),
rewritten as SQLAlchemy reads several hosts: `scheme://user@/db?host=h1:5432&host=h2:5432&…`.

Each database's `hosts.py` checks the entries its own way (a default port, IPv6, options that go with a
list) and hands them back here to be written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from ..exceptions import ConfigurationError

# scheme://[user[:password]@]hosts[/database][?query], the user and password as SQLAlchemy reads them
# (a password may hold a slash).
_URL = re.compile(r"(?P<head>[^:/]+://(?:[^:/@]*(?::[^@]*)?@)?)(?P<hosts>[^/?]*)(?P<tail>.*)", re.DOTALL)


class HostListURL(NamedTuple):
    """A URL cut around its host part: `head` up to the hosts (the user's `@` included), `entries` the
    hosts as written, `tail` the database and the query."""

    head: str
    entries: list[str]
    tail: str


def split(url: str) -> HostListURL | None:
    """`url` cut around its host part, or None when it is not of the form `scheme://…`."""
    found = _URL.fullmatch(url)
    if found is None:
        return None
    return HostListURL(found["head"], found["hosts"].split(","), found["tail"])


def no_empty_entry(url: HostListURL, example: str) -> None:
    """Refuse a list with an empty entry (`h1,,h2`, a trailing comma); `example` shows the right form."""
    if any(not entry for entry in url.entries):
        raise ConfigurationError(
            f"the URL's host list has an empty entry ({','.join(url.entries)!r}): write it as {example}"
        )


def with_host_parameters(url: HostListURL, hosts: Sequence[str]) -> str:
    """The URL with its host part empty and `hosts` (each `host` or `host:port`) as `?host=` parameters,
    before the query it had."""
    path, question, query = url.tail.partition("?")
    listed = "&".join(f"host={host}" for host in hosts)
    return f"{url.head}{path or '/'}?{listed}{'&' + query if question and query else ''}"
