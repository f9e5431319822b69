"""Where statements meet the database: URLs, engine options, running statements, translating errors.

The request path (load, insert, update, touch, merge) runs on raw asyncpg connections when there are
some: its statements are compiled once, asyncpg prepares and caches them, and SQLAlchemy's
per-execution work (about 90 µs a statement) is skipped. Everything else goes through SQLAlchemy on an
autocommit connection. Either way a driver error the caller can act on becomes a `SessionError`, here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .connections import RequestPool, wake_first
from .deadlines import Deadlines
from .exceptions import ConfigurationError, SessionError, StoreUnavailableError, TableMissingError
from .logs import redact

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
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}
# Prisma's own parameters in a DATABASE_URL. Its query engine reads them; SQLAlchemy would hand them to
# asyncpg.connect as keyword arguments, which it refuses. `pgbouncer` and `connection_limit` are honoured
# (below); these are dropped, as `operation_timeout` and the pools here do their work:
PRISMA_DROPPED = ("connect_timeout", "pool_timeout", "socket_timeout", "statement_cache_size")
# Prisma's (and libpq's) TLS options have no keyword of the same name in asyncpg.connect, to which
# SQLAlchemy would pass them (a TypeError at the first connection): refused, with what to use instead.
PRISMA_REFUSED = ("sslaccept", "sslidentity", "sslpassword", "sslcert", "sslkey", "sslrootcert")
MYSQL_BACKENDS = ("mysql", "mariadb")
# The isolation of the store's few transactions on MySQL (prune batches, deletes that hand back rows).
MYSQL_TRANSACTIONS = "READ COMMITTED"
# MySQL closes a connection idle for wait_timeout (8 h by default): the pool replaces older ones first.
MYSQL_POOL_RECYCLE = 3600
# The request path's connections: at most this many per store, each closed after idling this long.
REQUEST_CONNECTIONS = 10
IDLE_TIMEOUT = 60.0
# The engine's own pool serves everything else: prune, set, matching, destroy_all.
ADMIN_CONNECTIONS = 2
# Every request-path operation ends within this many seconds, in a 503 if need be.
DEADLINE = 5.0
# The share of the deadline after which the server abandons a request-path statement or lock wait.
SERVER_TIMEOUT_SHARE = 0.7
# Statements outside the request path (a prune batch, a match over a big table) may take longer.
COMMAND_TIMEOUT = 15.0
UNDEFINED_TABLE = "42P01"
# SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutdown, restart, and a
# statement_timeout), and 55P03 (lock_timeout): the database cannot serve the request now.
CONNECTION_SQLSTATE_CLASSES = ("08", "57")
LOCK_NOT_AVAILABLE = "55P03"
# MySQL's error numbers for a database that cannot serve the request now: too many connections, server
# shutdown, lock wait timeout, deadlock, a statement over its time (MariaDB's max_statement_time, MySQL's
# max_execution_time), and the client's lost or refused connections (2000-2099). And no such table.
MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1205, 1213, 1969, 3024, *range(2000, 2100)})
MYSQL_NO_SUCH_TABLE = 1146
# What SQLite says when the database file cannot be used right now.
SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full")
# The statements a request runs; on asyncpg they skip SQLAlchemy.
REQUEST_PATH = ("load", "insert", "update", "update_if_unchanged", "touch", "rename")


def driver_url(url: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…`, `sqlite://…` → `sqlite+aiosqlite://…`, `mysql://…` and
    `mariadb://…` → `mysql+asyncmy://…`; a URL that names its driver is left as it is."""
    scheme, sep, rest = url.partition("://")
    return ASYNC_DRIVERS[scheme] + sep + rest if sep and scheme in ASYNC_DRIVERS else url


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
    try:
        parsed = make_url(url)
    except ArgumentError as error:
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
    if sslmode is not None and parsed.get_backend_name() in MYSQL_BACKENDS:
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
    options = dict(given or {})
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Statements hold a connection for one round trip. Waiting briefly for a pooled connection is far
        # cheaper than SQLAlchemy's default overflow, which opens and closes a connection per statement.
        # On asyncpg the request path has a pool of its own (connections.py); this one serves the rest.
        options.setdefault("pool_size", ADMIN_CONNECTIONS)
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", deadline)
        # A connection the server closed (a restart, an idle timeout) is noticed before it is used.
        options.setdefault("pool_pre_ping", True)
        if parsed.get_driver_name() == "asyncpg":
            # Fail fast when the server is unreachable (asyncpg waits 60 s to connect) or stops answering
            # (it waits forever for a statement), rather than hang the caller.
            options["connect_args"] = {
                "timeout": deadline,
                "command_timeout": COMMAND_TIMEOUT,
                **(pooler_connect_args() if pgbouncer else {}),
                **options.get("connect_args", {}),
            }
    elif parsed.get_backend_name() in MYSQL_BACKENDS:
        # As on PostgreSQL: on asyncmy the request path has a pool of its own; this one serves the rest.
        options.setdefault("pool_size", ADMIN_CONNECTIONS)
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", deadline)
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_recycle", MYSQL_POOL_RECYCLE)
        # Connections stay in autocommit mode: otherwise every statement outside a transaction pays for
        # SET AUTOCOMMIT = 1 before it, and SET AUTOCOMMIT = 0, SET SESSION TRANSACTION ISOLATION LEVEL
        # and COMMIT after it (four round trips), and the pool's ROLLBACK at check-in (a fifth).
        # `Database.transaction()` asks for a real transaction where it needs one.
        options.setdefault("isolation_level", "AUTOCOMMIT")
        options.setdefault("pool_reset_on_return", None)
        if parsed.get_driver_name() == "asyncmy":
            defaults = mysql_connect_defaults(deadline)
            if "charset" in parsed.query:
                del defaults["charset"]
            # A server that stops answering ends these statements too, as asyncpg's command_timeout
            # does (the request path's connections have the deadline instead).
            defaults["read_timeout"] = max(COMMAND_TIMEOUT, deadline)
            options["connect_args"] = {**defaults, **options.get("connect_args", {})}
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
        self,
        engine: AsyncEngine,
        sql: SQLDialect,
        *,
        table_name: str,
        request_connections: int | None,
        deadline: float,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.sql = sql
        self.table_name = table_name
        #: Whether the engine's pool tests each connection with a statement when it is taken (SQLAlchemy's
        #: `pool_pre_ping`, on in the engines the store makes): one more on the database's counters.
        self.pings_on_checkout = bool(getattr(engine.pool, "_pre_ping", False))
        # Single statements on an autocommit connection: no BEGIN/COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._native: dict[str, NativeStatement] = {}
        self._deadline = deadline
        self._deadlines = Deadlines()
        self._writers: dict[str, deque[asyncio.Future[None]] | None] = {}
        self._requests: RequestPool | None = None
        if request_connections is not None and (
            not isinstance(request_connections, int) or request_connections < 1
        ):
            raise ConfigurationError("request_connections must be a positive whole number")
        driver: dict[str, Any] | None = None
        if engine.dialect.driver == "asyncpg":
            driver = {
                "connect_kwargs": asyncpg_connect_kwargs(
                    engine, deadline, pgbouncer=pgbouncer, connect_args=connect_args
                ),
                "setup": session_settings(deadline, pgbouncer=pgbouncer),
            }
        elif engine.dialect.driver == "asyncmy":
            from .dialects.mysql import connection as mysql

            driver = {
                "connect_kwargs": mysql.connect_kwargs(
                    engine, mysql_connect_defaults(deadline), connect_args or {}
                ),
                "connect": mysql.MySQLConnection.connect,
                "refused": mysql.REFUSED,
            }
        if driver is not None:
            for name in REQUEST_PATH:
                self._native[name] = NativeStatement.compile(getattr(sql, name), engine.dialect)
            self._requests = RequestPool(
                **driver,
                max_size=request_connections or REQUEST_CONNECTIONS,
                idle_timeout=IDLE_TIMEOUT,
                deadline=deadline,
                deadlines=self._deadlines,
            )

    def use(self, sql: SQLDialect) -> None:
        """Run `sql`'s statements from now on (the store found another expiry column than it assumed)."""
        self.sql = sql
        for name in self._native:
            self._native[name] = NativeStatement.compile(getattr(sql, name), self.engine.dialect)

    def one_writer(self, sid: str) -> OneWriter:
        """`async with database.one_writer(sid):` lets one write of session `sid` at a time run in this
        process, the wait and the write within one deadline: the others wait here, rather than each
        holding a connection that waits on the same row lock while every other user waits for a
        connection. A write that runs out of time raises StoreUnavailableError."""
        return OneWriter(self, sid)

    @property
    def requests(self) -> RequestPool | None:
        """The request path's own connection pool, on asyncpg."""
        return self._requests

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed at the end (a prune batch and its lock). On MySQL,
        whose engines the store makes in autocommit mode, the transaction is asked for explicitly."""
        try:
            async with self.engine.connect() as conn:
                if self.engine.dialect.name in MYSQL_BACKENDS:
                    conn = await conn.execution_options(isolation_level=MYSQL_TRANSACTIONS)
                async with conn.begin():
                    yield conn
        except Exception as error:
            self._reraise(error)

    async def fetch_row(self, name: str, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of the request-path statement `name`."""
        native, requests = self._native.get(name), self._requests
        if native is None or requests is None:
            return (await self.execute(getattr(self.sql, name), params)).first()
        row: Sequence[Any] | None = await self._run_native(requests, "fetchrow", native, params, retry=True)
        return row

    async def write(self, name: str, params: Mapping[str, Any]) -> int:
        """Run the request-path write `name`; returns the number of rows it changed."""
        native, requests = self._native.get(name), self._requests
        if native is None or requests is None:
            result = await self.execute(getattr(self.sql, name), params)
            return int(result.rowcount)  # type: ignore[attr-defined]
        status: str = await self._run_native(requests, "execute", native, params)
        return int(status.rsplit(" ", 1)[-1])

    async def execute(
        self, statement: Executable, params: Mapping[str, Any], conn: AsyncConnection | None = None
    ) -> Result[*tuple[Any, ...]]:
        """Run `statement` through SQLAlchemy, on `conn` or on an autocommit connection of its own."""
        return await self._translated(self._execute(statement, params, conn))

    async def deleted_rows(
        self, returning: Executable, params: Mapping[str, Any], conn: AsyncConnection | None = None
    ) -> list[tuple[str, str]]:
        """Delete rows and hand back their (sid, data), through the dialect's `deleted()` statement: a
        DELETE ... RETURNING, or a SELECT ... FOR UPDATE followed by a DELETE of those ids in the same
        transaction (MySQL has no RETURNING)."""
        if self.sql.deletes_returning:
            return [(sid, data) for sid, data in (await self.execute(returning, params, conn)).all()]
        if conn is None:
            async with self.transaction() as own:
                return await self.deleted_rows(returning, params, own)
        found = (await self.execute(returning, params, conn)).all()
        if found:
            await self.execute(self.sql.delete_ids, {"ids": [row_id for _, _, row_id in found]}, conn)
        return [(sid, data) for sid, data, _ in found]

    async def close(self) -> None:
        """Close the request path's connections."""
        if self._requests is not None:
            await self._requests.close()

    async def _execute(
        self, statement: Executable, params: Mapping[str, Any], conn: AsyncConnection | None
    ) -> Result[*tuple[Any, ...]]:
        if conn is not None:
            return await conn.execute(statement, params)
        async with self._autocommit.connect() as own:
            return await own.execute(statement, params)

    async def _run_native(
        self,
        requests: RequestPool,
        method: str,
        statement: NativeStatement,
        params: Mapping[str, Any],
        *,
        retry: bool = False,
    ) -> Any:
        # The request path's own try, not `_translated`'s: one coroutine less per statement.
        try:
            return await requests.run(method, statement.sql, statement.args(params), retry=retry)
        except Exception as error:
            self._reraise(error)

    async def _translated(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except Exception as error:
            self._reraise(error)

    def _reraise(self, error: Exception) -> NoReturn:
        """Raise `error` as the package's error the caller can act on, or as it is."""
        translated = store_error(error, self.table_name)
        if translated is None:
            raise error
        raise translated from error


class OneWriter:
    """`Database.one_writer(sid)`. The session's writers queue in `Database._writers[sid]` (None while
    one writes and nobody waits), each waiter a future the writer before it resolves when done: an
    uncontended write, nearly every write, allocates nothing but this object.

    Everything from entering to leaving ends within one deadline, `operation_timeout`. A writer that
    waits, or whose statements do not run on the request pool (which gives each statement a deadline of
    its own), starts it on entering. One that neither waits nor runs more than a single request-pool
    statement starts none: `bound()` starts it, for what is left of it, before any further statements
    (a merge after a lost compare-and-set)."""

    __slots__ = ("_db", "_entered", "_sid", "_started")

    def __init__(self, db: Database, sid: str) -> None:
        self._db, self._sid = db, sid
        self._started: tuple[asyncio.Task[Any], int] | None = None

    async def __aenter__(self) -> OneWriter:
        db, sid = self._db, self._sid
        writers = db._writers
        if sid not in writers:
            writers[sid] = None  # this write holds the session; nobody waits
            if db._requests is None:
                self._started = db._deadlines.start(db._deadline)
            else:
                self._entered = asyncio.get_running_loop().time()
            return self
        self._started = db._deadlines.start(db._deadline)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = writers[sid]
        if queue is None:
            queue = writers[sid] = deque()
        queue.append(waiter)
        try:
            await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self._hand_over()  # handed the session just as it was cancelled: pass it on
            self._end(type(error))
            raise
        return self

    def bound(self) -> None:
        """Start the deadline, if it is not running yet, for what is left of it since entering."""
        if self._started is None:
            db = self._db
            left = db._deadline - (asyncio.get_running_loop().time() - self._entered)
            self._started = db._deadlines.start(max(left, 0.0))

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._hand_over()
        self._end(kind)

    def _hand_over(self) -> None:
        """Wake the next waiting writer, or leave the session free."""
        writers, sid = self._db._writers, self._sid
        queue = writers.get(sid)
        if not (queue and wake_first(queue, None)):
            del writers[sid]

    def _end(self, kind: type[BaseException] | None) -> None:
        """End the deadline; a write it cut off (or whose statement ran out of time) is unavailable."""
        db, started = self._db, self._started
        expired = started is not None and db._deadlines.end(started, kind is asyncio.CancelledError)
        if expired or (kind is not None and issubclass(kind, TimeoutError)):
            message = f"writing session {redact(self._sid)} did not finish within {db._deadline:g} s"
            raise StoreUnavailableError(message) from None


def asyncpg_connect_kwargs(
    engine: AsyncEngine,
    deadline: float,
    *,
    pgbouncer: bool = False,
    connect_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`asyncpg.connect` keyword arguments for the request path's connections to the engine's database.

    Behind a transaction pooler (`pgbouncer`) asyncpg's statement cache is off, so that each statement
    is parsed, bound and run in one message batch, which the pooler hands to one server connection (see
    `pooler_connect_args`)."""
    _, params = engine.dialect.create_connect_args(engine.url)
    accepted = inspect.signature(asyncpg.connect).parameters
    # The URL's parameters, then the caller's connect_args (ssl, server_settings), as SQLAlchemy's engine
    # connects; the deadline bounds every statement here, so no command_timeout.
    given = {**params, **(connect_args or {})}
    kwargs = {key: value for key, value in given.items() if key in accepted and key != "command_timeout"}
    kwargs["timeout"] = deadline
    if pgbouncer:
        kwargs["statement_cache_size"] = 0
    return kwargs


def session_settings(deadline: float, *, pgbouncer: bool = False) -> str | None:
    """What the request path says on each new connection: the server itself gives up on a statement, or
    on a row lock, a little before the deadline. A write stuck behind another transaction's lock then
    fails there, cleanly, rather than being cancelled from here while the lock may just be going.

    Said in SQL, not as startup parameters: PgBouncer (in any mode) closes the connection of a client
    that sends a startup parameter other than the five it tracks. Behind a transaction pooler nothing is
    said (None): a SET would stay on a server connection that other clients are handed next. There the
    deadline alone ends a statement: asyncpg cancels it, and PgBouncer forwards the cancel request to the
    server connection running it."""
    if pgbouncer:
        return None
    server_timeout = f"{int(deadline * 1000 * SERVER_TIMEOUT_SHARE)}ms"
    return f"SET lock_timeout = '{server_timeout}'; SET statement_timeout = '{server_timeout}'"


def _sqlite_unavailable(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return any(sign in text for sign in SQLITE_UNAVAILABLE)


def mysql_connect_defaults(deadline: float) -> dict[str, Any]:
    """What the store's asyncmy connections are opened with, unless the URL or `connect_args` say
    otherwise: a connect timeout, utf8mb4, and a row lock wait (InnoDB's is 50 s) that the server ends
    within the deadline, in whole seconds as MySQL counts them."""
    lock_wait = max(1, int(deadline * SERVER_TIMEOUT_SHARE))
    return {
        "connect_timeout": deadline,
        "charset": "utf8mb4",
        "init_command": f"SET SESSION innodb_lock_wait_timeout = {lock_wait}",
    }


def mysql_errno(error: BaseException | None) -> int | None:
    """The error number of a MySQL driver's error (asyncmy, PyMySQL, aiomysql), else None."""
    if error is None:
        return None
    module = type(error).__module__.partition(".")[0]
    args = error.args
    if module in ("asyncmy", "pymysql", "aiomysql", "MySQLdb") and args and isinstance(args[0], int):
        return args[0]
    return None


def store_error(error: Exception, table_name: str) -> SessionError | None:
    """The package's error for a driver or SQLAlchemy error, when it is one the caller can act on."""
    if isinstance(error, SessionError):
        return None
    original = error.orig if isinstance(error, DBAPIError) else error
    code = str(getattr(original, "sqlstate", None) or getattr(original, "pgcode", None) or "")
    errno = mysql_errno(original)
    if code == UNDEFINED_TABLE or errno == MYSQL_NO_SUCH_TABLE or "no such table" in str(original):
        return TableMissingError(table_name)
    lost = isinstance(error, PoolTimeoutError) or (
        isinstance(error, DBAPIError)
        and (error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError)))
        # SQLite says OperationalError for bad SQL and bad JSON too, and MySQL's drivers for any error
        # they do not classify (an unknown column): those are bugs, not outages.
        and not (isinstance(original, sqlite3.Error) and not _sqlite_unavailable(original))
        and not (errno is not None and errno not in MYSQL_UNAVAILABLE and not error.connection_invalidated)
    )
    if (
        lost
        or isinstance(original, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError))
        or code[:2] in CONNECTION_SQLSTATE_CLASSES
        or code == LOCK_NOT_AVAILABLE
        or errno in MYSQL_UNAVAILABLE
    ):
        return StoreUnavailableError(f"the session database is unreachable: {original!r}")
    return None
