"""SQLite: its SQL (sql.py) and its driver (driver.py)."""

from .sql import Dialect

#: SQLAlchemy's names for the database.
NAMES = ("sqlite",)
#: The plain URL schemes (Prisma's, libpq's) that name it, and the async driver SQLAlchemy needs for them.
SCHEMES = {"sqlite": "sqlite+aiosqlite"}

__all__ = ["NAMES", "SCHEMES", "Dialect"]
