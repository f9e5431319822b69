"""`PrismaSessionStore`: sessions in a SQL table, with the API of prisma-session-store.

The store decides what a row holds and when it expires; `database` runs the statements, `dialects` write
them for each database, `pruning` deletes expired rows and `matching` finds rows by their data.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import literal_column, select, table
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .cookies import COOKIE_KEY
from .database import DEADLINE, Database, engine_for, mysql_errno
from .dialects import for_database
from .dialects.base import check_user_key
from .durations import Duration, naive_utc, to_seconds, utcnow
from .exceptions import ConfigurationError, StoreUnavailableError
from .logs import LevelName, StoreLog, redact
from .matching import DataMatcher, check_match
from .merging import Merger
from .models import DEFAULT_TABLE_NAME, EXPIRES, EXPIRES_AT, session_table
from .pruning import MAX_BATCH, PruneLoop, Pruner
from .rows import DisposeFunction, RowFormat, SessionData, TTLFunction, check_sid

if TYPE_CHECKING:
    from sqlalchemy import Executable
    from sqlalchemy.ext.asyncio import AsyncConnection

UPSERT_ATTEMPTS = 3
# PostgreSQL's type oid of TIMESTAMP WITH TIME ZONE.
TIMESTAMPTZ_OID = 1184
# The columns every generation of prisma-session-store's model has, besides its expiry column.
ROW_COLUMNS = ("id", "sid", "data")

P = ParamSpec("P")
R = TypeVar("R")


def _on_the_table(
    method: Callable[Concatenate[PrismaSessionStore, P], Awaitable[R]],
) -> Callable[Concatenate[PrismaSessionStore, P], Coroutine[Any, Any, R]]:
    """A store method that runs statements: the first one looks at the table's columns first."""

    async def checked_first(store: PrismaSessionStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        await store.check_table()
        return await method(store, *args, **kwargs)

    # Not a coroutine function itself: once the table is checked, the call is the method's own coroutine,
    # with no second one around it (each one more object per request in flight for the collector).
    @functools.wraps(method)
    def on_the_table(
        store: PrismaSessionStore, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        if store.table_checked:
            return method(store, *args, **kwargs)  # type: ignore[return-value]
        return checked_first(store, *args, **kwargs)

    return on_the_table


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A live row as the middleware needs it: the deserialized data and when the row expires."""

    data: SessionData
    expires_at: datetime
    #: the `data` column's text as read, to write the row back only if nobody changed it meanwhile
    text: str | None = None


class PrismaSessionStore:
    """Sessions in the Prisma `Session` table, on PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Args:
        engine_or_url: an `AsyncEngine` (the caller keeps owning it) or a database URL such as
            `postgresql://…` or `sqlite:///sessions.db` (the store creates the engine with the async
            driver and disposes it in `shutdown()`).
        check_period: seconds between automatic prunes of expired rows; None or 0 turns pruning off.
        ttl: row lifetime in seconds, or `callable(options, session, sid) -> seconds`. Default: the
            session cookie's remaining max age, else one day.
        db_record_id_is_session_id: use the session id as the row's `id`.
        db_record_id_function: `callable(sid) -> str` that makes the row's `id`. Default: a new cuid2.
        serializer: an object with `dumps`/`loads` (or `stringify`/`parse`). Default: compact JSON, as
            express-session writes it.
        dispose: `callable(sid, session)`, sync or async, called for every session that is dropped:
            destroyed, expired on `get`, pruned, cleared, and overwritten by `set` unless
            `no_dispose_on_set`.
        stale: `get` of an expired session returns it one last time (and deletes it) instead of None.
        no_dispose_on_set: do not call `dispose` when `set` overwrites a session.
        logger: a `logging.Logger` (default: the `fastapi_prisma_session` logger), or False for silence.
        logger_level: the level, or list of levels, that the store emits: "debug", "info" (or "log"),
            "warn", "error", or `logging` constants. Default: errors only.
        table_name: the session table's name.
        expires_column: the table's expiry column: "expiresAt" (prisma-session-store 3.x's model) or
            "expires" (2.x's, the seed README's). Default None: the store looks at the table the first
            time it reaches it and takes whichever of the two it has.
        prune_batch_size: rows deleted per statement by `prune()`. Default: each batch sized to take
            about 50 ms, between 50 and 20,000 rows.
        prune_pause: seconds `prune()` rests between batches, to leave the database to requests.
            Default: a rest that grows when batches slow down (the database is busy) and shrinks when it
            is idle again.
        max_data_size: the largest serialized session, in bytes, that a write accepts; a larger one
            raises `SessionTooLargeError` and the stored session stays as it was. Default: no limit
            (on MySQL, 16 MiB less 64 KiB: what MEDIUMTEXT and MariaDB's default max_allowed_packet take).
        engine_options: keyword arguments for `create_async_engine` when a URL is given.
        request_connections: on PostgreSQL and MySQL, the most connections the request path opens
            (default 10); they are opened as concurrent requests need them and closed after a minute idle.
        operation_timeout: seconds within which every request-path operation (waiting for a connection,
            opening one, running the statement) ends, in `StoreUnavailableError` (a 503) if need be.
        pgbouncer: a transaction pooler (PgBouncer, Supabase's or Neon's pooler) is between the store and
            PostgreSQL: every statement is one the pooler can hand to any server connection, and nothing
            is SET on the server connections it shares. Default: what the URL says (Prisma's
            `?pgbouncer=true`); with an engine of your own, build it with
            `connect_args=pooler_connect_args()` too.
        user_key: the top-level data key that names a session's user (such as "user_id"), when the
            database has the index `migrate --user-key` adds for it: `destroy_all` and `matching` on that
            key then look it up in the index instead of reading every row. Default: None (no index).
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
    ) -> None:
        options = dict(locals())
        for name in ("self", "engine_or_url", "engine_options"):
            del options[name]
        self.options: Mapping[str, Any] = MappingProxyType(options)
        if dispose is not None and not callable(dispose):
            raise ConfigurationError("dispose must be a callable taking (sid, session)")
        self._log = StoreLog(logger, logger_level)
        #: how a session becomes a row: its data text, its id and when it expires
        self.rows = rows = RowFormat(self.options, self._log)
        self._dispose = dispose
        self._dispose_on_set = dispose is not None and not no_dispose_on_set
        self._stale = stale
        self.table_name = table_name

        deadline = to_seconds(operation_timeout, "operation_timeout", allow_zero=False) or DEADLINE
        self._owns_engine = not isinstance(engine_or_url, AsyncEngine)
        target = engine_for(engine_or_url, engine_options, deadline, pgbouncer)
        self.engine = engine = target.engine
        #: whether the store works through a transaction pooler (`pgbouncer`, or the URL's `?pgbouncer=true`)
        self.pgbouncer = target.pgbouncer
        self.table = session_table(table_name, expires_column=expires_column or EXPIRES_AT)
        self._expires_column = expires_column
        #: The largest prune batch the statements allow (the pruner sizes each batch up to it).
        self._prune_batch_size = MAX_BATCH if prune_batch_size is None else prune_batch_size
        #: True once the first statement has found the table's expiry column (`check_table`).
        self.table_checked = False
        # The look at the table in flight: requests that arrive meanwhile wait for it, not for turns.
        self._checking: asyncio.Future[None] | None = None
        self._deadline = deadline
        sql = for_database(engine.dialect.name, self.table, prune_batch_size=self._prune_batch_size)
        rows.longest_key, rows.longest_data = sql.longest_key, sql.longest_data
        self._db = Database(
            engine,
            sql,
            table_name=table_name,
            request_connections=target.connection_limit
            if request_connections is None
            else request_connections,
            deadline=deadline,
            pgbouncer=target.pgbouncer,
            connect_args=target.connect_args,
        )
        self._merger = Merger(self._db, rows)
        if user_key is not None:
            check_user_key(user_key)
            if not rows.is_json:
                raise ConfigurationError("user_key needs the JSON serializer: the index reads data as JSON")
        self.user_key = user_key
        self._matcher = DataMatcher(
            self._db, rows.serializer, rows.parse, self._log, is_json=rows.is_json, user_key=user_key
        )
        pause = None if prune_pause is None else to_seconds(prune_pause, "prune_pause") or 0.0
        self._pruner = Pruner(self._db, self._delete, batch_size=prune_batch_size, pause=pause, log=self._log)
        period = to_seconds(check_period, "check_period")
        self._prune_loop = PruneLoop(self.prune, period, self._log) if period else None

    # -- express-session store API -------------------------------------------------------------------

    async def get(self, sid: str) -> SessionData | None:
        """The session stored under `sid`, or None when there is none, it has expired or cannot be read."""
        stored = await self.load(sid)
        return None if stored is None else stored.data

    @_on_the_table
    async def set(self, sid: str, session: Mapping[str, Any]) -> None:
        """Create or replace the session `sid`, in one atomic upsert."""
        params = self.rows.new_row(sid, session, self.rows.expiry_from_cookie(sid, session))
        previous = await self.load(sid) if self._dispose_on_set else None
        # Two first writes of one sid can race past ON CONFLICT (sid) and collide on the primary key when
        # the id is derived from the sid. The loser retries once the winner's row is visible, and then
        # takes the update path.
        for attempt in range(UPSERT_ATTEMPTS):
            try:
                await self._db.execute(self._db.sql.upsert, params)
                break
            except IntegrityError:
                if attempt == UPSERT_ATTEMPTS - 1:
                    raise
            except DBAPIError as error:
                clash = self._db.sql.sid_clash_error
                if clash is None or mysql_errno(error.orig) != clash:
                    raise
                raise ValueError(
                    f"session {redact(sid)} would overwrite another session's row, whose sid differs only in "
                    "case (this database's unique index takes them for the same) or whose id is the same "
                    "(db_record_id_function): nothing was written"
                ) from None
        if previous is not None:
            await self._call_dispose(sid, previous.data)

    @_on_the_table
    async def destroy(self, sid: str | Sequence[str]) -> None:
        """Delete one session, or a list of them in one statement. Missing sessions are ignored."""
        sids = [sid] if isinstance(sid, str) else list(sid)
        if sids:
            await self._delete(self._db.sql.delete, self._db.sql.delete_returning, {"sids": sids})

    @_on_the_table
    async def touch(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> bool:
        """Move the expiry of an existing session (and its stored cookie) without rewriting user data.

        `expires_at` defaults to what the session's `cookie` says. A missing session is not recreated.
        Returns whether a row was touched.
        """
        expires = self._expiry(sid, session, expires_at)
        cookie = session.get(COOKIE_KEY)
        if self.rows.is_json and isinstance(cookie, Mapping):
            return await self._merger.patch(sid, {COOKIE_KEY: dict(cookie)}, expires)
        return await self._db.write("touch", {"session_id": sid, "expires": expires}) > 0

    @_on_the_table
    async def destroy_all(self, /, **match: Any) -> int:
        """End every session whose data holds all the given key/value pairs: "log out everywhere".

        `await store.destroy_all(user_id=42)` deletes them in one statement and returns how many went.
        A row that cannot be read never matches and never fails the call.
        """
        check_match(match, "destroy_all", "clear() deletes everything")
        return await self._matcher.delete(match, self._delete, self.destroy)

    @_on_the_table
    async def matching(self, /, **match: Any) -> dict[str, StoredSession]:
        """Every live session whose data holds all the given key/value pairs, by sid, in one SELECT.

        `await store.matching(user_id=42)` lists a user's sessions (devices), for example to show them
        or to end all but the current one. A row that cannot be read never matches.
        """
        check_match(match, "matching", "all() lists every session")
        found = await self._matcher.select(match)
        return {sid: StoredSession(data, expires_at) for sid, data, expires_at in found}

    @_on_the_table
    async def all(self) -> dict[str, SessionData]:
        """Every live session by sid. A row that cannot be read is logged and left out."""
        result = await self._db.execute(self._db.sql.live_rows, {"now": utcnow()})
        sessions: dict[str, SessionData] = {}
        for sid, text in result.all():
            data = self.rows.parse(sid, text)
            if data is not None:
                sessions[sid] = data
        return sessions

    @_on_the_table
    async def ids(self) -> list[str]:
        """The sids of every live session."""
        result = await self._db.execute(self._db.sql.live_ids, {"now": utcnow()})
        return list(result.scalars().all())

    @_on_the_table
    async def length(self) -> int:
        """How many live sessions there are (a COUNT, not a fetch)."""
        result = await self._db.execute(self._db.sql.live_count, {"now": utcnow()})
        return int(result.scalar_one())

    @_on_the_table
    async def clear(self) -> None:
        """Delete every session."""
        await self._delete(self._db.sql.clear, self._db.sql.clear_returning, {})

    @_on_the_table
    async def prune(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Delete expired sessions in bounded batches through the `expiresAt` index.

        On PostgreSQL one process prunes at a time: a run that finds another holding the advisory lock
        does nothing and returns 0. `progress(total_so_far)` is called after each batch. Returns how
        many rows went.
        """
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
        """Stop pruning, and dispose the engine if (and only if) the store created it."""
        await self.stop_interval()
        await self._db.close()
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Self:
        self.start_interval()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """On PostgreSQL and MySQL, call `callback` with asyncpg's `LoggedQuery` (or one like it) for
        every request-path statement (load, insert, update, touch), for instrumentation. Other
        statements go through SQLAlchemy, whose engine events see them."""
        if self._db.requests is not None:
            self._db.requests.add_query_logger(callback)

    async def create_table(self) -> None:
        """Create the table if it is missing, with the `user_key` index if there is that option. For
        demos and tests; production uses `python -m fastapi_prisma_session migrate`."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self.table.create, checkfirst=True)
            if self.user_key is not None:
                for statement in self._db.sql.user_key_ddl(self.user_key, if_exists=True)[0]:
                    await conn.execute(statement)

    async def check_table(self) -> None:
        """Look at the table's columns, once (every store method that runs statements does this first):
        which expiry column it has, `expiresAt` or `expires`, or that it is `expires_column`.

        Calls that arrive while the look is under way share it. Raises ConfigurationError when the
        table lacks a column the store needs, TableMissingError when there is no table, and
        StoreUnavailableError when the database does not answer within `operation_timeout`; the next
        call then looks again."""
        checking = self._checking
        if (
            checking is None
            or checking.get_loop() is not asyncio.get_running_loop()
            or (checking.done() and (checking.cancelled() or checking.exception() is not None))
        ):
            checking = self._checking = asyncio.ensure_future(self._look_at_table())
        try:
            await asyncio.shield(checking)
        except BaseException:
            if checking.done() and self._checking is checking:
                self._checking = None  # failed (or cancelled): the next call looks again
            raise

    async def _look_at_table(self) -> None:
        # A query for no rows: the database describes the table as the store's statements see it.
        look: Executable = select(literal_column("*")).select_from(table(self.table_name)).limit(0)
        try:
            async with asyncio.timeout(self._deadline):
                described = await self._db.execute(look, {})
        except TimeoutError:
            raise StoreUnavailableError(
                f'the session database did not describe "{self.table_name}" within {self._deadline:g} s'
            ) from None
        columns = list(described.keys())
        expires_column = self._expiry_column(columns)
        cursor = getattr(described, "cursor", None)
        types = {column[0]: column[1] for column in (cursor.description or ())} if cursor else {}
        if self.engine.dialect.name == "postgresql" and types.get(expires_column) == TIMESTAMPTZ_OID:
            # asyncpg reads aware datetimes from it, and writes a naive one as the host's local time.
            raise ConfigurationError(
                f'the session table "{self.table_name}" has "{expires_column}" as TIMESTAMPTZ '
                "(@db.Timestamptz); the store reads and writes Prisma's default DateTime, TIMESTAMP(3): "
                f'ALTER TABLE "{self.table_name}" ALTER COLUMN "{expires_column}" TYPE TIMESTAMP(3) '
                'USING "' + expires_column + "\" AT TIME ZONE 'UTC', and drop @db.Timestamptz"
            )
        if expires_column != self.table.c.expiresAt.name:
            self.table = session_table(self.table_name, expires_column=expires_column)
            sql = for_database(self.engine.dialect.name, self.table, prune_batch_size=self._prune_batch_size)
            self._db.use(sql)
        self.table_checked = True

    def _expiry_column(self, columns: list[str]) -> str:
        """The expiry column among the table's `columns`; ConfigurationError if a column is missing."""
        where = f'the session table "{self.table_name}" (columns: {", ".join(columns)})'
        missing = [name for name in ROW_COLUMNS if name not in columns]
        if missing:
            raise ConfigurationError(
                f"{where} lacks {', '.join(missing)}: it is not prisma-session-store's Session model"
            )
        if self._expires_column is not None:
            if self._expires_column not in columns:
                raise ConfigurationError(f'{where} has no column "{self._expires_column}" (expires_column)')
            return self._expires_column
        found = [name for name in (EXPIRES_AT, EXPIRES) if name in columns]
        if len(found) != 1:
            has = "has both" if found else "has neither"
            raise ConfigurationError(
                f'{where} {has} "{EXPIRES_AT}" (prisma-session-store 3.x) and "{EXPIRES}" (2.x): name the '
                'expiry column with PrismaSessionStore(..., expires_column="...")'
            )
        return found[0]

    # -- the row API the middleware uses -------------------------------------------------------------

    @_on_the_table
    async def load(self, sid: str, *, now: datetime | None = None) -> StoredSession | None:
        """One indexed SELECT: the live session `sid` with its expiry, or None. `now` is the caller's
        clock reading, if it has one.

        An expired row is deleted (and disposed); with `stale` its data is returned that one last time.
        """
        row = await self._db.fetch_row("load", {"session_id": sid})
        if row is None:
            return None
        text, expires_at = row[0], row[1]
        data = self.rows.parse(sid, text)
        if data is None:
            return None
        if not isinstance(expires_at, datetime):
            # An expiresAt no reader can place in time: on SQLite neither a number nor a date (None), on
            # MySQL a zero date such as '0000-00-00' (text from the driver). Kept, as a corrupt row is.
            self._log(
                logging.ERROR, "session %s has an unreadable expiresAt; treating it as absent", redact(sid)
            )
            return None
        if expires_at <= (now or utcnow()):
            await self.destroy(sid)  # disposes it too, when there is a dispose
            return StoredSession(data, expires_at, text) if self._stale else None
        return StoredSession(data, expires_at, text)

    @_on_the_table
    async def create(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        """Insert a new session expiring at `expires_at` (default: as its cookie says). Never overwrites."""
        expires = self._expiry(sid, session, expires_at)
        await self._db.write("insert", self.rows.new_row(sid, session, expires))

    @_on_the_table
    async def update(
        self,
        sid: str,
        session: Mapping[str, Any],
        *,
        changed: Iterable[str] | None = None,
        removed: Iterable[str] = (),
        expected: str | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """Write back an existing session. A row deleted meanwhile (logout, prune) is not brought back.

        With `changed` (the keys set since the session was loaded) and `removed` (the keys deleted), and
        the default JSON serializer, no other request's changes are lost. If the row still holds
        `expected` (the text that was loaded), it is rewritten whole in one statement; otherwise another
        request changed it meanwhile, and only these keys and the cookie are applied to what is stored
        now, every other value kept exactly as it is. Without `changed`, the whole row is replaced.
        Returns whether the row still existed.
        """
        expires = self._expiry(sid, session, expires_at)
        params = self.rows.params(sid, session, expires)
        if changed is None or not self.rows.is_json:
            return await self._db.write("update", params) > 0
        return await self._merger.write_back(params, session, changed, removed, expected)

    @_on_the_table
    async def rename(self, sid: str, new_sid: str) -> bool:
        """Move the live session `sid` to `new_sid` in one statement, its data untouched (`regenerate`
        with `keep_data`). Returns False, and creates nothing, when the row is already gone: a logout
        that came first stays a logout."""
        check_sid(new_sid, self.rows.longest_key)
        params = {"session_id": sid, "new_sid": new_sid, "record_id": self.rows.renamed_id(new_sid)}
        async with self._db.one_writer(sid):
            return await self._db.write("rename", {**params, "now": utcnow()}) > 0

    # -- internals -----------------------------------------------------------------------------------

    def _expiry(self, sid: str, session: Mapping[str, Any], expires_at: datetime | None) -> datetime:
        """`expires_at` as the naive UTC the columns hold, or what the session's cookie says."""
        return naive_utc(expires_at) if expires_at else self.rows.expiry_from_cookie(sid, session)

    async def _delete(
        self,
        plain: Executable,
        returning: Executable,
        params: dict[str, Any],
        conn: AsyncConnection | None = None,
    ) -> int:
        """Run a DELETE; with a `dispose`, its `returning` form, so that each deleted session is disposed."""
        if self._dispose is None:
            result = await self._db.execute(plain, params, conn)
            return int(result.rowcount)  # type: ignore[attr-defined]
        rows = await self._db.deleted_rows(returning, params, conn)
        for sid, text in rows:
            data = self.rows.parse(sid, text)
            if data is not None:
                await self._call_dispose(sid, data)
        return len(rows)

    async def _call_dispose(self, sid: str, data: SessionData) -> None:
        outcome = self._dispose(sid, data) if self._dispose is not None else None
        if inspect.isawaitable(outcome):
            await outcome
