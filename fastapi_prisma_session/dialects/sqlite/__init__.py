"""sqlite: its SQL (sql.py), its driver (driver.py)."""

from .sql import Dialect

__all__ = ["Dialect"]
