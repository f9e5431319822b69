"""What the dialects and the store share without SQLAlchemy: the user key's names and checks, and what
a statement's parameters can hold."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigurationError

Serialize = Callable[[Any], str]
#: `user_key_lookup`'s answer for a value the user-key index cannot find.
NOT_INDEXED: Any = object()
#: `user_key_lookup`'s answer for a value that only rows the index marks unreadable can hold (jsonb
#: refuses a \u0000 or a lone surrogate in the lookup as in the row): matching compares those in Python.
UNREADABLE_ONLY: Any = object()
# A user key is a plain name: it is written into the index's SQL, and names the index.
USER_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,28}")


def encodable(text: str) -> bool:
    """Whether `text` can be bound (a lone surrogate cannot: it has no UTF-8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_user_key(key: object) -> str:
    """The `user_key` option, checked: a top-level key of the session data, 1-29 letters, digits or _."""
    if not isinstance(key, str) or not USER_KEY_PATTERN.fullmatch(key):
        raise ConfigurationError(
            f"user_key must be a top-level key of the session data made of 1 to 29 letters, digits "
            f"and underscores, not starting with a digit (such as 'user_id'); got {key!r:.60}"
        )
    return key


def user_key_index_name(table_name: str, key: str) -> str:
    """The user-key index's name, in Prisma's style: `Session_data_user_id_idx`."""
    return f"{table_name}_data_{key}_idx"


def user_key_column_name(key: str) -> str:
    """The generated column the user-key index is on, where the database needs one (MySQL, MariaDB):
    `data_user_id_key`."""
    return f"data_{key}_key"


def is_user_key_object(kind: str, name: str, table_name: str) -> bool:
    """Whether a schema object (`kind` "index" or "column") is one of those `user_key_ddl` adds."""
    if kind == "index":
        return name.startswith(f"{table_name}_data_") and name.endswith("_idx")
    return kind == "column" and name.startswith("data_") and name.endswith("_key")
