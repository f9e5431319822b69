"""MySQL and MariaDB: its SQL (sql.py) and its driver (driver.py)."""

from ...models import MYSQL_DIALECTS as NAMES  # SQLAlchemy's names for the database
from .hosts import sqlalchemy_url
from .sql import Dialect

#: The plain URL schemes (Prisma's, libpq's) that name it, and the async driver SQLAlchemy needs for them.
SCHEMES = {"mysql": "mysql+asyncmy", "mariadb": "mysql+asyncmy"}

__all__ = ["NAMES", "SCHEMES", "Dialect", "sqlalchemy_url"]
