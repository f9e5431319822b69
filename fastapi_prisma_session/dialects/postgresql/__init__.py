"""PostgreSQL: its SQL (sql.py) and its driver (driver.py)."""

from .hosts import sqlalchemy_url
from .sql import Dialect

#: SQLAlchemy's names for the database.
NAMES = ("postgresql",)
#: The plain URL schemes (Prisma's, libpq's) that name it, and the async driver SQLAlchemy needs for them.
SCHEMES = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}

__all__ = ["NAMES", "SCHEMES", "Dialect", "sqlalchemy_url"]
