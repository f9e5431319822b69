"""MySQL and MariaDB through asyncmy: connecting, the timeouts the server keeps, ending a statement cut
off on the client, and what the server's error numbers mean."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..driver import SERVER_TIMEOUT_SHARE, Fault
from ..driver import Driver as BaseDriver
from .connection import REFUSED, MySQLConnection
from .connection import connect_kwargs as asyncmy_connect_kwargs
from .hosts import DEFAULT_PORT, Hosts, host_list

if TYPE_CHECKING:
    from ...connections import Connection
    from ...dburl import DatabaseURL as URL

# The server's error numbers. Unavailable: too many connections, server shutdown, lock wait timeout, a
# statement over its time (MariaDB's max_statement_time, MySQL's max_execution_time), one ended by KILL,
# and the client's lost or refused connections (2000-2099). A lock wait timeout is not run again: it
# came after most of the deadline (`setup`), and the same lock would be waited for.
UNAVAILABLE = frozenset({1040, 1053, 1205, 1317, 1969, 3024, *range(2000, 2100)})
# A Galera node that cannot serve: outside the primary component, or not synced yet (ER_UNKNOWN_COM_ERROR,
# "WSREP has not yet prepared node for application use"), and an error during COMMIT (the cluster went
# away under it). Nothing was applied; the connection is dropped and the next one opened to another of the
# URL's hosts.
NOT_SERVING = frozenset({1047, 1180})
# The server's network errors (a packet over max_allowed_packet, 1153, among them): it closes the
# connection after sending one, though the number is below the client's own (2000 and up).
NETWORK_ERRORS = frozenset(range(1153, 1162))
# A deadlock, or a Galera certification failure: the transaction was rolled back whole.
DEADLOCK = 1213
NO_SUCH_TABLE = 1146
# Access denied (a wrong password, 1045; no rights on the database, 1044; no such user, 1698; not from
# this host, 1130), no such database (1049), an authentication method the client lacks (1251, 2059).
LOGIN_REFUSED = frozenset({1044, 1045, 1049, 1130, 1251, 1698, 2059})
DUPLICATE_KEY = 1062
# ER_BAD_FIELD_ERROR: no such column (the user key's, when its migration has not run).
UNKNOWN_COLUMN = 1054
# A value the server refuses: not text the column's character set holds (1366), too long (1406), not
# a date it can hold (1292).
BAD_DATA = frozenset({1292, 1366, 1406})
# ER_SUBQUERY_NO_1_ROW: what the upsert raises rather than overwrite a session whose sid differs in case.
SUBQUERY_ROWS = 1242


def errno(error: BaseException) -> int | None:
    """The server's (or the client's) error number of an asyncmy error, else None."""
    args = error.args
    if type(error).__module__.partition(".")[0] == "asyncmy" and args and isinstance(args[0], int):
        return args[0]
    cause = error.__cause__
    return errno(cause) if isinstance(error, ConnectionResetError) and cause is not None else None


def connect_defaults(deadline: float) -> dict[str, Any]:
    """What the store's asyncmy connections are opened with, unless the URL or `connect_args` say
    otherwise: a connect timeout and utf8mb4."""
    return {"connect_timeout": deadline, "charset": "utf8mb4"}


class Driver(BaseDriver):
    name = "mysql"
    default_port = DEFAULT_PORT
    begin = ("START TRANSACTION",)

    def __init__(self) -> None:
        self._kill_kwargs: dict[str, Any] = {}
        #: the URL's hosts, when it names several (hosts.py)
        self.hosts: Hosts | None = None

    async def connect(self, **kwargs: Any) -> Connection:
        self._kill_kwargs = kwargs
        connection: Connection
        if self.hosts is None:
            connection = await MySQLConnection.connect(**kwargs)
        else:
            connection = await self.hosts.connect(MySQLConnection.connect, kwargs)
        return connection

    def connect_kwargs(
        self,
        url: URL,
        deadline: float,
        *,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        defaults = connect_defaults(deadline)
        if "charset" in url.query:
            del defaults["charset"]
        kwargs = asyncmy_connect_kwargs(url, defaults, connect_args or {})
        hosts = host_list(kwargs)
        if hosts is not None:
            self.hosts = Hosts(hosts, float(kwargs["connect_timeout"]))
            kwargs.pop("host")
            kwargs.pop("port", None)
        return kwargs

    def setup(self, deadline: float, *, pgbouncer: bool = False) -> tuple[str, ...]:
        """Run after the caller's own `init_command`, if any, so that it cannot undo them:

        - every statement and transaction reads what is committed, and locks only the rows it finds:
          under InnoDB's default (REPEATABLE READ) a write waiting for one user's locked row also locks
          the gap before it, and other users' sessions inserted there wait too;
        - the server ends a statement, or a wait for a row lock, before the deadline. InnoDB counts its
          lock wait in whole seconds (50 by default); MariaDB's max_statement_time, in the MariaDB-only
          comment MySQL skips, ends any statement on time. MySQL 8 has no such limit for writes: there a
          statement cut off is ended by KILL QUERY (`settle`)."""
        lock_wait = max(1, int(deadline * SERVER_TIMEOUT_SHARE))
        statement_time = round(deadline * SERVER_TIMEOUT_SHARE, 3)
        return (
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            f"SET SESSION innodb_lock_wait_timeout = {lock_wait}"
            f" /*M!, SESSION max_statement_time = {statement_time} */",
        )

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, REFUSED)

    def ended(self, error: BaseException, connection: Connection) -> bool:
        number = errno(error)
        if number in NOT_SERVING:
            if self.hosts is not None and isinstance(connection, MySQLConnection):
                self.hosts.passed_over(str(connection.host), int(connection.port or 0))
            return True
        return number in NETWORK_ERRORS

    async def settle(self, connection: Connection, grace: float) -> bool:
        """KILL QUERY, from a connection of its own: a client that merely closes its socket leaves the
        server running the statement, which then applies a write when the lock it waits for goes."""
        if not isinstance(connection, MySQLConnection):
            return False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace):
                where = {"host": connection.host, "port": connection.port} if connection.host else {}
                killer = await MySQLConnection.connect(**{**self._kill_kwargs, **where})
                try:
                    await killer.execute(f"KILL QUERY {connection.thread_id}")
                finally:
                    killer.terminate()
        return False  # its protocol state is unknown: closed, never used again

    def classify(self, error: BaseException) -> Fault | None:
        number = errno(error)
        if number == NO_SUCH_TABLE:
            return Fault.MISSING_TABLE
        if number in LOGIN_REFUSED:
            return Fault.LOGIN_REFUSED
        if number == DEADLOCK:
            return Fault.CONFLICT
        if number == UNKNOWN_COLUMN:
            return Fault.MISSING_INDEX
        if number == DUPLICATE_KEY:
            return Fault.DUPLICATE
        if number == SUBQUERY_ROWS:
            return Fault.SID_CLASH
        if number in BAD_DATA or isinstance(error, UnicodeError):
            return Fault.BAD_DATA
        if (
            number in UNAVAILABLE
            or number in NOT_SERVING
            or number in NETWORK_ERRORS
            or isinstance(error, (OSError, TimeoutError))
        ):
            return Fault.UNAVAILABLE
        return None

    async def describe(self, connection: Connection, table: str) -> Sequence[tuple[str, Any]]:
        return await cast("MySQLConnection", connection).describe(self.describing(table))
