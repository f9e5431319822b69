"""The package's loggers, and how a session id appears in a log line.

Every logger is a child of `fastapi_prisma_session`, so one line of logging configuration controls them
all. Session ids are secrets (whoever holds one is logged in), so logs show only their first 6
characters.
"""

from __future__ import annotations

import logging

package_logger = logging.getLogger("fastapi_prisma_session")
middleware_logger = logging.getLogger("fastapi_prisma_session.middleware")


def redact(sid: str | None) -> str:
    """`abc123…`: enough to follow one session through the logs, too little to use it."""
    return "new session" if sid is None else sid[:6] + "…"
