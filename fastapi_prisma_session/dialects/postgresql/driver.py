"""PostgreSQL through asyncpg: connecting (directly or behind a transaction pooler), the timeouts the
server keeps, and what its SQLSTATEs mean."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from ...exceptions import StoreSetupError
from ..driver import SERVER_TIMEOUT_SHARE, Fault, sqlalchemy_connect_args
from ..driver import Driver as BaseDriver
from .hosts import DEFAULT_PORT, HostList

if TYPE_CHECKING:
    from ...connections import Connection
    from ...dburl import DatabaseURL as URL

# What asyncpg reports as a PostgresError although the connection is gone: lost, not refused.
ENDED = (
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
# SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutdown, restart, and a
# statement_timeout), and 55P03 (lock_timeout): the database cannot serve the request now.
UNAVAILABLE_CLASSES = ("08", "57")
# 25006: a write on a server that takes none, a standby (or a primary demoted after a failover). Its
# connection is dropped, so that the next one is opened on whichever host is the primary now.
READ_ONLY_TRANSACTION = "25006"
LOCK_NOT_AVAILABLE = "55P03"
# 40001 serialization failure, 40P01 deadlock: the transaction was rolled back whole.
CONFLICTS = ("40001", "40P01")
UNDEFINED_TABLE = "42P01"
# Class 28 (invalid authorization: no such role, a wrong password) and 3D000 (no such database).
LOGIN_CLASS, NO_SUCH_DATABASE = "28", "3D000"
UNDEFINED_FUNCTION = "42883"
UNIQUE_VIOLATION = "23505"
# Refusing to read text as jsonb: invalid JSON (22P02), a \u0000 it cannot hold (22P05).
UNREADABLE_AS_JSONB = ("22P02", "22P05")
# Class 22: a value the database refuses (too long, a NUL in text, a date out of range).
DATA_EXCEPTION = "22"
# asyncpg's own connect timeout, where none is given.
CONNECT_TIMEOUT = 60.0
# PostgreSQL's type oid of TIMESTAMP WITH TIME ZONE.
TIMESTAMPTZ_OID = 1184


# Query parameters SQLAlchemy's asyncpg dialect reads itself (several hosts, a number): left to it.
READ_BY_SQLALCHEMY = ("host", "port", "prepared_statement_cache_size")


def connect_params(url: URL) -> dict[str, Any]:
    """asyncpg.connect's arguments from `url`, as SQLAlchemy's asyncpg dialect makes them."""
    if any(name in url.query for name in READ_BY_SQLALCHEMY):
        return sqlalchemy_connect_args(url)[1]
    params = url.translate_connect_args(username="user")
    params.update(url.query)
    return params


class Driver(BaseDriver):
    name = "postgresql"
    default_port = DEFAULT_PORT
    lost = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)

    def __init__(self) -> None:
        self._host_lists: dict[tuple[tuple[str, int], ...], HostList] = {}

    async def connect(self, **kwargs: Any) -> Connection:
        """One connection; with several hosts, to the first that serves (hosts.HostList), each host within
        a share of the connect timeout. With `prefer-standby`, which takes a standby over the primary,
        asyncpg's own order is kept."""
        hosts, ports = kwargs.get("host"), kwargs.get("port")
        attrs = kwargs.get("target_session_attrs") or os.environ.get("PGTARGETSESSIONATTRS")
        if not (isinstance(hosts, list) and isinstance(ports, list) and len(hosts) > 1) or (
            attrs == "prefer-standby"
        ):
            connection: Connection = await asyncpg.connect(**kwargs)
            return connection
        listed = HostList(hosts, ports)
        hosts_of = self._host_lists.setdefault(tuple(listed.hosts), listed)
        rest = {key: value for key, value in kwargs.items() if key not in ("host", "port", "timeout")}
        timeout = kwargs.get("timeout") or CONNECT_TIMEOUT
        return await hosts_of.connect(asyncpg.connect, rest, timeout, _telling)

    def connect_kwargs(
        self,
        url: URL,
        deadline: float,
        *,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Behind a transaction pooler (`pgbouncer`) asyncpg's statement cache is off, so that each
        statement is parsed, bound and run in one message batch, which the pooler hands to one server
        connection (see `engines.pooler_connect_args`)."""
        params = connect_params(url)
        accepted = inspect.signature(asyncpg.connect).parameters
        # The URL's parameters, then the caller's connect_args (ssl, server_settings), as SQLAlchemy's
        # engine connects; the deadline bounds every statement, so no command_timeout.
        given = {**params, **(connect_args or {})}
        kwargs = {key: value for key, value in given.items() if key in accepted and key != "command_timeout"}
        kwargs["timeout"] = deadline
        if pgbouncer:
            kwargs["statement_cache_size"] = 0
        return kwargs

    def setup(self, deadline: float, *, pgbouncer: bool = False) -> tuple[str, ...]:
        """The server itself gives up on a statement, or on a row lock, a little before the deadline: a
        write stuck behind another transaction's lock then fails there, cleanly, rather than being cut
        off from here while the lock may just be going.

        Said in SQL, not as startup parameters: PgBouncer (in any mode) closes the connection of a client
        that sends a startup parameter other than the five it tracks. Behind a transaction pooler nothing
        is said: a SET would stay on a server connection that other clients are handed next. There
        the deadline alone ends a statement: asyncpg cancels it, and PgBouncer forwards the cancel
        request to the server connection running it."""
        if pgbouncer:
            return ()
        server_timeout = f"{int(deadline * 1000 * SERVER_TIMEOUT_SHARE)}ms"
        return (f"SET lock_timeout = '{server_timeout}'; SET statement_timeout = '{server_timeout}'",)

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, asyncpg.PostgresError)

    def ended(self, error: BaseException, connection: Connection) -> bool:
        return isinstance(error, ENDED) or getattr(error, "sqlstate", None) == READ_ONLY_TRANSACTION

    async def settle(self, connection: Connection, grace: float) -> bool:
        # asyncpg has sent the server a cancel request; a new statement waits until it is answered.
        async with asyncio.timeout(grace):
            await connection.execute("SELECT 1")
        return True

    def classify(self, error: BaseException) -> Fault | None:
        code = str(getattr(error, "sqlstate", None) or "")
        if code == UNDEFINED_TABLE:
            return Fault.MISSING_TABLE
        if code[:2] == LOGIN_CLASS or code == NO_SUCH_DATABASE:
            return Fault.LOGIN_REFUSED
        if code in CONFLICTS:
            return Fault.CONFLICT
        if code == UNDEFINED_FUNCTION:
            return Fault.MISSING_INDEX
        if code == UNIQUE_VIOLATION:
            return Fault.DUPLICATE
        if code in UNREADABLE_AS_JSONB:
            return Fault.UNREADABLE
        if code[:2] == DATA_EXCEPTION or isinstance(error, UnicodeError):
            return Fault.BAD_DATA
        if (
            isinstance(error, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError))
            or code[:2] in UNAVAILABLE_CLASSES
            or code in (LOCK_NOT_AVAILABLE, READ_ONLY_TRANSACTION)
        ):
            return Fault.UNAVAILABLE
        return None

    def describing(self, table: str) -> str:
        # The table as the search_path finds it; ::regclass fails with UNDEFINED_TABLE when there is none.
        # A catalog query rather than a prepared statement's description: behind a transaction pooler a
        # named prepared statement could be looked for on another server connection.
        return (
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )

    async def describe(self, connection: Connection, table: str) -> Sequence[tuple[str, Any]]:
        rows = await connection.fetch(self.describing(table), table)
        return [(str(name), int(oid)) for name, oid in rows]

    def check_columns(self, table_name: str, columns: Mapping[str, Any], expires_column: str) -> None:
        if columns.get(expires_column) == TIMESTAMPTZ_OID:
            # asyncpg reads aware datetimes from it, and writes a naive one as the host's local time.
            raise StoreSetupError(
                f'the session table "{table_name}" has "{expires_column}" as TIMESTAMPTZ '
                "(@db.Timestamptz); the store reads and writes Prisma's default DateTime, TIMESTAMP(3): "
                f'ALTER TABLE "{table_name}" ALTER COLUMN "{expires_column}" TYPE TIMESTAMP(3) '
                'USING "' + expires_column + "\" AT TIME ZONE 'UTC', and drop @db.Timestamptz"
            )


def _telling(errors: list[BaseException]) -> BaseException:
    """Of the errors of every host of a list, the one to raise: a server's refusal (a wrong password, no
    such database) says more than a host that was down; otherwise the last."""
    refusals = [error for error in errors if isinstance(error, asyncpg.PostgresError)]
    return (refusals or errors)[-1]
