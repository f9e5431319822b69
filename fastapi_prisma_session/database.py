"""Where statements meet the database: URLs, engine options, running statements, translating errors.

The request path (load, insert, update, touch, merge) runs on raw asyncpg connections when there are
some: its statements are compiled once, asyncpg prepares and caches them, and SQLAlchemy's
per-execution work (about 90 µs a statement) is skipped. Everything else goes through SQLAlchemy on an
autocommit connection. Either way a driver error the caller can act on becomes a `SessionError`, here
and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .connections import LeasedConnections
from .exceptions import ConfigurationError, SessionError, StoreUnavailableError, TableMissingError

if TYPE_CHECKING:
    from sqlalchemy import Executable, Result
    from sqlalchemy.engine import Dialect

    from .dialects import SQLDialect

T = TypeVar("T")

# The plain URLs of Prisma, libpq and cron jobs, and the async drivers SQLAlchemy needs for them.
ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
POOL_SIZE = 10
ADMIN_CONNECTIONS = 2
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
POOL_TIMEOUT = 10.0
UNDEFINED_TABLE = "42P01"
# SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutdown, restart).
CONNECTION_SQLSTATE_CLASSES = ("08", "57")
# The statements a request runs; on asyncpg they skip SQLAlchemy.
REQUEST_PATH = ("load", "insert", "update", "update_if_unchanged", "touch", "merge")


def driver_url(url: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…`, `sqlite://…` → `sqlite+aiosqlite://…`; a URL that
    names its driver is left as it is."""
    scheme, sep, rest = url.partition("://")
    return ASYNC_DRIVERS[scheme] + sep + rest if sep and scheme in ASYNC_DRIVERS else url


def create_engine(url: str, given: Mapping[str, Any] | None = None) -> AsyncEngine:
    """An engine for a plain or driver URL, with the pool and timeouts the store needs."""
    url = driver_url(url)
    return create_async_engine(url, **engine_options(url, given))


def engine_options(url: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(given or {})
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Statements hold a connection for one round trip. Waiting briefly for a pooled connection is far
        # cheaper than SQLAlchemy's default overflow, which opens and closes a connection per statement
        # once more than five are busy.
        # The request path leases POOL_SIZE of them; the rest serve prune, set and the other calls.
        options.setdefault("pool_size", POOL_SIZE + ADMIN_CONNECTIONS)
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", POOL_TIMEOUT)
        if parsed.get_driver_name() == "asyncpg":
            # Fail fast when the server is unreachable (asyncpg waits 60 s to connect) or stops answering
            # (it waits forever for a statement), rather than hang the request.
            options["connect_args"] = {
                "timeout": CONNECT_TIMEOUT,
                "command_timeout": COMMAND_TIMEOUT,
                **options.get("connect_args", {}),
            }
    return options


@dataclass(frozen=True, slots=True)
class NativeStatement:
    """A statement compiled once to the driver's own SQL, for the request path on asyncpg."""

    sql: str
    order: tuple[str, ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> NativeStatement:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.order]


class Database:
    """Runs the statements of `sql` on `engine`, by name for the request path or as given."""

    def __init__(
        self, engine: AsyncEngine, sql: SQLDialect, *, table_name: str, request_connections: int | None
    ) -> None:
        self.engine = engine
        self.sql = sql
        self.table_name = table_name
        # Single statements on an autocommit connection: no BEGIN/COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._native: dict[str, NativeStatement] = {}
        self._leased: LeasedConnections | None = None
        if engine.dialect.driver == "asyncpg":
            for name in REQUEST_PATH:
                self._native[name] = NativeStatement.compile(getattr(sql, name), engine.dialect)
            self._leased = LeasedConnections(engine, lease_size(engine, request_connections))

    def connect(self) -> AsyncConnection:
        """An autocommit connection, for a run of statements that must share one (a prune and its lock)."""
        return self._autocommit.connect()

    async def fetch_row(self, name: str, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of the request-path statement `name`."""
        native, leased = self._native.get(name), self._leased
        if native is None or leased is None:
            return (await self.execute(getattr(self.sql, name), params)).first()
        try:
            row: Sequence[Any] | None = await self._run_native(leased, "fetchrow", native, params)
        except StoreUnavailableError:
            # The connection failed, not the query (a server restart, an idle timeout), and it was
            # discarded. A read is safe to repeat, so try once more on a fresh connection.
            row = await self._run_native(leased, "fetchrow", native, params)
        return row

    async def write(self, name: str, params: Mapping[str, Any]) -> int:
        """Run the request-path write `name`; returns the number of rows it changed."""
        native, leased = self._native.get(name), self._leased
        if native is None or leased is None:
            result = await self.execute(getattr(self.sql, name), params)
            return int(result.rowcount)  # type: ignore[attr-defined]
        status: str = await self._run_native(leased, "execute", native, params)
        return int(status.rsplit(" ", 1)[-1])

    async def execute(
        self, statement: Executable, params: Mapping[str, Any], conn: AsyncConnection | None = None
    ) -> Result[*tuple[Any, ...]]:
        """Run `statement` through SQLAlchemy, on `conn` or on an autocommit connection of its own."""
        return await self._translated(self._execute(statement, params, conn))

    async def close(self) -> None:
        """Return the request path's connections to the engine's pool."""
        if self._leased is not None:
            await self._leased.close()

    async def _execute(
        self, statement: Executable, params: Mapping[str, Any], conn: AsyncConnection | None
    ) -> Result[*tuple[Any, ...]]:
        if conn is not None:
            return await conn.execute(statement, params)
        async with self._autocommit.connect() as own:
            return await own.execute(statement, params)

    async def _run_native(
        self, leased: LeasedConnections, method: str, statement: NativeStatement, params: Mapping[str, Any]
    ) -> Any:
        return await self._translated(leased.run(method, statement.sql, statement.args(params)))

    async def _translated(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except Exception as error:
            translated = store_error(error, self.table_name)
            if translated is None:
                raise
            raise translated from error


def lease_size(engine: AsyncEngine, requested: int | None) -> int:
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ConfigurationError("request_connections must be a positive whole number")
        return requested
    size = getattr(engine.pool, "size", None)
    if not callable(size):
        return POOL_SIZE
    pool_size = int(size())
    return POOL_SIZE if pool_size >= POOL_SIZE + ADMIN_CONNECTIONS else max(1, pool_size // 2)


def store_error(error: Exception, table_name: str) -> SessionError | None:
    """The package's error for a driver or SQLAlchemy error, when it is one the caller can act on."""
    if isinstance(error, SessionError):
        return None
    original = error.orig if isinstance(error, DBAPIError) else error
    code = str(getattr(original, "sqlstate", None) or getattr(original, "pgcode", None) or "")
    if code == UNDEFINED_TABLE or "no such table" in str(original):
        return TableMissingError(table_name)
    lost = isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    )
    if (
        lost
        or isinstance(original, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError))
        or code[:2] in CONNECTION_SQLSTATE_CLASSES
    ):
        return StoreUnavailableError(f"the session database is unreachable: {original!r}")
    return None
