"""The package's loggers, how a session id appears in a log line, and the store's logging options.

Every logger is a child of `fastapi_prisma_session`, so one line of logging configuration controls them
all. Session ids are secrets (whoever holds one is logged in), so logs show only their first 6
characters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from .exceptions import ConfigurationError

package_logger = logging.getLogger("fastapi_prisma_session")
middleware_logger = logging.getLogger("fastapi_prisma_session.middleware")

LevelName = str | int

_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "log": logging.INFO,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact(sid: str | None) -> str:
    """`abc123…`: enough to follow one session through the logs, too little to use it."""
    return "new session" if sid is None else sid[:6] + "…"


class StoreLog:
    """prisma-session-store's `logger` and `logger_level` options: which levels the store emits, where."""

    def __init__(self, logger: logging.Logger | bool | None, levels: LevelName | Sequence[LevelName]) -> None:
        if logger is False:
            self._logger: logging.Logger | None = None
        elif logger is None or logger is True:
            self._logger = package_logger
        elif isinstance(logger, logging.Logger):
            self._logger = logger
        else:
            raise ConfigurationError("logger must be a logging.Logger, or False to silence the store")
        items: Iterable[LevelName] = [levels] if isinstance(levels, (str, int)) else levels
        numbers = set()
        for item in items:
            if isinstance(item, int):
                numbers.add(item)
            elif isinstance(item, str) and item.lower() in _LEVEL_NAMES:
                numbers.add(_LEVEL_NAMES[item.lower()])
            else:
                raise ConfigurationError(
                    f"logger_level {item!r} is not a level; use {sorted(_LEVEL_NAMES)} or logging constants"
                )
        self._levels = frozenset(numbers) if self._logger is not None else frozenset()

    def __call__(self, level: int, message: str, *args: object) -> None:
        if level in self._levels and self._logger is not None:
            self._logger.log(level, message, *args)
