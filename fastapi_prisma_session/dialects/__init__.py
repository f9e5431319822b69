"""Each database's SQL, one module per database behind the interface of `base.SQLDialect`.

Each database is a folder named as SQLAlchemy names the dialect (`mysql/` for `mysql+asyncmy://`): its
SQL (`sql.py`, a `Dialect`) and its driver (`driver.py`, a `Driver`: connecting, server-side timeouts,
error classification, column checks). Adding a database is adding a folder, and running the contract
tests on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .base import SQLDialect
from .driver import Driver, Fault

if TYPE_CHECKING:
    from sqlalchemy import Table

SUPPORTED = ("postgresql", "sqlite", "mysql", "mariadb")
# SQLAlchemy's names that share a module: MariaDB (a `mariadb+asyncmy://` URL) is written as MySQL.
MODULES = {"mariadb": "mysql"}


# Databases refused with a reason of their own.
REFUSED = {
    "cockroachdb": "CockroachDB speaks PostgreSQL's protocol, but the store is untested on it and its "
    "advisory locks, which let one process prune at a time, are missing or no-op stubs in most releases "
    "(see the README's CockroachDB note)",
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
    module = importlib.import_module(f"{__name__}.{MODULES.get(name, name)}.driver")
    driver: Driver = module.Driver()
    return driver


def for_database(name: str, table: Table, *, prune_batch_size: int) -> SQLDialect:
    """The statements for `table` on the database SQLAlchemy calls `name`."""
    problem = unsupported(name)
    if problem:
        raise ConfigurationError(problem)
    module = importlib.import_module(f"{__name__}.{MODULES.get(name, name)}")
    dialect: SQLDialect = module.Dialect(table, prune_batch_size=prune_batch_size)
    return dialect


__all__ = ["SUPPORTED", "Driver", "Fault", "SQLDialect", "driver_for", "for_database", "unsupported"]
