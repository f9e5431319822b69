"""What the middleware does to a response: the headers of one that used its session, or the answer
that replaces the app's when the session cannot be had (503, 500, a websocket closed with 1011)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import StoreUnavailableError
from .logs import middleware_logger as logger

if TYPE_CHECKING:
    from starlette.types import Message, Scope, Send

# Where a request served with telemetry (telemetry.py) keeps its record: the refusals are counted there.
TELEMETRY_KEY = "fastapi_prisma_session.telemetry"


async def refuse(scope: Scope, send: Send, error: Exception) -> None:
    """Answer a request that needs its session and cannot have it, logging one line (the error's own
    message, no traceback): 503 when the database cannot be reached, 500 when it is not set up for the
    store; a websocket is closed with 1011 (internal error)."""
    if isinstance(error, StoreUnavailableError):
        what, status, body = (
            "session store unavailable",
            503,
            b"Session store unavailable; try again shortly.\n",
        )
    else:
        what, status, body = "session store not set up", 500, b"Session store not set up; the log says why.\n"
    record = scope.get(TELEMETRY_KEY)
    if record is not None:
        record.refused(error, None if scope["type"] == "websocket" else status)
    if scope["type"] == "websocket":
        logger.error("%s, closing the websocket %s with 1011: %s", what, scope["path"], error)
        await send({"type": "websocket.close", "code": 1011, "reason": what})
        return
    logger.error("%s, answering %d to %s %s: %s", what, status, scope["method"], scope["path"], error)
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"5"))
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def add_session_headers(message: Message, set_cookie: str | None) -> None:
    """Add the Set-Cookie, if any, to a response that read or wrote the session, and mark it private: it
    depends on the Cookie header (Vary), and a shared cache must not store it (it may carry one user's
    data or a Set-Cookie). An app's own Cache-Control stays; Cookie joins an app's Vary."""
    # On the raw list, not Starlette's MutableHeaders: this runs on every response that used a session.
    headers = message["headers"] = list(message.get("headers", ()))
    vary = None  # the first Vary header's index
    cache_control = False
    for index, (name, _) in enumerate(headers):
        if len(name) == 4 or len(name) == 13:  # the lengths of the two names looked for
            lowered = name.lower()
            if lowered == b"vary" and vary is None:
                vary = index
            elif lowered == b"cache-control":
                cache_control = True
    if vary is None:
        headers.append((b"vary", b"Cookie"))
    else:
        headers[vary] = (b"vary", headers[vary][1] + b", Cookie")
    if not cache_control:
        headers.append((b"cache-control", b"private"))
    if set_cookie is not None:
        headers.append((b"set-cookie", set_cookie.encode("latin-1")))
