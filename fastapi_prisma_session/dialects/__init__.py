"""Each database in a folder of its own: its SQL (`sql.py`, a `Dialect` behind `base.SQLDialect`) and
its driver (`driver.py`, a `Driver`: connecting, server-side timeouts, error classification, column
checks), and in its `__init__.py` the names SQLAlchemy gives it and the plain URL schemes that mean it.

Adding a database is adding a folder here, and a value of the tests' `database_url` fixture.
"""

from __future__ import annotations

import importlib
import pkgutil
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
for _found in pkgutil.iter_modules(__path__):
    if _found.ispkg:
        _package = importlib.import_module(f"{__name__}.{_found.name}")
        MODULES.update(dict.fromkeys(_package.NAMES, _found.name))
        SCHEMES.update(_package.SCHEMES)
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
    "unsupported",
]
