"""SQLite through the standard library's sqlite3 (connection.py): a file database, a busy timeout within
the deadline, and what its error messages mean."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ...exceptions import ConfigurationError
from ..driver import SERVER_TIMEOUT_SHARE, Fault, sqlalchemy_connect_args
from ..driver import Driver as BaseDriver
from .connection import SQLiteConnection

if TYPE_CHECKING:
    from ...connections import Connection
    from ...dburl import DatabaseURL as URL

# What SQLite says when the database file cannot be used right now.
UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full", "interrupted")


def connect_params(url: URL) -> tuple[list[Any], dict[str, Any]]:
    """sqlite3.connect's arguments from `url`, as SQLAlchemy's aiosqlite dialect makes them (a URL with
    a query, or one SQLAlchemy refuses, is left to it)."""
    if url.query or url.username or url.password or url.host or url.port:
        return sqlalchemy_connect_args(url)
    filename = url.database or ":memory:"
    return [filename if filename == ":memory:" else os.path.abspath(filename)], {}


class Driver(BaseDriver):
    name = "sqlite"
    # Takes the database's write lock at once: what the transaction reads stays as read until it ends.
    begin = ("BEGIN IMMEDIATE",)

    async def connect(self, **kwargs: Any) -> Connection:
        connection: Connection = await SQLiteConnection.connect(**kwargs)
        return connection

    def connect_kwargs(
        self,
        url: URL,
        deadline: float,
        *,
        pgbouncer: bool = False,
        connect_args: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        arguments, options = connect_params(url)
        database = str(arguments[0]) if arguments else ""
        uri = bool(options.get("uri"))
        if database in ("", ":memory:") or (uri and "mode=memory" in database):
            raise ConfigurationError(
                "an in-memory SQLite database lives and dies with one connection, and the store uses "
                "several: give it a file, such as sqlite:///sessions.db (a temporary file for tests)"
            )
        given = {**options, **(connect_args or {})}
        # A writer waits this long for another's lock (SQLite's busy timeout), then gives up: a 503.
        busy = float(given.get("timeout", deadline * SERVER_TIMEOUT_SHARE))
        return {"database": database, "busy_timeout": min(busy, deadline * SERVER_TIMEOUT_SHARE), "uri": uri}

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.Error)

    async def settle(self, connection: Connection, grace: float) -> bool:
        cast("SQLiteConnection", connection).interrupt()
        return False

    def classify(self, error: BaseException) -> Fault | None:
        if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error):
            return Fault.DUPLICATE
        if isinstance(error, (OSError, TimeoutError)):
            return Fault.UNAVAILABLE
        if isinstance(error, (UnicodeError, sqlite3.DataError)) or "too big" in str(error):
            return Fault.BAD_DATA
        if not isinstance(error, sqlite3.Error):
            return None
        text = str(error).lower()
        if "no such table" in text:
            return Fault.MISSING_TABLE
        if any(sign in text for sign in UNAVAILABLE):
            return Fault.UNAVAILABLE
        return None

    async def describe(self, connection: Connection, table: str) -> Sequence[tuple[str, Any]]:
        return await cast("SQLiteConnection", connection).describe(self.describing(table))
