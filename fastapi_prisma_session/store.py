"""`PrismaSessionStore`: sessions in a SQL table, with the API of prisma-session-store.

A facade: `options` checks what it is told, `repository` reads and writes sessions for the middleware,
`executor` runs every statement (on the dialect's driver), `table` looks at the table once, `pruning`
deletes expired rows, `matching` finds rows by their data and `deleter` disposes what goes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .cookies import COOKIE_KEY
from .deleter import Deleter
from .devices import DeviceOptions
from .dialects import driver_for, folder_for
from .durations import Duration, utcnow
from .executor import Executor
from .logs import LevelName, StoreLog
from .matching import DataMatcher, check_match
from .merging import Merger
from .options import StoreOptions
from .pruning import MAX_BATCH, PruneLoop, Pruner
from .repository import SessionRows, StoredSession
from .rows import DisposeFunction, RowFormat, SessionData, TTLFunction
from .sqltext import DEFAULT_TABLE_NAME, EXPIRES_AT
from .statistics import Statistics
from .table import TableCheck, on_the_table, operation, statements_for
from .urls import DEADLINE, create_engine, engine_for, is_engine

if TYPE_CHECKING:
    import logging

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .dburl import DatabaseURL
    from .telemetry import StoreTelemetry, Telemetry


class PrismaSessionStore:
    """Sessions in the Prisma `Session` table, on PostgreSQL (asyncpg), MySQL/MariaDB (asyncmy) or SQLite.

    Args:
        engine_or_url: an `AsyncEngine` (the caller keeps owning it) or a database URL such as
            `postgresql://…` or `sqlite:///sessions.db` (the store creates the engine with the async
            driver and disposes it in `shutdown()`).
        engine_options: keyword arguments for `create_async_engine` when a URL is given.
        **options: what the store does, as `StoreOptions` (options.py) documents them: `check_period`,
            `ttl`, `dispose`, `operation_timeout`, `user_key`, `encryption_keys`, `devices` and the rest.
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | str,
        *,
        check_period: Duration | None = None,
        ttl: Duration | TTLFunction | None = None,
        db_record_id_is_session_id: bool = False,
        db_record_id_function: Callable[[str], str] | None = None,
        serializer: object | None = None,
        dispose: DisposeFunction | None = None,
        stale: bool = False,
        no_dispose_on_set: bool = False,
        logger: logging.Logger | bool | None = None,
        logger_level: LevelName | Sequence[LevelName] = "error",
        table_name: str = DEFAULT_TABLE_NAME,
        expires_column: str | None = None,
        prune_batch_size: int | None = None,
        prune_pause: Duration | None = None,
        max_data_size: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
        request_connections: int | None = None,
        operation_timeout: Duration = DEADLINE,
        pgbouncer: bool | None = None,
        user_key: str | None = None,
        encryption_keys: Sequence[bytes | str] | None = None,
        telemetry: bool | Telemetry = False,
        devices: bool | DeviceOptions = False,
    ) -> None:
        self._options = options = StoreOptions(
            check_period=check_period,
            ttl=ttl,
            db_record_id_is_session_id=db_record_id_is_session_id,
            db_record_id_function=db_record_id_function,
            serializer=serializer,
            dispose=dispose,
            stale=stale,
            no_dispose_on_set=no_dispose_on_set,
            logger=logger,
            logger_level=logger_level,
            table_name=table_name,
            expires_column=expires_column,
            prune_batch_size=prune_batch_size,
            prune_pause=prune_pause,
            max_data_size=max_data_size,
            request_connections=request_connections,
            operation_timeout=operation_timeout,
            pgbouncer=pgbouncer,
            user_key=user_key,
            encryption_keys=encryption_keys,
            telemetry=telemetry,
            devices=devices,
        )
        #: the options as given, by name (what a `ttl` function receives)
        self.options: Mapping[str, Any] = options.as_mapping()
        self._log = StoreLog(logger, logger_level)
        #: how a session becomes a row: its data text, its id and when it expires
        self.rows = rows = RowFormat(self.options, self._log)
        self._dispose_on_set = dispose is not None and not no_dispose_on_set
        self.table_name = table_name
        self.user_key = user_key
        #: what each session records of its device (`devices`), or None
        self.devices = options.device_options

        self._owns_engine = not is_engine(engine_or_url)
        self._target = target = engine_for(engine_or_url, engine_options, options.deadline, pgbouncer)
        self._engine_options = engine_options
        self._engine = target.engine  # a URL's: made when first asked for
        #: whether the store works through a transaction pooler (`pgbouncer`, or the URL's `?pgbouncer=true`)
        self.pgbouncer = target.pgbouncer
        batch_size = MAX_BATCH if prune_batch_size is None else prune_batch_size
        name = target.url.get_backend_name()
        sql = statements_for(folder_for(name), table_name, expires_column or EXPIRES_AT, batch_size)
        rows.longest_key, rows.longest_data = sql.longest_key, sql.longest_data
        #: runs every statement of the store, on its own connections
        self.executor = executor = Executor(
            driver_for(name),
            target.url,
            lambda: self.engine.dialect,
            sql,
            table_name=table_name,
            deadline=options.deadline,
            max_connections=target.connection_limit if request_connections is None else request_connections,
            pgbouncer=target.pgbouncer,
            connect_args=target.connect_args,
        )
        #: the look at the table's columns before the first statement
        self.table_check = TableCheck(executor, expires_column=expires_column, prune_batch_size=batch_size)
        self._deleter = deleter = Deleter(executor, rows, dispose)
        self._merger = Merger(executor, rows)
        #: the row API the middleware's lifecycle uses
        self.sessions = SessionRows(executor, rows, deleter, self._merger, self._log, stale=stale)
        self._matcher = DataMatcher(
            executor,
            deleter,
            rows.serializer,
            rows.parse,
            self._log,
            is_json=rows.matches_in_sql,
            user_key=user_key,
            moves_change_ids=rows.renamed_id("x") is not None,
        )
        self._pruner = Pruner(
            executor, deleter, batch_size=prune_batch_size, pause=options.pause, log=self._log
        )
        #: OpenTelemetry's spans and metrics (telemetry.py), when `telemetry` asks for them; else None.
        #: Before the prune loop, which takes `self.prune` as it is then.
        self.telemetry: StoreTelemetry | None = None
        if telemetry:
            from .telemetry import instrument  # imports opentelemetry: only a store that asks for it

            self.telemetry = instrument(self, telemetry, target.url)
        self._prune_loop = PruneLoop(self.prune, options.period, self._log) if options.period else None

    @property
    def table(self) -> Any:
        """The session table as the store uses it (its expiry column as the database has it)."""
        return self.table_check.table

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine: the schema's (`create_table`) and the caller's. The store's statements
        run on connections of its own; given a URL, the store makes the engine when first asked for it,
        so a process that only serves sessions never imports SQLAlchemy."""
        if self._engine is None:
            target = self._target
            options = self._options
            self._engine = create_engine(
                target.url.render(), self._engine_options, options.deadline, pgbouncer=target.pgbouncer
            )
        return self._engine

    @property
    def url(self) -> DatabaseURL | URL:
        """The database's URL as the store connects to it (its driver named, Prisma's parameters out),
        or the caller's engine's own URL."""
        url: DatabaseURL | URL = self._target.url
        return url

    @property
    def statistics(self) -> Statistics:
        """What the store has sent to its database since it was made, as counters that only grow:
        `statements` (every one), `loads` (sessions looked up by sid) and `load_statements` (the
        statements that did it: fewer than `loads` when concurrent loads were coalesced)."""
        return self.executor.statistics

    @property
    def table_checked(self) -> bool:
        """True once the store has looked at the table's columns (its first statement does)."""
        return self.table_check.done

    # -- express-session store API -------------------------------------------------------------------

    async def get(self, sid: str) -> SessionData | None:
        """The session stored under `sid`, or None when there is none, it has expired or cannot be read."""
        stored = await self.load(sid)
        return None if stored is None else stored.data

    @operation
    async def set(self, sid: str, session: Mapping[str, Any]) -> None:
        """Create or replace the session `sid`, in one atomic upsert."""
        previous = await self.sessions.load(sid) if self._dispose_on_set else None
        await self.sessions.replace(sid, session)
        if previous is not None:
            await self._deleter.call(sid, previous.data)

    @operation
    async def destroy(self, sid: str | Sequence[str]) -> None:
        """Delete one session, or a list of them in one statement. Missing sessions are ignored."""
        await self.sessions.destroy(sid)

    @operation
    async def touch(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> bool:
        """Move the expiry of an existing session (and its stored cookie) without rewriting user data.

        `expires_at` defaults to what the session's `cookie` says. A missing session is not recreated.
        Returns whether a row was touched.
        """
        expires = self.sessions.expiry(sid, session, expires_at)
        cookie = session.get(COOKIE_KEY)
        if self.rows.is_json and isinstance(cookie, Mapping):
            return await self._merger.patch(sid, {COOKIE_KEY: dict(cookie)}, expires)
        async with self.executor.writers.one(sid):
            return await self.executor.write("touch", {"session_id": sid, "expires": expires}) > 0

    @operation
    async def destroy_all(self, /, **match: Any) -> int:
        """End every session whose data holds all the given key/value pairs: "log out everywhere".

        `await store.destroy_all(user_id=42)` deletes them at once (one statement, or one transaction)
        and returns how many went. A row that cannot be read never matches and never fails the call.
        """
        check_match(match, "destroy_all", "clear() deletes everything")
        return await self._matcher.delete(match)

    @operation
    async def matching(self, /, **match: Any) -> dict[str, StoredSession]:
        """Every live session whose data holds all the given key/value pairs, by sid, in one SELECT.

        `await store.matching(user_id=42)` lists a user's sessions (devices), for example to show them
        or to end all but the current one. A row that cannot be read never matches.
        """
        check_match(match, "matching", "all() lists every session")
        found = await self._matcher.select(match)
        return {sid: StoredSession(data, expires_at) for sid, data, expires_at in found}

    @operation
    async def all(self) -> dict[str, SessionData]:
        """Every live session by sid. A row that cannot be read is logged and left out."""
        sessions: dict[str, SessionData] = {}
        for sid, text in await self.executor.fetch(self.executor.sql.live_rows, {"now": utcnow()}):
            data = self.rows.parse(sid, text)
            if data is not None:
                sessions[sid] = data
        return sessions

    @operation
    async def ids(self) -> list[str]:
        """The sids of every live session."""
        return [row[0] for row in await self.executor.fetch(self.executor.sql.live_ids, {"now": utcnow()})]

    @operation
    async def length(self) -> int:
        """How many live sessions there are (a COUNT, not a fetch)."""
        rows = await self.executor.fetch(self.executor.sql.live_count, {"now": utcnow()})
        return int(rows[0][0])

    @operation
    async def clear(self) -> None:
        """Delete every session."""
        await self._deleter.delete(self.executor.sql.clear, self.executor.sql.clear_returning, {})

    async def prune(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Delete expired sessions in bounded batches through the `expiresAt` index, each batch within
        `operation_timeout`.

        One process prunes at a time: a run that finds another holding the lock does nothing and
        returns 0. `progress(total_so_far)` is called after each batch. Returns how many rows went.
        """
        await self.check_table()
        return await self._pruner.run(progress)

    @property
    def last_prune_skipped(self) -> bool:
        """True when the last prune() found another process pruning and did nothing."""
        return self._pruner.last_skipped

    # -- the pruning loop and the store's lifetime --------------------------------------------------

    def start_interval(self) -> None:
        """Prune every `check_period` seconds (no-op when it is off). Needs a running event loop."""
        if self._prune_loop is not None:
            self._prune_loop.start()

    async def stop_interval(self) -> None:
        """Stop automatic pruning; `start_interval()` starts it again."""
        if self._prune_loop is not None:
            await self._prune_loop.stop()

    @property
    def interval_running(self) -> bool:
        return self._prune_loop is not None and self._prune_loop.running

    async def shutdown(self) -> None:
        """Stop pruning, close the store's connections, and dispose the engine if (and only if) the store
        created it."""
        await self.stop_interval()
        await self.executor.close()
        if self._owns_engine and self._engine is not None:
            await self._engine.dispose()

    async def __aenter__(self) -> Self:
        self.start_interval()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` with a `LoggedQuery` (executor.py: query, args, elapsed, exception) after every
        statement the store sends, for instrumentation."""
        self.executor.add_query_logger(callback)

    async def create_table(self) -> None:
        """Create the table if it is missing, with the `user_key` index if there is that option. For
        demos and tests; production uses `python -m fastapi_prisma_session migrate`."""
        await self.table_check.create(self.engine, self.user_key)

    async def check_table(self) -> None:
        """Look at the table's columns now, if that has not happened yet (the first statement does it):
        raises ConfigurationError, TableMissingError or StoreUnavailableError as the store would."""
        if not self.table_check.done:
            async with self.executor.operation():
                await self.table_check.ensure()

    # -- the row API the middleware uses (repository.SessionRepository) ------------------------------

    @on_the_table
    def load(self, sid: str, *, now: datetime | None = None) -> Awaitable[StoredSession | None]:
        """`SessionRows.load` (repository.py): the live session `sid`, in one indexed SELECT. Its own
        coroutine, with none around it."""
        return self.sessions.load(sid, now=now)

    @on_the_table
    async def create(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        """`SessionRows.create`: insert a new session. Never overwrites."""
        await self.sessions.create(sid, session, expires_at=expires_at)

    @on_the_table
    async def update(
        self,
        sid: str,
        session: Mapping[str, Any],
        *,
        changed: Iterable[str] | None = None,
        removed: Iterable[str] = (),
        expected: str | None = None,
        expires_at: datetime | None = None,
        merge: bool = True,
    ) -> bool:
        """`SessionRows.update`: write back an existing session, never bringing back a deleted row."""
        return await self.sessions.update(
            sid,
            session,
            changed=changed,
            removed=removed,
            expected=expected,
            expires_at=expires_at,
            merge=merge,
        )

    @operation
    async def rename(self, sid: str, new_sid: str) -> bool:
        """`SessionRows.rename`: move the live session `sid` to `new_sid` (`regenerate(keep_data=True)`)."""
        return await self.sessions.rename(sid, new_sid)


__all__ = ["PrismaSessionStore", "StoredSession"]
