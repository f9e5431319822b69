"""`DatabaseURL`: a database URL read as SQLAlchemy's `make_url` reads one, without importing SQLAlchemy.

The store reads its URL here (which driver, where, what the query says) and connects on its own; only an
engine (`store.engine`, `create_table`, migrations) brings SQLAlchemy in, from the same text. A test reads
many URLs both ways and compares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from .exceptions import ConfigurationError

# SQLAlchemy's pattern of a URL (sqlalchemy/engine/url.py), group for group.
_PATTERN = re.compile(
    r"""
    (?P<name>[\w\+]+)://
    (?:
        (?P<username>[^:/]*)
        (?::(?P<password>[^@]*))?
    @)?
    (?:
        (?:
            \[(?P<ipv6host>[^/\?]+)\] |
            (?P<ipv4host>[^/:\?]+)
        )?
        (?::(?P<port>[^/\?]*))?
    )?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)
Query = Mapping[str, "str | tuple[str, ...]"]


@dataclass(frozen=True)
class DatabaseURL:
    """The parts of a URL, under SQLAlchemy's `URL` attribute names."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: Query = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> DatabaseURL:
        """`text` read as `make_url` reads it; ConfigurationError where it cannot be."""
        found = _PATTERN.match(text) if isinstance(text, str) else None
        if found is None:
            raise ConfigurationError(f"not a database URL: Could not parse SQLAlchemy URL from {text!r:.80}")
        parts = found.groupdict()
        query: dict[str, str | tuple[str, ...]] = {}
        for key, value in parse_qsl(parts["query"] or ""):
            previous = query.get(key)
            if previous is None:
                query[key] = value
            else:
                query[key] = (*((previous,) if isinstance(previous, str) else previous), value)
        port = parts["port"]
        if port:
            try:
                number: int | None = int(port)
            except ValueError:
                raise ConfigurationError(f"not a database URL: its port {port!r} is not a number") from None
            if not 0 < int(port) < 65536:
                raise ConfigurationError(f"the URL's port {number} is not a port number, 1 to 65535")
        else:
            number = None
        username, password, database = (
            None if parts[name] is None else unquote(parts[name])
            for name in ("username", "password", "database")
        )
        return cls(
            drivername=parts["name"],
            username=username,
            password=password,
            host=parts["ipv6host"] or parts["ipv4host"],
            port=number,
            database=database,
            query=query,
        )

    def get_backend_name(self) -> str:
        return self.drivername.split("+", 1)[0]

    def get_driver_name(self) -> str | None:
        _, plus, driver = self.drivername.partition("+")
        return driver if plus else None

    def without_query(self, names: tuple[str, ...]) -> DatabaseURL:
        return replace(self, query={key: value for key, value in self.query.items() if key not in names})

    def with_query(self, values: Mapping[str, str]) -> DatabaseURL:
        return replace(self, query={**self.query, **values})

    def render(self, *, hide_password: bool = False) -> str:
        """The URL as text, as `URL.render_as_string` writes it: password and all, or with
        `hide_password` the password as `***` (for a log line)."""
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            text += "?" + "&".join(
                f"{quote_plus(key)}={quote_plus(item)}"
                for key in sorted(self.query)
                for item in self._all(key)
            )
        return text

    def _all(self, key: str) -> tuple[str, ...]:
        value = self.query[key]
        return (value,) if isinstance(value, str) else tuple(value)

    def translate_connect_args(self, **names: str) -> dict[str, object]:
        """host, database, username, password and port where given, under the driver's `names`."""
        found: dict[str, object] = {}
        for part in ("host", "database", "username", "password", "port"):
            value = getattr(self, part)
            if value:
                found[names.get(part, part)] = value
        return found
