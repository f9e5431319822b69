"""The store's statements as the driver's SQL text, without SQLAlchemy at run time.

Each database's `dialects/<db>/compiled.py` holds its statements as SQLAlchemy compiles them from
`sql.py` (`dialects/generate.py` writes it, and a test writes it again and compares, so the two never
drift apart): the SQL with the table's name and its expiry column left open, the order of the parameters,
the values the statement carries itself, the conversions of values bound and read (Prisma's DateTime on
SQLite), and the parameters that are lists (`IN (…)`, one placeholder per value). `Statements` fills in
the names for one table. A statement that is not there (matching by data, the user key's DDL) is built
with SQLAlchemy, imported then (`SQLText.full`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .dialects.sqlite.datetimes import parse_sqlite_datetime, sqlite_datetime_text
from .exceptions import ConfigurationError

DEFAULT_TABLE_NAME = "Session"
#: The expiry column of prisma-session-store 3.x's model, and of 2.x's (the seed's own README).
EXPIRES_AT = "expiresAt"
EXPIRES = "expires"

# Where the compiled form names the table and its expiry column (each quoted as the database quotes).
TABLE, EXPIRES_MARK = "\x00table\x00", "\x00expires\x00"
# A list parameter's place in the compiled form, as SQLAlchemy marks it (`IN (__[POSTCOMPILE_sids])`).
LIST_MARK = "__[POSTCOMPILE_{}]"


def _bind_datetime(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else sqlite_datetime_text(value)


def _read_datetime(value: Any) -> Any:
    return None if value is None else parse_sqlite_datetime(value)


# The conversions a compiled statement names, as SQLAlchemy's column types apply them.
BINDS: dict[str, Callable[[Any], Any]] = {"sqlite_datetime": _bind_datetime}
RESULTS: dict[str, Callable[[Any], Any]] = {"sqlite_datetime": _read_datetime}
# Each database's quoting of a name, and its placeholder for one value of a list parameter.
QUOTES = {"postgresql": '"', "sqlite": '"', "mysql": "`"}
PLACEHOLDERS = {"sqlite": "?", "mysql": "%s"}


def check_names(table_name: object, expires_column: object) -> None:
    """ConfigurationError unless the table's name and its expiry column's are names."""
    if not isinstance(table_name, str) or not table_name:
        raise ConfigurationError("table_name must be a non-empty string")
    if not isinstance(expires_column, str) or not expires_column:
        raise ConfigurationError('expires_column must be a column name, such as "expiresAt" or "expires"')


def check_batch_size(size: object) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigurationError("prune_batch_size must be a positive whole number")


def quote(database: str, name: str) -> str:
    """`name` as an identifier of `database`, always quoted."""
    mark = QUOTES[database]
    return mark + name.replace(mark, mark * 2) + mark


class Converted:
    """A statement whose result columns may need converting (`_results`: a converter per column, None
    where the driver's value is kept, or None when none needs one): `Statement` and the executor's
    `Prepared`."""

    __slots__ = ("_results",)
    _results: tuple[Callable[[Any], Any] | None, ...] | None

    def row(self, raw: Sequence[Any]) -> Sequence[Any]:
        """A row as SQLAlchemy would hand it over."""
        results = self._results
        if results is None:
            return raw
        return tuple(value if p is None else p(value) for p, value in zip(results, raw, strict=True))


class Statement(Converted):
    """One statement in the driver's SQL, for one table: `bind(params)` gives the SQL and its arguments,
    `row(raw)` a row as SQLAlchemy's types would hand it over."""

    __slots__ = ("_binds", "_fixed", "_lists", "_order", "_placeholder", "_plain", "sql")

    def __init__(
        self,
        sql: str,
        order: Sequence[str],
        *,
        fixed: Mapping[str, Any] | None = None,
        binds: Mapping[str, str] | None = None,
        results: Sequence[str | None] = (),
        lists: Sequence[str] = (),
        placeholder: str = "?",
    ) -> None:
        self.sql = sql
        self._order = tuple(order)
        self._fixed = dict(fixed or {})
        conversions = binds or {}
        self._binds = tuple(
            (i, BINDS[conversions[name]]) for i, name in enumerate(order) if name in conversions
        )
        converted = [None if kind is None else RESULTS[kind] for kind in results]
        self._results = tuple(converted) if any(converted) else None
        self._lists = tuple(lists)
        self._placeholder = placeholder
        self._plain = not self._fixed and not self._binds and not self._lists

    def bind(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional arguments for `params`."""
        if self._plain:
            return self.sql, [params[name] for name in self._order]
        fixed, sql = self._fixed, self.sql
        args: list[Any] = []
        for name in self._order:
            if name in self._lists:
                args.extend(params[name])
            else:
                args.append(params[name] if name in params else fixed[name])
        for i, convert in self._binds:
            args[i] = convert(args[i])
        for name in self._lists:
            # One placeholder per value (NULL for none: `IN (NULL)` holds for no row).
            count = len(params[name])
            filled = ", ".join([self._placeholder] * count) if count else "NULL"
            sql = sql.replace(LIST_MARK.format(name), filled)
        return sql, args


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SQLText:
    """A database's statements for one table (`dialects/<db>/compiled.py`, the names filled in), with
    what its `sql.py` says of the database; anything else is asked of `sql.py`'s SQLAlchemy statements,
    built on first use (`full`)."""

    def __init__(
        self,
        database: str,
        table_name: str,
        expires_column: str,
        prune_batch_size: int,
        full: Callable[[], Any],
    ) -> None:
        check_names(table_name, expires_column)
        check_batch_size(prune_batch_size)
        compiled = importlib.import_module(f"{__package__}.dialects.{database}.compiled")
        self.database = database
        self.table_name, self.expires_column = table_name, expires_column
        self._full = full
        self._built: Any = None
        table, expires = quote(database, table_name), quote(database, expires_column)
        placeholder = PLACEHOLDERS.get(database, "?")
        self.statements: dict[str, Statement] = {}
        for name, (sql, order, options) in compiled.STATEMENTS.items():
            text = sql.replace(TABLE, table).replace(EXPIRES_MARK, expires)
            self.statements[name] = Statement(text, order, placeholder=placeholder, **options)
        for trait, value in compiled.TRAITS.items():
            setattr(self, trait, value)
        self.prune_batch_size = prune_batch_size

    def __getattr__(self, name: str) -> Any:
        # Only what is not set on the instance: a statement by name, or one of sql.py's own.
        statements = self.__dict__.get("statements")
        if statements is not None and name in statements:
            return statements[name]
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.full, name)

    @property
    def full(self) -> Any:
        """sql.py's `Dialect` for this table: SQLAlchemy's statements (imported on first use)."""
        if self._built is None:
            self._built = self._full()
        return self._built

    def expected_data(self, text: str) -> str:
        """The compare-and-set's parameter for data loaded as `text` (`SQLDialect.expected_data`)."""
        return _digest(text) if self.__dict__.get("expected_digest") else text

    def prune_lock(self) -> Statement | None:
        return self.statements.get("prune_lock")

    def prune_unlock(self) -> Statement | None:
        return self.statements.get("prune_unlock")

    def activity(self) -> Statement | None:
        return self.statements.get("activity")
