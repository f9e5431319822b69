"""sqlite: its SQL (sql.py) and its driver (driver.py)."""

from .sql import Dialect

__all__ = ["Dialect"]
