"""What a database's driver module (`dialects/<database>/driver.py`) supplies: how to connect, what the
server is told on each new connection, and what its errors mean.

The executor sorts every error a statement raises into one of the `Fault`s below, through the driver,
so that no module outside `dialects/` names a driver's errors.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..dburl import DatabaseURL

if TYPE_CHECKING:
    from ..connections import Connection
    from ..dburl import DatabaseURL as URL  # or SQLAlchemy's URL, whose attributes it has

# The share of the deadline after which the server abandons a statement or a lock wait: it ends the
# statement itself, cleanly, before the client gives up on it.
SERVER_TIMEOUT_SHARE = 0.7


def sqlalchemy_connect_args(url: URL) -> tuple[list[Any], dict[str, Any]]:
    """What SQLAlchemy's dialect of `url` passes its driver's connect: for what a driver does not read
    itself (a URL's rarer query parameters). Imports SQLAlchemy."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url.render() if isinstance(url, DatabaseURL) else url)
    arguments, options = parsed.get_dialect()().create_connect_args(parsed)
    return list(arguments), dict(options)


class Fault(enum.Enum):
    """What a driver's error means for the caller."""

    #: The database cannot serve now (down, unreachable, restarting, a lock or statement timeout): a 503.
    UNAVAILABLE = "unavailable"
    #: A deadlock or serialization failure: the statement (or transaction) was rolled back whole, and
    #: running it again is safe.
    CONFLICT = "conflict"
    #: No such table.
    MISSING_TABLE = "missing table"
    #: A function or column the user-key index needs is not there (its migration has not run).
    MISSING_INDEX = "missing index"
    #: The database refused to read some row's data as JSON (matching then compares in Python).
    UNREADABLE = "unreadable"
    #: A unique key is taken (two first writes of one sid raced).
    DUPLICATE = "duplicate"
    #: The upsert found another session's row under a sid that differs only in case (MySQL).
    SID_CLASH = "sid clash"
    #: The database refused a value (too long, not text it can hold, a date out of its range): the
    #: statement did nothing.
    BAD_DATA = "bad data"
    #: The server refused the store's login: a wrong user or password, or no such database.
    LOGIN_REFUSED = "login refused"


class Driver(ABC):
    """One database's driver, as the pool (`connections.RequestPool`) and the executor use it."""

    #: SQLAlchemy's name for the database.
    name: ClassVar[str]
    #: Errors after which a connection is gone; a read is tried again on another.
    lost: tuple[type[BaseException], ...] = (OSError,)
    #: The statements that start a transaction.
    begin: ClassVar[tuple[str, ...]] = ("BEGIN",)
    #: The port connected to where the URL names none; None for a database that is a file.
    default_port: ClassVar[int | None] = None

    @abstractmethod
    async def connect(self, **kwargs: Any) -> Connection:
        """A new connection, with `connect_kwargs`' arguments."""

    @abstractmethod
    def connect_kwargs(
        self,
        url: URL,
        deadline: float,
        *,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The arguments of `connect` for the database of `url` (as SQLAlchemy's dialect reads it), then
        the caller's `connect_args`, with a connect timeout of `deadline` and whatever makes the server
        end a statement before the deadline."""

    def setup(self, deadline: float, *, pgbouncer: bool = False) -> tuple[str, ...]:
        """Statements run once on each new connection, in order."""
        return ()

    def max_connections(self, url: URL) -> int | None:
        """The most connections the database of `url` can be used through at once, where it has a
        limit of its own (an in-memory SQLite database lives in one connection)."""
        return None

    @abstractmethod
    def refused(self, error: BaseException) -> bool:
        """Whether `error` is the server refusing a statement, after which the connection is fine."""

    def ended(self, error: BaseException, connection: Connection) -> bool:
        """Whether `error` says the server ended the connection, although the driver reports it as a
        refusal."""
        return False

    async def settle(self, connection: Connection, grace: float) -> bool:
        """After a statement on `connection` was cut off, end it on the server within `grace` seconds;
        whether the connection can be used again. By default it is closed (the server ends what it was
        running when it notices)."""
        return False

    @abstractmethod
    def classify(self, error: BaseException) -> Fault | None:
        """What `error` means, or None for an error that is a bug (bad SQL, a wrong type)."""

    def describing(self, table: str) -> str:
        """The query `describe` sends for the table named `table` (quoted): by default one for no rows,
        whose columns the driver describes."""
        return f"SELECT * FROM {table} LIMIT 0"  # noqa: S608 - a quoted name

    @abstractmethod
    async def describe(self, connection: Connection, table: str) -> Sequence[tuple[str, Any]]:
        """The (name, type) of each column of the table named `table` (quoted), as the store's
        statements see it, through the query `describing` gives: the type as the driver reports it."""

    def check_columns(self, table_name: str, columns: Mapping[str, Any], expires_column: str) -> None:
        """Raise StoreSetupError when a column of the session table (`columns`: name → the driver's
        type, from `describe`) has a type the store cannot use. Every type serves by default."""
        return
