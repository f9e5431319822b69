"""Each database's SQL, one module per database behind the interface of `base.SQLDialect`.

Adding a database is adding a module here named as SQLAlchemy names the dialect (`mysql.py` for
`mysql+asyncmy://`), with a `Dialect` class, and running the contract tests on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .base import SQLDialect

if TYPE_CHECKING:
    from sqlalchemy import Table

SUPPORTED = ("postgresql", "sqlite", "mysql", "mariadb")
# SQLAlchemy's names that share a module: MariaDB (a `mariadb+asyncmy://` URL) is written as MySQL.
MODULES = {"mariadb": "mysql"}


def for_database(name: str, table: Table, *, prune_batch_size: int) -> SQLDialect:
    """The statements for `table` on the database SQLAlchemy calls `name`."""
    if name not in SUPPORTED:
        raise ConfigurationError(
            f"the {name!r} database is not supported; use PostgreSQL (postgresql://), SQLite (sqlite://) "
            "or MySQL/MariaDB (mysql://)"
        )
    module = importlib.import_module(f"{__name__}.{MODULES.get(name, name)}")
    dialect: SQLDialect = module.Dialect(table, prune_batch_size=prune_batch_size)
    return dialect


__all__ = ["SUPPORTED", "SQLDialect", "for_database"]
