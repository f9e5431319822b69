"""MySQL and MariaDB: its SQL (sql.py, compiled.py) and its driver (driver.py)."""

from .hosts import sqlalchemy_url

#: SQLAlchemy's names for the database.
NAMES = ("mysql", "mariadb")

#: The plain URL schemes (Prisma's, libpq's) that name it, and the async driver SQLAlchemy needs for them.
SCHEMES = {"mysql": "mysql+asyncmy", "mariadb": "mysql+asyncmy"}

__all__ = ["NAMES", "SCHEMES", "sqlalchemy_url"]
