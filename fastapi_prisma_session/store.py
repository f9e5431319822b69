"""`PrismaSessionStore`: sessions in a SQL table, with the API of prisma-session-store."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import asyncpg
from cuid2 import create_id
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .connections import LeasedConnections
from .cookies import is_valid_session_id, parse_iso_utc
from .durations import Duration, to_seconds
from .exceptions import (
    ConfigurationError,
    SessionError,
    SessionTooLargeError,
    StoreUnavailableError,
    TableMissingError,
)
from .logs import package_logger, redact
from .models import DEFAULT_TABLE_NAME, session_table
from .pruning import PruneLoop
from .serializers import JSONSerializer, resolve_serializer
from .sql import NativeStatement, SessionQueries

if TYPE_CHECKING:
    from sqlalchemy import Executable, Result

ONE_DAY = 24 * 3600.0
# express-session keeps the cookie's settings in the session object under this key.
COOKIE_KEY = "cookie"
UPSERT_ATTEMPTS = 3
UNDEFINED_TABLE = "42P01"
# SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutdown, restart).
CONNECTION_SQLSTATE_CLASSES = ("08", "57")
POOL_SIZE = 10
# Batches of 200 with 10 ms between them remove ~16,000 rows a second and keep the read p99 of a busy
# app within 1.5x of its usual (BENCHMARKS.md, "Prune at scale"); pause 0 prunes at full speed.
PRUNE_BATCH_SIZE = 200
PRUNE_PAUSE = 0.01
ADMIN_CONNECTIONS = 2
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
POOL_TIMEOUT = 10.0
INVALID_TEXT_REPRESENTATION = "22P02"  # PostgreSQL: the text is not valid JSON

SessionData = dict[str, Any]
TTLFunction = Callable[[Mapping[str, Any], Mapping[str, Any], str], float | timedelta]
DisposeFunction = Callable[[str, SessionData], Awaitable[None] | None]
LevelName = str | int

_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "log": logging.INFO,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def utcnow() -> datetime:
    """Now as a naive UTC datetime, the way Prisma stores `DateTime` on PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


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
        engine_or_url: an `AsyncEngine` (the caller keeps owning it) or a database URL (the store creates
            the engine and disposes it in `shutdown()`).
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
        prune_batch_size: rows deleted per statement by `prune()`.
        prune_pause: seconds `prune()` rests between batches, to leave the database to requests.
        max_data_size: the largest serialized session, in bytes, that a write accepts; a larger one
            raises `SessionTooLargeError` and the stored session stays as it was. Default: no limit.
        engine_options: keyword arguments for `create_async_engine` when a URL is given.
        request_connections: on asyncpg, how many of the engine's pooled connections the request path
            keeps leased. Default: 10 of the store's own engine, or half the pool of a caller's engine.
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
        prune_batch_size: int = PRUNE_BATCH_SIZE,
        prune_pause: Duration = PRUNE_PAUSE,
        max_data_size: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
        request_connections: int | None = None,
    ) -> None:
        self.options: Mapping[str, Any] = MappingProxyType(
            {
                "check_period": check_period,
                "ttl": ttl,
                "db_record_id_is_session_id": db_record_id_is_session_id,
                "db_record_id_function": db_record_id_function,
                "serializer": serializer,
                "dispose": dispose,
                "stale": stale,
                "no_dispose_on_set": no_dispose_on_set,
                "logger": logger,
                "logger_level": logger_level,
                "table_name": table_name,
                "prune_batch_size": prune_batch_size,
                "prune_pause": prune_pause,
                "max_data_size": max_data_size,
                "request_connections": request_connections,
            }
        )
        if callable(ttl) and not isinstance(ttl, (int, float, timedelta)):
            self._ttl_function: TTLFunction | None = ttl
            self._ttl: float | None = None
        else:
            self._ttl_function = None
            self._ttl = to_seconds(ttl, "ttl", allow_zero=False)
        if db_record_id_function is not None and not callable(db_record_id_function):
            raise ConfigurationError("db_record_id_function must be a callable taking the session id")
        if dispose is not None and not callable(dispose):
            raise ConfigurationError("dispose must be a callable taking (sid, session)")
        if not isinstance(table_name, str) or not table_name:
            raise ConfigurationError("table_name must be a non-empty string")
        if not isinstance(prune_batch_size, int) or prune_batch_size < 1:
            raise ConfigurationError("prune_batch_size must be a positive whole number")
        self._record_id_is_sid = db_record_id_is_session_id
        self._record_id_function = db_record_id_function
        self._serializer = resolve_serializer(serializer)
        # Only JSON text can be merged in SQL: touch() and a write that lost a race patch keys in place.
        self._data_is_json = isinstance(self._serializer, JSONSerializer)
        self._dispose = dispose
        self._dispose_on_set = dispose is not None and not no_dispose_on_set
        self._stale = stale
        self._prune_batch_size = prune_batch_size
        self._prune_pause = to_seconds(prune_pause, "prune_pause") or 0.0
        if max_data_size is not None and (not isinstance(max_data_size, int) or max_data_size < 1):
            raise ConfigurationError("max_data_size must be a positive number of bytes, or None for no limit")
        self._max_data_size = max_data_size
        self._logger, self._levels = _resolve_logging(logger, logger_level)
        self.table_name = table_name
        self._prune_lock_key = _advisory_lock_key(f"fastapi_prisma_session prune {table_name}")
        #: True when the last prune() found another process pruning and did nothing.
        self.last_prune_skipped = False

        if isinstance(engine_or_url, AsyncEngine):
            self._owns_engine = False
            engine = engine_or_url
        elif isinstance(engine_or_url, str):
            self._owns_engine = True
            engine = create_async_engine(engine_or_url, **_engine_options(engine_or_url, engine_options))
        else:
            raise ConfigurationError(
                "PrismaSessionStore needs an AsyncEngine or a URL such as "
                "'postgresql+asyncpg://user@host/db' or 'sqlite+aiosqlite:///sessions.db'"
            )
        self.engine = engine
        # Single statements on an autocommit connection: no BEGIN/COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table = session_table(table_name)
        self._sql = SessionQueries(self.table, engine.dialect.name, prune_batch_size=prune_batch_size)
        self._leased: LeasedConnections | None = None
        if engine.dialect.driver == "asyncpg":
            self._sql.compile_native(engine.dialect)
            self._leased = LeasedConnections(engine, _lease_size(engine, request_connections))

        period = to_seconds(check_period, "check_period")
        self._prune_loop = PruneLoop(self.prune, period, self._log) if period else None

    # -- express-session store API -------------------------------------------------------------------

    async def get(self, sid: str) -> SessionData | None:
        """The session stored under `sid`, or None when there is none, it has expired or cannot be read."""
        stored = await self.load(sid)
        return None if stored is None else stored.data

    async def set(self, sid: str, session: Mapping[str, Any]) -> None:
        """Create or replace the session `sid`, in one atomic upsert."""
        params = self._row_params(sid, session)
        previous = await self.load(sid) if self._dispose_on_set else None
        await self._upsert(params)
        if previous is not None:
            await self._call_dispose(sid, previous.data)

    async def destroy(self, sid: str | Sequence[str]) -> None:
        """Delete one session, or a list of them in one statement. Missing sessions are ignored."""
        sids = [sid] if isinstance(sid, str) else list(sid)
        if sids:
            await self._delete({"sids": sids}, self._sql.delete, self._sql.delete_returning)

    async def touch(self, sid: str, session: Mapping[str, Any]) -> bool:
        """Move the expiry of an existing session (and its stored cookie) without rewriting user data.

        A missing session is not recreated. Returns whether a row was touched.
        """
        expires = self.expires_at(sid, session)
        cookie = session.get(COOKIE_KEY)
        if self._data_is_json and isinstance(cookie, Mapping):
            patch = self._serializer.dumps({COOKIE_KEY: dict(cookie)})
            return await self._write("merge", self._sql.merge_params(sid, patch, [], expires)) > 0
        return await self._write("touch", {"session_id": sid, "expires": expires}) > 0

    async def destroy_all(self, **match: Any) -> int:
        """End every session whose data holds all the given key/value pairs: "log out everywhere".

        `await store.destroy_all(user_id=42)` deletes them in one statement and returns how many went.
        A row that cannot be read never matches and never fails the call.
        """
        _check_match(match, "destroy_all", "clear() deletes everything")
        if self._data_is_json:
            statement, params = self._sql.delete_matching(match, self._serializer.dumps)
            try:
                return await self._delete(params, statement, statement.returning(*self._sql.returned))
            except DBAPIError as error:
                self._unless_invalid_json(error)
        sids = [sid for sid, _ in await self._match_in_python(match, live_only=False)]
        if sids:
            await self.destroy(sids)
        return len(sids)

    async def matching(self, **match: Any) -> dict[str, StoredSession]:
        """Every live session whose data holds all the given key/value pairs, by sid, in one SELECT.

        `await store.matching(user_id=42)` lists a user's sessions (devices), for example to show them
        or to end all but the current one. A row that cannot be read never matches.
        """
        _check_match(match, "matching", "all() lists every session")
        if self._data_is_json:
            statement, params = self._sql.select_matching(match, self._serializer.dumps)
            try:
                result = await self._execute(statement, {**params, "now": utcnow()})
            except DBAPIError as error:
                self._unless_invalid_json(error)
            else:
                found = {}
                for sid, text, expires_at in result.all():
                    data = self._parse(sid, text)
                    if data is not None:
                        found[sid] = StoredSession(data, expires_at)
                return found
        return dict(await self._match_in_python(match, live_only=True))

    def _unless_invalid_json(self, error: DBAPIError) -> None:
        """Re-raise `error` unless it is PostgreSQL refusing to cast a corrupt row to jsonb."""
        if getattr(error.orig, "sqlstate", None) != INVALID_TEXT_REPRESENTATION:
            raise error
        # One corrupt row fails the whole statement there: the caller matches in Python instead.
        self._log(logging.WARNING, "a %s row holds invalid JSON; matching in Python", self.table_name)

    async def _match_in_python(
        self, match: dict[str, Any], *, live_only: bool
    ) -> list[tuple[str, StoredSession]]:
        if self._data_is_json:
            pattern = "%" + _like_escape(self._serializer.dumps(next(iter(match)))) + "%"
            result = await self._execute(self._sql.rows_with_keys_like, {"pattern": pattern})
        else:
            result = await self._execute(self._sql.all_rows, {})
        now = utcnow()
        found = []
        for sid, text, expires_at in result.all():
            if live_only and expires_at <= now:
                continue
            data = self._parse(sid, text)
            if data is not None and all(key in data and data[key] == value for key, value in match.items()):
                found.append((sid, StoredSession(data, expires_at)))
        return found

    async def all(self) -> dict[str, SessionData]:
        """Every live session by sid. A row that cannot be read is logged and left out."""
        result = await self._execute(self._sql.live_rows, {"now": utcnow()})
        sessions: dict[str, SessionData] = {}
        for sid, data in result.all():
            parsed = self._parse(sid, data)
            if parsed is not None:
                sessions[sid] = parsed
        return sessions

    async def ids(self) -> list[str]:
        """The sids of every live session."""
        result = await self._execute(self._sql.live_ids, {"now": utcnow()})
        return list(result.scalars().all())

    async def length(self) -> int:
        """How many live sessions there are (a COUNT, not a fetch)."""
        result = await self._execute(self._sql.live_count, {"now": utcnow()})
        return int(result.scalar_one())

    async def clear(self) -> None:
        """Delete every session."""
        await self._delete({}, self._sql.clear, self._sql.clear_returning)

    async def prune(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Delete expired sessions in bounded batches through the `expiresAt` index.

        On PostgreSQL one process prunes at a time: a run that finds another holding the advisory lock
        does nothing and returns 0. `progress(total_so_far)` is called after each batch. Returns how
        many rows went.
        """
        started = time.monotonic()
        async with self._autocommit.connect() as conn:
            if self._sql.prune_lock is not None:
                locked = await self._execute(self._sql.prune_lock, {"key": self._prune_lock_key}, conn)
                self.last_prune_skipped = not locked.scalar()
                if self.last_prune_skipped:
                    self._log(
                        logging.INFO, "another process is pruning %s; this run skipped", self.table_name
                    )
                    return 0
            try:
                total = await self._prune_batches(conn, progress)
            finally:
                if self._sql.prune_unlock is not None:
                    await self._execute(self._sql.prune_unlock, {"key": self._prune_lock_key}, conn)
        elapsed = time.monotonic() - started
        self._log(
            logging.INFO, "pruned %d expired sessions from %s in %.2f s", total, self.table_name, elapsed
        )
        return total

    async def _prune_batches(self, conn: AsyncConnection, progress: Callable[[int], None] | None) -> int:
        params = {"now": utcnow()}
        total = 0
        while True:
            removed = await self._delete(params, self._sql.prune_batch, self._sql.prune_batch_returning, conn)
            total += removed
            if progress is not None:
                progress(total)
            if removed < self._prune_batch_size:
                return total
            if self._prune_pause:
                await asyncio.sleep(self._prune_pause)

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
        if self._leased is not None:
            await self._leased.close()
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Self:
        self.start_interval()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    async def create_table(self) -> None:
        """Create the table if it is missing. For demos and tests; production uses `alembic upgrade head`."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self.table.create, checkfirst=True)

    # -- what the middleware uses -------------------------------------------------------------------

    async def load(self, sid: str) -> StoredSession | None:
        """One indexed SELECT: the live session `sid` with its expiry, or None.

        An expired row is deleted (and disposed); with `stale` its data is returned that one last time.
        """
        row = await self._fetch_row("load", {"session_id": sid})
        if row is None:
            return None
        data = self._parse(sid, row[0])
        if data is None:
            return None
        expires_at: datetime = row[1]
        if expires_at <= utcnow():
            await self.destroy(sid)  # disposes it too, when there is a dispose
            return StoredSession(data, expires_at, row[0]) if self._stale else None
        return StoredSession(data, expires_at, row[0])

    async def create(self, sid: str, session: Mapping[str, Any]) -> None:
        """Insert a new session. Unlike `set`, never overwrites one."""
        await self._write("insert", self._row_params(sid, session))

    async def update(
        self,
        sid: str,
        session: Mapping[str, Any],
        *,
        changed: Iterable[str] | None = None,
        removed: Iterable[str] = (),
        expected: str | None = None,
    ) -> bool:
        """Write back an existing session. A row deleted meanwhile (logout, prune) is not brought back.

        With `changed` (the keys set since the session was loaded) and `removed` (the keys deleted), and
        the default JSON serializer, no other request's changes are lost. If the row still holds
        `expected` (the text that was loaded), it is rewritten whole; otherwise, another request changed
        it meanwhile, and only these keys and the cookie are merged into it, in one statement. Without
        `changed`, the whole row is replaced. Returns whether the row still existed.
        """
        if changed is None or not self._data_is_json:
            return await self._write("update", self._row_params(sid, session, with_id=False)) > 0
        params = self._row_params(sid, session, with_id=False)  # also refuses an oversized session
        if expected is not None and await self._write(
            "update_if_unchanged", {**params, "expected": expected}
        ):
            return True
        patch = {key: session[key] for key in changed if key in session}
        if COOKIE_KEY in session:
            patch[COOKIE_KEY] = session[COOKIE_KEY]
        merge = self._sql.merge_params(sid, self._serializer.dumps(patch), list(removed), params["expires"])
        return await self._write("merge", merge) > 0

    def expires_at(self, sid: str, session: Mapping[str, Any]) -> datetime:
        """When the row for `session` should expire if written now."""
        return utcnow() + timedelta(seconds=self.lifetime(sid, session))

    def lifetime(self, sid: str, session: Mapping[str, Any]) -> float:
        """The row lifetime in seconds: `ttl`, else the cookie's remaining max age, else one day."""
        if self._ttl is not None:
            return self._ttl
        if self._ttl_function is not None:
            value = to_seconds(self._ttl_function(self.options, session, sid), "the ttl function's result")
            return value if value is not None else ONE_DAY
        cookie = session.get(COOKIE_KEY)
        if isinstance(cookie, Mapping):
            max_age_ms = _cookie_max_age_ms(cookie)
            if max_age_ms is not None:
                return max_age_ms / 1000
        return ONE_DAY

    # -- internals -----------------------------------------------------------------------------------

    def _row_params(self, sid: str, session: Mapping[str, Any], *, with_id: bool = True) -> dict[str, Any]:
        _check_session_id(sid)
        # Serialize first: a serializer that raises must leave the database untouched.
        payload = self._serialize(sid, session)
        params: dict[str, Any] = {
            "session_id": sid,
            "payload": payload,
            "expires": self.expires_at(sid, session),
        }
        if with_id:
            params["record_id"] = self._record_id(sid)
        return params

    def _serialize(self, sid: str, session: Mapping[str, Any]) -> str:
        """The `data` text for `session`, refused with SessionTooLargeError over `max_data_size`."""
        payload = self._serializer.dumps(dict(session))
        if self._max_data_size is not None:
            size = len(payload.encode())
            if size > self._max_data_size:
                raise SessionTooLargeError(sid, size, self._max_data_size)
        return payload

    def _record_id(self, sid: str) -> str:
        if self._record_id_is_sid:
            return sid
        if self._record_id_function is not None:
            return self._record_id_function(sid)
        return create_id()

    def _parse(self, sid: str, text: str) -> SessionData | None:
        if text == "":
            return {}
        try:
            data = self._serializer.loads(text)
        except Exception:
            self._log(logging.ERROR, "session %s has unreadable data; treating it as absent", redact(sid))
            return None
        if not isinstance(data, dict):
            self._log(logging.ERROR, "session %s does not hold an object; treating it as absent", redact(sid))
            return None
        return data

    async def _upsert(self, params: dict[str, Any]) -> None:
        # Two first writes of one sid can race past ON CONFLICT (sid) and collide on the primary key when
        # the id is derived from the sid. The loser retries once the winner's row is visible, and then
        # takes the update path.
        for attempt in range(UPSERT_ATTEMPTS):
            try:
                await self._execute(self._sql.upsert, params)
                return
            except IntegrityError:
                if attempt == UPSERT_ATTEMPTS - 1:
                    raise

    async def _delete(
        self,
        params: dict[str, Any],
        plain: Executable,
        returning: Executable,
        conn: AsyncConnection | None = None,
    ) -> int:
        if self._dispose is None:
            result = await self._execute(plain, params, conn)
            return int(result.rowcount)  # type: ignore[attr-defined]
        rows = (await self._execute(returning, params, conn)).all()
        for sid, text in rows:
            data = self._parse(sid, text)
            if data is not None:
                await self._call_dispose(sid, data)
        return len(rows)

    async def _call_dispose(self, sid: str, data: SessionData) -> None:
        outcome = self._dispose(sid, data) if self._dispose is not None else None
        if inspect.isawaitable(outcome):
            await outcome

    # The request path (load, insert, update, touch) runs on the raw asyncpg connection when there is
    # one: the statements are compiled once, asyncpg prepares and caches them, and SQLAlchemy's
    # per-execution work (about 90 µs a statement) is skipped. The pool stays SQLAlchemy's.

    async def _fetch_row(self, name: str, params: Mapping[str, Any]) -> Sequence[Any] | None:
        native = self._sql.native.get(name)
        if native is None or self._leased is None:
            return (await self._execute(getattr(self._sql, name), params)).first()
        try:
            row: Sequence[Any] | None = await self._run_native(self._leased, "fetchrow", native, params)
        except StoreUnavailableError:
            # The connection failed, not the query (a server restart, an idle timeout), and it was
            # discarded. A read is safe to repeat, so try once more on a fresh connection.
            row = await self._run_native(self._leased, "fetchrow", native, params)
        return row

    async def _write(self, name: str, params: Mapping[str, Any]) -> int:
        """Run one write statement; returns the number of rows it changed."""
        native = self._sql.native.get(name)
        if native is None or self._leased is None:
            result = await self._execute(getattr(self._sql, name), params)
            return int(result.rowcount)  # type: ignore[attr-defined]
        status: str = await self._run_native(self._leased, "execute", native, params)
        return int(status.rsplit(" ", 1)[-1])

    async def _run_native(
        self, leased: LeasedConnections, method: str, statement: NativeStatement, params: Mapping[str, Any]
    ) -> Any:
        try:
            return await leased.run(method, statement.sql, statement.args(params))
        except Exception as error:
            translated = _store_error(error, self.table_name)
            if translated is None:
                raise
            raise translated from error

    async def _execute(
        self, statement: Executable, params: Mapping[str, Any], conn: AsyncConnection | None = None
    ) -> Result[*tuple[Any, ...]]:
        try:
            if conn is not None:
                return await conn.execute(statement, params)
            async with self._autocommit.connect() as own:
                return await own.execute(statement, params)
        except Exception as error:
            translated = _store_error(error, self.table_name)
            if translated is None:
                raise
            raise translated from error

    def _log(self, level: int, message: str, *args: object) -> None:
        if self._logger is not None and level in self._levels:
            self._logger.log(level, message, *args)


def _cookie_max_age_ms(cookie: Mapping[str, Any]) -> float | None:
    """Remaining max age of an express-session cookie object in ms: from `expires`, else `originalMaxAge`."""
    expires = cookie.get("expires")
    when = parse_iso_utc(expires) if isinstance(expires, str) else None
    if when is not None:
        return max((when - utcnow()).total_seconds() * 1000, 0.0) or None
    original = cookie.get("originalMaxAge")
    if isinstance(original, (int, float)) and not isinstance(original, bool) and original > 0:
        return float(original)
    return None


def _check_match(match: dict[str, Any], method: str, instead: str) -> None:
    if not match:
        raise ValueError(f"{method}() needs at least one key=value to match; {instead}")


def _check_session_id(sid: str) -> None:
    if not isinstance(sid, str) or not is_valid_session_id(sid):
        raise ValueError(f"a session id must be 1 to 255 visible ASCII characters, got {sid!r:.80}")


def _advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lease_size(engine: AsyncEngine, requested: int | None) -> int:
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ConfigurationError("request_connections must be a positive whole number")
        return requested
    size = getattr(engine.pool, "size", None)
    if not callable(size):
        return POOL_SIZE
    pool_size = int(size())
    return POOL_SIZE if pool_size >= POOL_SIZE + ADMIN_CONNECTIONS else max(1, pool_size // 2)


def _engine_options(url: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(given or {})
    if make_url(url).get_backend_name() == "postgresql":
        # Statements hold a connection for one round trip. Waiting briefly for a pooled connection is far
        # cheaper than SQLAlchemy's default overflow, which opens and closes a connection per statement
        # once more than five are busy.
        # The request path leases POOL_SIZE of them; the rest serve prune, set and the other calls.
        options.setdefault("pool_size", POOL_SIZE + ADMIN_CONNECTIONS)
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", POOL_TIMEOUT)
        if make_url(url).get_driver_name() == "asyncpg":
            # Fail fast when the server is unreachable (asyncpg waits 60 s to connect) or stops answering
            # (it waits forever for a statement), rather than hang the request.
            options["connect_args"] = {
                "timeout": CONNECT_TIMEOUT,
                "command_timeout": COMMAND_TIMEOUT,
                **options.get("connect_args", {}),
            }
    return options


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _resolve_logging(
    logger: logging.Logger | bool | None, levels: LevelName | Sequence[LevelName]
) -> tuple[logging.Logger | None, frozenset[int]]:
    if logger is False:
        return None, frozenset()
    if logger is None or logger is True:
        resolved = package_logger
    elif isinstance(logger, logging.Logger):
        resolved = logger
    else:
        raise ConfigurationError("logger must be a logging.Logger, or False to silence the store")
    items: Iterable[LevelName] = [levels] if isinstance(levels, (str, int)) else levels
    numbers = set()
    for item in items:
        if isinstance(item, int):
            numbers.add(item)
        elif isinstance(item, str) and item.lower() in _LEVEL_NAMES:
            numbers.add(_LEVEL_NAMES[item.lower()])
        else:
            raise ConfigurationError(
                f"logger_level {item!r} is not a level; use {sorted(_LEVEL_NAMES)} or logging constants"
            )
    return resolved, frozenset(numbers)


def _store_error(error: Exception, table_name: str) -> SessionError | None:
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
