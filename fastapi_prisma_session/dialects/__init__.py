"""Each database in a folder of its own: its SQL (`sql.py`, a `Dialect` behind `base.SQLDialect`) and
its driver (`driver.py`, a `Driver`: connecting, server-side timeouts, error classification, column
checks), and in its `__init__.py` the names SQLAlchemy gives it and the plain URL schemes that mean it.

Adding a database is adding a folder here, and a value of the tests' `database_url` fixture.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .base import SQLDialect
from .driver import Driver, Fault

if TYPE_CHECKING:
    from sqlalchemy import Table

# SQLAlchemy's name of each database → its folder (MariaDB's is mysql/), and each plain URL scheme → the
# scheme with the async driver, from the folders' own declarations.
MODULES: dict[str, str] = {}
SCHEMES: dict[str, str] = {}
# A folder → how it rewrites its database's URLs for SQLAlchemy (`sqlalchemy_url`), where it does.
URL_FORMS: dict[str, Callable[[str], str]] = {}
for _found in pkgutil.iter_modules(__path__):
    if _found.ispkg:
        _package = importlib.import_module(f"{__name__}.{_found.name}")
        MODULES.update(dict.fromkeys(_package.NAMES, _found.name))
        SCHEMES.update(_package.SCHEMES)
        if hasattr(_package, "sqlalchemy_url"):
            URL_FORMS[_found.name] = _package.sqlalchemy_url
SUPPORTED = tuple(MODULES)


# Databases refused with a reason of their own.
REFUSED = {
    "cockroachdb": "CockroachDB speaks PostgreSQL's protocol, but the store is untested on it and its "
    "advisory locks, which let one process prune at a time, are missing or no-op stubs in most releases "
    "(see docs/databases/postgresql.md)",
}


def unsupported(name: str) -> str | None:
    """Why the database SQLAlchemy calls `name` cannot be used, or None when it can."""
    if name in SUPPORTED:
        return None
    reason = REFUSED.get(name, f"the {name!r} database is not supported")
    return f"{reason}; use PostgreSQL (postgresql://), SQLite (sqlite://) or MySQL/MariaDB (mysql://)"


def sqlalchemy_url(url: str) -> str:
    """`url` as SQLAlchemy reads it, where its database writes some URLs its own way (PostgreSQL's
    comma-separated host list)."""
    scheme = url.partition("://")[0]
    folder = MODULES.get(SCHEMES.get(scheme, scheme).partition("+")[0])
    form = URL_FORMS.get(folder) if folder else None
    return form(url) if form else url


def driver_for(name: str) -> Driver:
    """The driver of the database SQLAlchemy calls `name` (a supported one)."""
    problem = unsupported(name)
    if problem:
        raise ConfigurationError(problem)
    module = importlib.import_module(f"{__name__}.{MODULES[name]}.driver")
    driver: Driver = module.Driver()
    return driver


def for_database(name: str, table: Table, *, prune_batch_size: int) -> SQLDialect:
    """The statements for `table` on the database SQLAlchemy calls `name`."""
    problem = unsupported(name)
    if problem:
        raise ConfigurationError(problem)
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    dialect: SQLDialect = module.Dialect(table, prune_batch_size=prune_batch_size)
    return dialect


__all__ = [
    "SCHEMES",
    "SUPPORTED",
    "Driver",
    "Fault",
    "SQLDialect",
    "driver_for",
    "for_database",
    "sqlalchemy_url",
    "unsupported",
]
