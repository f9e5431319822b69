"""MySQL/MariaDB connections: asyncmy connections that the store's pool (`connections.RequestPool`)
runs statements on, as it runs asyncpg's on PostgreSQL.

Through SQLAlchemy's pool a load took three round trips (a ping at check-out, the SELECT, and the
ROLLBACK SQLAlchemy sends when a connection closes, even in autocommit mode) and about 1 ms of CPU; here
it takes one. `MySQLConnection` gives an asyncmy connection the part of asyncpg's interface the pool uses.
A connection whose statement was cut off, or that lost its server, is never used again: its protocol
state is unknown. A lost server surfaces as `ConnectionResetError`, which the pool retries for a read
and the store reports as unavailable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.engine import URL, Dialect

# asyncmy's error numbers from 2000 up are the client's own (CR_*): a lost or refused connection.
CLIENT_ERRORS = 2000
# What the server refused: asyncmy's errors (the connection stays usable), once lost connections have
# been turned into ConnectionResetError.
REFUSED: tuple[type[BaseException], ...] = ()
try:  # asyncmy is the [mysql] extra
    from asyncmy.errors import MySQLError

    REFUSED = (MySQLError,)
except ImportError:  # pragma: no cover - without it no mysql+asyncmy engine exists
    pass


class MySQLConnection:
    """An asyncmy connection in autocommit mode, seen through asyncpg's `fetchrow`/`execute`."""

    def __init__(self, connection: Any, host: str | None = None, port: int | None = None) -> None:
        self._connection = connection
        self._broken = False
        #: the server it is connected to, as it was given (one of a URL's hosts)
        self.host, self.port = host, port

    @classmethod
    async def connect(cls, **kwargs: Any) -> MySQLConnection:
        import asyncmy

        try:
            connection = await asyncmy.connect(**kwargs)
        except MySQLError as error:  # refused (a wrong password: 1045) or not reached
            raise ConnectionResetError(f"could not connect to MySQL: {error}") from error
        return cls(connection, kwargs.get("host"), kwargs.get("port"))

    def is_closed(self) -> bool:
        # asyncmy's `connected` stays True after the server closed the socket (its wait_timeout on an
        # idle connection) until a statement fails on it; its stream says so at once, as asyncpg's
        # is_closed() does, so the pool opens another instead of sending a write to a dead one.
        broken = self._broken or getattr(self._connection, "_stream_broken", False)
        return bool(broken) or not self._connection.connected

    async def fetchrow(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = await self._run(sql, args, fetch=True)
        return row

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._run(sql, args, fetch=None)
        return rows

    async def describe(self, sql: str) -> list[tuple[str, Any]]:
        """The (name, type code) of the columns of the query `sql`, which is run (make it LIMIT 0)."""
        columns: list[tuple[str, Any]] = await self._run(sql, (), fetch=None, describe=True)
        return columns

    @property
    def thread_id(self) -> int:
        """The server's id of this connection (what KILL takes)."""
        return int(self._connection.server_thread_id[0])

    async def execute(self, sql: str, *args: Any) -> str:
        """Runs a write; returns its status as asyncpg does (`UPDATE 1`): the rows it matched, since
        the connection reports found rows rather than changed ones."""
        count: int = await self._run(sql, args, fetch=False)
        return f"{sql.split(None, 1)[0].upper()} {count}"

    def terminate(self) -> None:
        self._broken = True
        self._connection.close()

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's signature
        self._broken = True
        async with asyncio.timeout(timeout):
            await self._connection.ensure_closed()

    async def _run(self, sql: str, args: Sequence[Any], *, fetch: bool | None, describe: bool = False) -> Any:
        """One statement: with `fetch` its first row, with `fetch=None` all its rows (or with `describe`
        its columns), else the rows it matched."""
        if self._broken:
            raise ConnectionResetError("the MySQL connection was cut off mid-statement")
        try:
            async with self._connection.cursor() as cursor:
                await cursor.execute(sql, args)
                if describe:
                    return [(column[0], column[1]) for column in cursor.description or ()]
                if fetch is None:
                    return list(await cursor.fetchall())
                return await cursor.fetchone() if fetch else cursor.rowcount
        except MySQLError as error:
            if not isinstance(error.args[0], int) or error.args[0] < CLIENT_ERRORS:
                raise  # the server refused the statement: the connection is as it was
            self._broken = True
            raise _lost(error) from error
        except BaseException:  # cut off (a deadline), or the socket failed
            self._broken = True
            raise


def _lost(error: BaseException) -> ConnectionResetError:
    return ConnectionResetError(f"the MySQL connection was lost: {error}")


def connect_kwargs(
    dialect: Dialect, url: URL, defaults: Mapping[str, Any], connect_args: Mapping[str, Any]
) -> dict[str, Any]:
    """`asyncmy.connect` keyword arguments for the store's connections to the database of `url`:
    `defaults` under what the engine's URL and the caller's `connect_args` say (as SQLAlchemy's engine
    connects), in autocommit mode, and counting found rows as changed ones (an UPDATE that rewrites
    equal values still says it found its row)."""
    from asyncmy.constants import CLIENT

    _, params = dialect.create_connect_args(url)
    kwargs: dict[str, Any] = {**defaults, **params, **connect_args}
    kwargs["client_flag"] = int(kwargs.get("client_flag", 0)) | CLIENT.FOUND_ROWS
    kwargs["autocommit"] = True
    return kwargs
