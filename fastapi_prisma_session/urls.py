"""Database URLs and the engines made from them.

A URL may be Prisma's, libpq's or a cron job's (`postgresql://`, `mysql://`, `sqlite://`, with Prisma's own
parameters such as `?pgbouncer=true`): `prisma_url` takes those parameters out and `driver_url` names the
async driver SQLAlchemy needs. The engine serves the schema (`create_table`, migrations) and the caller;
the store's statements run on its own connections (executor.py), which read the same URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .dialects import SCHEMES, sqlalchemy_url
from .dialects.mysql.hosts import engine_creator
from .exceptions import ConfigurationError
from .models import MYSQL_DIALECTS

# Every operation of the store ends within this many seconds by default (`operation_timeout`).
DEADLINE = 5.0
# Prisma's own parameters in a DATABASE_URL. Its query engine reads them; SQLAlchemy would hand them to
# asyncpg.connect as keyword arguments, which it refuses. `pgbouncer` and `connection_limit` are honoured
# (below); these are dropped, as `operation_timeout` and the pools here do their work:
PRISMA_DROPPED = ("connect_timeout", "pool_timeout", "socket_timeout", "statement_cache_size")
# Prisma's (and libpq's) TLS options have no keyword of the same name in asyncpg.connect, to which
# SQLAlchemy would pass them (a TypeError at the first connection): refused, with what to use instead.
PRISMA_REFUSED = ("sslaccept", "sslidentity", "sslpassword", "sslcert", "sslkey", "sslrootcert")


def driver_url(url: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…`, `sqlite://…` → `sqlite+aiosqlite://…`, `mysql://…` and
    `mariadb://…` → `mysql+asyncmy://…`; a URL that names its driver keeps it. A host list
    (`h1:5432,h2:5432`) is written as SQLAlchemy reads it (`?host=h1:5432&host=h2:5432`)."""
    url = sqlalchemy_url(url)
    scheme, sep, rest = url.partition("://")
    return SCHEMES[scheme] + sep + rest if sep and scheme in SCHEMES else url


@dataclass(frozen=True, slots=True)
class Target:
    """Where the store connects: its engine, whether a transaction pooler is in between, and the
    request path's connection bound that the URL gave (Prisma's `connection_limit`)."""

    engine: AsyncEngine
    pgbouncer: bool
    connection_limit: int | None = None
    #: the caller's `connect_args` for a URL's engine (engine_options), for the request path's too
    connect_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PrismaURL:
    """A URL without Prisma's own parameters, and what those said."""

    url: str
    pgbouncer: bool = False
    connection_limit: int | None = None


def prisma_url(url: str) -> PrismaURL:
    """Take Prisma's parameters out of `url`: `?pgbouncer=true` (a transaction pooler is in between),
    `connection_limit=N` (the request path's bound), `schema=public`; drop those this package has its
    own settings for (PRISMA_DROPPED); refuse what asyncpg cannot be told this way. libpq's `sslmode`
    (in the URLs Supabase and Neon hand out) becomes asyncpg's `ssl`, and `channel_binding` goes
    (`require` is refused: asyncpg cannot do it)."""
    url = sqlalchemy_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:  # ValueError: a port that is not a number
        raise ConfigurationError(f"not a database URL: {error}") from None
    query = parsed.query
    for name in PRISMA_REFUSED:
        if name in query:
            raise ConfigurationError(
                f"the URL's {name} is Prisma's or libpq's; asyncpg has no such option: remove it and pass "
                "engine_options={'connect_args': {'ssl': <an ssl.SSLContext>}}"
            )
    schema = _one(query, "schema")
    if schema not in (None, "public"):
        raise ConfigurationError(
            f"the URL's schema={schema} is not supported: the session table is looked up on the "
            "server's search_path; remove the parameter and set the role's search_path instead"
        )
    if _one(query, "channel_binding") == "require":
        raise ConfigurationError(
            "the URL's channel_binding=require cannot be honoured: asyncpg does not implement channel "
            "binding; remove it (sslmode=verify-full authenticates the server by its certificate)"
        )
    pgbouncer = _one(query, "pgbouncer")
    if pgbouncer not in (None, "true", "false"):
        raise ConfigurationError(f"pgbouncer={pgbouncer} in the URL: it must be true or false")
    limit = _one(query, "connection_limit")
    if limit is not None and not (limit.isascii() and limit.isdigit() and int(limit) > 0):
        raise ConfigurationError(f"connection_limit={limit} in the URL: it must be a positive whole number")
    sslmode = _one(query, "sslmode")
    if sslmode is not None and parsed.get_backend_name() in MYSQL_DIALECTS:
        raise ConfigurationError(
            f"the URL's sslmode={sslmode} is libpq's; asyncmy takes SQLAlchemy's ssl_ca, ssl_cert and "
            "ssl_key parameters, or engine_options={'connect_args': {'ssl': <an ssl.SSLContext>}}"
        )
    ours = ("pgbouncer", "connection_limit", "schema", "channel_binding", "sslmode", *PRISMA_DROPPED)
    if not any(name in query for name in ours):
        return PrismaURL(url)
    plain = parsed.difference_update_query(ours)
    if sslmode is not None and "ssl" not in query:
        # libpq's (and Prisma's) name; asyncpg takes the same values as `ssl`.
        plain = plain.update_query_dict({"ssl": sslmode})
    rendered = plain.render_as_string(hide_password=False)
    return PrismaURL(rendered, pgbouncer == "true", None if limit is None else int(limit))


def _one(query: Mapping[str, str | tuple[str, ...]], name: str) -> str | None:
    value = query.get(name)
    return value[-1] if isinstance(value, tuple) else value


def create_engine(
    url: str, given: Mapping[str, Any] | None = None, deadline: float = DEADLINE, *, pgbouncer: bool = False
) -> AsyncEngine:
    """An engine for a plain or driver URL, with the pool and timeouts the store needs."""
    url = driver_url(url)
    return create_async_engine(url, **engine_options(url, given, deadline, pgbouncer=pgbouncer))


def engine_for(
    engine_or_url: AsyncEngine | str,
    given: Mapping[str, Any] | None,
    deadline: float,
    pgbouncer: bool | None = None,
) -> Target:
    """The caller's engine as it is, or one made for a URL with `create_engine`; `pgbouncer` (None:
    as the URL says) makes what the store does safe behind a transaction pooler."""
    if isinstance(engine_or_url, AsyncEngine):
        if any(name in engine_or_url.url.query for name in ("pgbouncer", "connection_limit")):
            raise ConfigurationError(
                "the engine's URL carries Prisma's pgbouncer or connection_limit, which asyncpg refuses: "
                "give the store the URL itself, or remove them and pass pgbouncer=True / "
                "request_connections=N to the store"
            )
        return Target(engine_or_url, bool(pgbouncer))
    if isinstance(engine_or_url, str):
        prisma = prisma_url(engine_or_url)
        behind = prisma.pgbouncer if pgbouncer is None else pgbouncer
        engine = create_engine(prisma.url, given, deadline, pgbouncer=behind)
        return Target(engine, behind, prisma.connection_limit, dict((given or {}).get("connect_args", {})))
    raise ConfigurationError(
        "PrismaSessionStore needs an AsyncEngine or a URL such as "
        "'postgresql://user@host/db' or 'sqlite:///sessions.db'"
    )


def pooler_connect_args() -> dict[str, Any]:
    """`connect_args` for an engine (SQLAlchemy's asyncpg dialect) behind a transaction pooler.

    Every statement is an unnamed prepared statement that asyncpg parses again in the same message batch
    as its Bind and Execute (asyncpg does so when its statement cache is off), so the pooler hands the
    whole statement to one server connection: no named statement is left on a server connection, and
    none is looked for on another one."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed,
    }


def _unnamed() -> str:
    return ""


def engine_options(
    url: str, given: Mapping[str, Any] | None, deadline: float = DEADLINE, *, pgbouncer: bool = False
) -> dict[str, Any]:
    """The engine's options: it serves the schema (`create_table`) and the caller, so a connection it
    opens fails within the deadline rather than hang, one the server closed is noticed before use, and
    behind a transaction pooler its statements are ones the pooler can route."""
    options = dict(given or {})
    parsed = make_url(url)
    options.setdefault("pool_pre_ping", parsed.get_backend_name() != "sqlite")
    driver = parsed.get_driver_name()
    if driver == "asyncpg":
        pooler = pooler_connect_args() if pgbouncer else {}
        options["connect_args"] = {"timeout": deadline, **pooler, **options.get("connect_args", {})}
    elif driver == "asyncmy":
        defaults: dict[str, Any] = {"connect_timeout": deadline}
        if "charset" not in parsed.query:
            defaults["charset"] = "utf8mb4"
        options["connect_args"] = {**defaults, **options.get("connect_args", {})}
        if "host" in parsed.query and "async_creator" not in options:
            # Several hosts: asyncmy takes one, so the engine connects through the list (hosts.py).
            _, params = parsed.get_dialect()().create_connect_args(parsed)
            creator = engine_creator({**params, **options["connect_args"]})
            if creator is not None:
                options["async_creator"] = creator
    return options
