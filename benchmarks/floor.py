"""The floor: the least a PostgreSQL-backed session middleware can do, hand-written, with no ORM.

One prepared asyncpg SELECT per signed cookie, one prepared upsert per change, express-session's cookie.
Anything the library spends above this is overhead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SELECT = 'SELECT data FROM "Session" WHERE sid = $1 AND "expiresAt" > $2'
# One write per change: an INSERT for a new session, an UPDATE for a loaded one. (An upsert with
# ON CONFLICT (sid) can still raise on the primary key when two writes of one session race.)
INSERT = 'INSERT INTO "Session" (id, sid, data, "expiresAt") VALUES ($1, $1, $2, $3)'
UPDATE = 'UPDATE "Session" SET data = $2, "expiresAt" = $3 WHERE sid = $1'
LIFETIME = timedelta(days=7)


class TrackedDict(dict[str, Any]):
    modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Statements here leave no session state behind, so there is nothing to reset."""


class FloorSessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        dsn: str,
        secret: str,
        cookie_name: str = "connect.sid",
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.dsn = dsn
        self.pool_options = dict(pool_options or {})
        self.key = secret.encode()
        self.prefix = cookie_name + "="
        self.pool: asyncpg.Pool | None = None

    def _sign(self, sid: str) -> str:
        mac = hmac.new(self.key, sid.encode(), hashlib.sha256).digest()
        return sid + "." + base64.b64encode(mac).decode().rstrip("=")

    def _sid(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    part = part.strip()
                    if part.startswith(self.prefix):
                        raw = (
                            part[len(self.prefix) :]
                            .replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2B", "+")
                        )
                        if raw.startswith("s:"):
                            sid = raw[2:].rpartition(".")[0]
                            if hmac.compare_digest(self._sign(sid), raw[2:]):
                                return sid
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # reset=_no_reset: asyncpg otherwise sends a reset query on every release, a round trip a
            # floor should not pay.
            self.pool = await asyncpg.create_pool(
                self.dsn, min_size=10, max_size=10, reset=_no_reset, **self.pool_options
            )
            await self.app(scope, receive, send)
            return
        assert self.pool is not None
        pool = self.pool
        sid = self._sid(scope)
        session = TrackedDict()
        scope["session"] = session

        async def load() -> None:
            # Only routes that use the session load it, as a lazy middleware does.
            nonlocal sid
            if sid is not None:
                row = await pool.fetchrow(SELECT, sid, datetime.now(UTC).replace(tzinfo=None))
                if row is not None:
                    session.update(json.loads(row[0]))
                    session.modified = False
                else:
                    sid = None

        scope["load_session"] = load

        async def send_wrapper(message: Message) -> None:
            nonlocal sid
            if message["type"] == "http.response.start" and session.modified:
                new = sid is None
                sid = sid or secrets.token_urlsafe(24)
                expires = datetime.now(UTC).replace(tzinfo=None) + LIFETIME
                await pool.execute(INSERT if new else UPDATE, sid, json.dumps(session), expires)
                if new:
                    value = "s%3A" + self._sign(sid).replace("/", "%2F").replace("+", "%2B")
                    cookie = f"{self.prefix}{value}; Path=/; HttpOnly; SameSite=Lax"
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_wrapper)
