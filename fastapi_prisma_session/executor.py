"""Where every statement of the store meets the database: one pool, one deadline, one reading of errors.

Each statement (SQLAlchemy's, built once per store by the dialect) is compiled once to the driver's own
SQL and run on the store's connections (connections.py): no statement goes through SQLAlchemy's engine
or its pool. Every public operation ends within `operation_timeout`; the server is told to end a
statement, or a wait for a lock, before that (the driver's `setup`). A driver's error is read by the
dialect's driver (`Fault`) and becomes the package's: `StoreUnavailableError` (a 503), `TableMissingError`,
or `StatementError` for what the caller handles itself. A deadlock, a serialization failure or a Galera
certification failure, after which nothing was applied, is run again (conflicts.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from .coalescing import LoadCoalescer, padded_arity
from .conflicts import run_again
from .connections import Connection, RequestPool
from .deadlines import Deadlines
from .dialects.driver import Fault
from .exceptions import (
    ConfigurationError,
    SessionError,
    StoreSetupError,
    StoreUnavailableError,
    TableMissingError,
)
from .sqltext import Converted, SQLText, Statement, quote
from .writers import WriterQueue

if TYPE_CHECKING:
    from sqlalchemy import Executable
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.compiler import SQLCompiler

    from .dburl import DatabaseURL as URL
    from .dialects.driver import Driver

T = TypeVar("T")

# The statements a request runs, compiled ahead by name (`fetch_row`, `write`).
REQUEST_PATH = ("load", "load_many", "insert", "update", "update_if_unchanged", "touch", "rename")
# The store's connections: at most this many, each closed after idling this long.
CONNECTIONS = 10
IDLE_TIMEOUT = 60.0
# Statements built per call (a match's) are compiled again after this many others.
PREPARED_LIMIT = 256

Row = Sequence[Any]
Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """What a query logger receives: the statement, its arguments, how long it took and how it failed
    (asyncpg's `LoggedQuery` has these too)."""

    query: str
    args: Sequence[Any]
    elapsed: float
    exception: BaseException | None


def rows_changed(status: str) -> int:
    """The rows a write changed, from its status as asyncpg gives it (`UPDATE 1`, `INSERT 0 1`)."""
    return int(status.rsplit(" ", 1)[-1])


class StatementError(SessionError):
    """A statement failed in a way the store handles itself (`fault` says how); the driver's error is
    its `__cause__`."""

    def __init__(self, fault: Fault, error: BaseException) -> None:
        super().__init__(f"{fault.value}: {error}")
        self.fault = fault


class Prepared(Converted):
    """A statement compiled once to the driver's SQL, with the order of its parameters and the type
    conversions SQLAlchemy would apply (SQLite's DateTime); an `IN` list is expanded per call."""

    __slots__ = ("_binds", "_compiled", "_expanding", "_fixed", "_order", "_plain", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled: SQLCompiler = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self._compiled = compiled
        self.sql: str = compiled.string
        self._order: tuple[str, ...] = tuple(compiled.positiontup or ())
        self._expanding = bool(compiled.post_compile_params)
        # Values the statement carries itself (a literal bound as a parameter).
        self._fixed = {
            name: value
            for name, value in compiled.construct_params(_check=False).items()
            if value is not None
        }
        # Every parameter is the caller's, none converted: the request path's common case.
        self._plain = not self._expanding and not any(name in self._fixed for name in self._order)
        processors = cast("Mapping[str, Processor]", compiled._bind_processors)
        self._binds = tuple((i, processors[name]) for i, name in enumerate(self._order) if name in processors)
        results = [entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns]
        self._results = tuple(results) if any(results) else None

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional arguments for `params`."""
        if self._plain and not self._binds:
            return self.sql, [params[name] for name in self._order]
        if self._expanding:
            state = self._compiled.construct_expanded_state(dict(params))
            processors = cast("Mapping[str, Processor]", self._compiled._bind_processors)
            args = list(state.positional_parameters)
            for i, name in enumerate(state.positiontup or ()):
                processor = processors.get(name) or processors.get(name.rpartition("_")[0])
                if processor is not None:
                    args[i] = processor(args[i])
            return state.statement, args
        fixed = self._fixed
        args = [params[name] if name in params else fixed[name] for name in self._order]
        for i, processor in self._binds:
            args[i] = processor(args[i])
        return self.sql, args


class Executor:
    """Runs one store's statements on its connections."""

    def __init__(
        self,
        driver: Driver,
        url: URL,
        sqlalchemy_dialect: Callable[[], Dialect],
        sql: SQLText,
        *,
        table_name: str,
        deadline: float,
        max_connections: int | None = None,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        if max_connections is not None and (
            not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1
        ):
            raise ConfigurationError("request_connections must be a positive whole number")
        self.driver = driver
        # SQLAlchemy's dialect, for the statements built per call (matching by data): asked for then only.
        self._sqlalchemy_dialect = sqlalchemy_dialect
        self.table_name = table_name
        self.deadline = deadline
        self.deadlines = Deadlines()
        kwargs = driver.connect_kwargs(url, deadline, pgbouncer=pgbouncer, connect_args=connect_args)
        limit = driver.max_connections(url)
        size = max_connections or CONNECTIONS
        self.pool = RequestPool(
            driver,
            kwargs,
            driver.setup(deadline, pgbouncer=pgbouncer),
            max_size=size if limit is None else min(size, limit),
            idle_timeout=IDLE_TIMEOUT,
            deadline=deadline,
            deadlines=self.deadlines,
        )
        #: one write of a session at a time in this process
        self.writers = WriterQueue(self.deadlines, deadline)
        #: what the store has sent to its database (`PrismaSessionStore.statistics`)
        self.statistics = self.pool.statistics
        # Loads by sid: alone while a connection is free, else coalesced with the others then waiting.
        self._loads = LoadCoalescer(self.pool, self._load_many, self._failure)
        self._prepared: dict[int, tuple[Executable, Prepared]] = {}
        #: called after every statement (`add_query_logger`)
        self.loggers: list[Callable[[LoggedQuery], None]] = []
        self._named: dict[str, Prepared | Statement] = {}
        self.sql = sql
        self.use(sql)

    def use(self, sql: SQLText) -> None:
        """Run `sql`'s statements from now on (the table's expiry column is not the one assumed)."""
        self.sql = sql
        self._named = {name: self.prepare(getattr(sql, name)) for name in REQUEST_PATH}

    def prepare(self, statement: Executable | Statement) -> Prepared | Statement:
        """`statement` as the driver's SQL: compiled already (sqltext.py), or by SQLAlchemy once."""
        if isinstance(statement, Statement):
            return statement
        found = self._prepared.get(id(statement))
        if found is None:
            if len(self._prepared) >= PREPARED_LIMIT:
                self._prepared.clear()
            prepared = Prepared(statement, self._sqlalchemy_dialect())
            found = self._prepared[id(statement)] = (statement, prepared)
        return found[1]

    # -- the request path: one statement each, by name ----------------------------------------------------

    async def fetch_row(self, name: str, params: Mapping[str, Any]) -> Row | None:
        """The first row of the request-path statement `name`."""
        prepared = self._named[name]
        row: Row | None = await self._run("fetchrow", prepared, params, retry=True)
        return None if row is None else prepared.row(row)

    def load_row(self, sid: str) -> Awaitable[Row | None]:
        """The (data, expiresAt) row of the session `sid`, or None: read alone, or in one statement with
        the loads of other requests waiting at the same time (coalescing.py). A plain function: the
        coroutine awaited is the load's own, with none around it."""
        statistics = self.statistics
        statistics.loads += 1
        loads = self._loads
        if not loads.batching():
            statistics.load_statements += 1
            return loads.alone(self.fetch_row("load", {"session_id": sid}))
        return loads.load(sid)

    async def _load_many(self, connection: Connection, sids: list[str]) -> dict[str, Row]:
        """The rows of `sids` (distinct), by the sid each row holds, read on `connection`."""
        statistics = self.statistics
        statistics.load_statements += 1
        statistics.statements += 1
        prepared = self._named["load_many"]
        if not self.sql.sids_as_array:
            # One parameter each: a few statements serve every batch, the sids padded to a power of two.
            sids = sids + [sids[-1]] * (padded_arity(len(sids)) - len(sids))
        sql, args = prepared.bind({"sids": sids})
        call = connection.fetch(sql, *args)
        rows: Sequence[Row] = await (self.logged(call, sql, args) if self.loggers else call)
        found: dict[str, Row] = {}
        for raw in rows:
            row = prepared.row(raw)
            found[row[0]] = (row[1], row[2])
        return found

    async def write(self, name: str, params: Mapping[str, Any]) -> int:
        """Run the request-path write `name`; returns the number of rows it changed."""
        return rows_changed(await self._run("execute", self._named[name], params))

    # -- any statement ----------------------------------------------------------------------------------

    async def fetch(self, statement: Executable | Statement, params: Mapping[str, Any]) -> list[Row]:
        """Every row of a query."""
        prepared = self.prepare(statement)
        rows: Sequence[Row] = await self._run("fetch", prepared, params, retry=True)
        return [prepared.row(row) for row in rows]

    async def execute(self, statement: Executable | Statement, params: Mapping[str, Any]) -> int:
        """Run a statement; returns the number of rows it changed."""
        return rows_changed(await self._run("execute", self.prepare(statement), params))

    async def transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """`await work(transaction)` in one transaction on one connection, committed when it returns.
        Failed in any way, it is rolled back (its connection closed); lost to a deadlock, it runs again."""
        begin = self.driver.begin

        async def unit(connection: Connection) -> T:
            transaction = Transaction(self, connection)
            for statement in begin:
                await transaction.run("execute", statement, [])
            result = await work(transaction)
            await transaction.run("execute", "COMMIT", [])
            return result

        started = time.monotonic()
        try:
            return await self.pool.using(unit)
        except Exception as error:
            return await self._run_again(lambda: self.pool.using(unit), error, started)

    async def describe(self, table_name: str) -> Sequence[tuple[str, Any]]:
        """The (name, driver's type) of the columns of the table `table_name`."""
        quoted = quote(self.sql.database, table_name)
        self.statistics.statements += 1
        described = self.pool.using(lambda connection: self.driver.describe(connection, quoted), retry=True)
        try:
            if not self.loggers:
                return await described
            return await self.logged(described, self.driver.describing(quoted), [])
        except Exception as error:
            self._raise(error)

    @contextlib.asynccontextmanager
    async def operation(self) -> AsyncIterator[None]:
        """One public operation, its statements and waits all within `operation_timeout`."""
        try:
            async with self.deadlines.within(self.deadline):
                yield
        except TimeoutError:
            raise StoreUnavailableError(
                f"the session database did not answer within {self.deadline:g} s"
            ) from None

    def add_query_logger(self, callback: Callable[[LoggedQuery], None]) -> None:
        """Have `callback(LoggedQuery)` called after every statement, as asyncpg's query loggers are."""
        self.loggers.append(callback)

    async def logged(self, call: Awaitable[T], sql: str, args: Sequence[Any]) -> T:
        """`await call`, the statement `sql`, and tell the query loggers how it went."""
        started, failure = time.monotonic(), None  # type: float, BaseException | None
        try:
            return await call
        except BaseException as error:
            failure = error
            raise
        finally:
            logged = LoggedQuery(sql, args, time.monotonic() - started, failure)
            for callback in self.loggers:
                callback(logged)

    async def close(self) -> None:
        await self.pool.close()

    # -- running and reading errors -------------------------------------------------------------------------

    async def _run(
        self, method: str, prepared: Prepared | Statement, params: Mapping[str, Any], *, retry: bool = False
    ) -> Any:
        sql, args = prepared.bind(params)
        started = time.monotonic()
        try:
            return await self._once(method, sql, args, retry)
        except Exception as error:
            return await self._run_again(lambda: self._once(method, sql, args, retry), error, started)

    def _once(self, method: str, sql: str, args: list[Any], retry: bool) -> Awaitable[Any]:
        # A plain function: the pool's coroutine, logged when there are loggers, and no other around it.
        call = self.pool.run(method, sql, args, retry=retry)
        return self.logged(call, sql, args) if self.loggers else call

    async def _run_again(self, call: Callable[[], Awaitable[T]], error: Exception, started: float) -> T:
        """When `error` lost a conflict (nothing was applied), `call` run again (conflicts.py) within
        what is left of the deadline since `started`; else, or when that fails too, the error raised as
        the package's."""
        if not self.conflicted(error):
            self._raise(error)
        left = self.deadline - (time.monotonic() - started)
        try:
            return await run_again(call, error, self.conflicted, deadlines=self.deadlines, left=left)
        except Exception as again:
            self._raise(again)

    def conflicted(self, error: BaseException) -> bool:
        """Whether `error`, or the driver's error behind the package's, lost a conflict."""
        if isinstance(error, StoreUnavailableError) and error.__cause__ is not None:
            error = error.__cause__
        return self.driver.classify(error) is Fault.CONFLICT

    def _failure(self, error: Exception) -> Exception:
        """`error` as the package's error, caused by it, or as it is (a bug: bad SQL, a wrong type): what
        `_raise` raises, and what a coalesced load hands each of its requests."""
        if isinstance(error, SessionError):
            return error
        failure: Exception
        if isinstance(error, TimeoutError):
            failure = StoreUnavailableError(f"the session database did not answer within {self.deadline:g} s")
        else:
            fault = self.driver.classify(error)
            if fault is None:
                return error
            if fault is Fault.UNAVAILABLE or fault is Fault.CONFLICT:
                failure = StoreUnavailableError(f"the session database is unreachable: {error!r}")
            elif fault is Fault.MISSING_TABLE:
                failure = TableMissingError(self.table_name)
            elif fault is Fault.LOGIN_REFUSED:
                failure = StoreSetupError(
                    f"the session database refused the store's login ({error}): check the user, password "
                    "and database name in the URL"
                )
            else:
                failure = StatementError(fault, error)
        failure.__cause__ = error  # as `raise failure from error` sets it
        return failure

    def _raise(self, error: Exception) -> NoReturn:
        """Raise `error` as the package's error, or as it is (a bug: bad SQL, a wrong type)."""
        raise self._failure(error)


class Transaction:
    """The statements of one `Executor.transaction`, on its connection."""

    __slots__ = ("_connection", "_executor")

    def __init__(self, executor: Executor, connection: Connection) -> None:
        self._executor, self._connection = executor, connection

    async def fetch(self, statement: Executable | Statement, params: Mapping[str, Any]) -> list[Row]:
        prepared = self._executor.prepare(statement)
        rows: Sequence[Row] = await self.run("fetch", *prepared.bind(params))
        return [prepared.row(row) for row in rows]

    async def execute(self, statement: Executable | Statement, params: Mapping[str, Any]) -> int:
        return rows_changed(await self.run("execute", *self._executor.prepare(statement).bind(params)))

    async def run(self, method: str, sql: str, args: list[Any]) -> Any:
        call = getattr(self._connection, method)(sql, *args)
        executor = self._executor
        executor.statistics.statements += 1
        return await (executor.logged(call, sql, args) if executor.loggers else call)
