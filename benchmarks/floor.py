"""The floor: the least a SQL-backed session middleware can do, hand-written, with no ORM.

One SELECT per signed cookie, one INSERT or UPDATE per change, express-session's cookie. On PostgreSQL
the statements are asyncpg's prepared ones; on MySQL/MariaDB (a mysql:// URL) they go through an
asyncmy pool on autocommit connections. Anything the library spends above this is overhead.
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
from urllib.parse import urlsplit

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SELECT = 'SELECT data FROM "Session" WHERE sid = $1 AND "expiresAt" > $2'
# One write per change: an INSERT for a new session, an UPDATE for a loaded one. (An upsert with
# ON CONFLICT (sid) can still raise on the primary key when two writes of one session race.)
INSERT = 'INSERT INTO "Session" (id, sid, data, "expiresAt") VALUES ($1, $1, $2, $3)'
UPDATE = 'UPDATE "Session" SET data = $2, "expiresAt" = $3 WHERE sid = $1'
LIFETIME = timedelta(days=7)
# The same statements in MySQL's syntax.
MYSQL_SELECT = "SELECT data FROM `Session` WHERE sid = %s AND `expiresAt` > %s"
MYSQL_INSERT = "INSERT INTO `Session` (id, sid, data, `expiresAt`) VALUES (%s, %s, %s, %s)"
MYSQL_UPDATE = "UPDATE `Session` SET data = %s, `expiresAt` = %s WHERE sid = %s"


class TrackedDict(dict[str, Any]):
    modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Statements here leave no session state behind, so there is nothing to reset."""


class PostgresRows:
    """The floor's two statements on asyncpg."""

    def __init__(self, dsn: str, pool_options: Mapping[str, Any]) -> None:
        self.dsn = dsn
        self.pool_options = pool_options
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        # reset=_no_reset: asyncpg otherwise sends a reset query on every release, a round trip a floor
        # should not pay.
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=10, max_size=10, reset=_no_reset, **self.pool_options
        )

    async def load(self, sid: str, now: datetime) -> str | None:
        assert self.pool is not None
        row = await self.pool.fetchrow(SELECT, sid, now)
        return None if row is None else str(row[0])

    async def write(self, new: bool, sid: str, data: str, expires: datetime) -> None:
        assert self.pool is not None
        await self.pool.execute(INSERT if new else UPDATE, sid, data, expires)


class MySQLRows:
    """The floor's two statements on asyncmy."""

    def __init__(self, dsn: str) -> None:
        self.url = urlsplit(dsn)
        self.pool: Any = None

    async def start(self) -> None:
        import asyncmy

        url = self.url
        self.pool = await asyncmy.create_pool(
            minsize=10,
            maxsize=10,
            host=url.hostname or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            db=url.path.lstrip("/"),
            autocommit=True,
            charset="utf8mb4",
        )

    async def load(self, sid: str, now: datetime) -> str | None:
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(MYSQL_SELECT, (sid, now))
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def write(self, new: bool, sid: str, data: str, expires: datetime) -> None:
        args = (sid, sid, data, expires) if new else (data, expires, sid)
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(MYSQL_INSERT if new else MYSQL_UPDATE, args)


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
        self.rows: PostgresRows | MySQLRows = (
            MySQLRows(dsn)
            if dsn.startswith(("mysql:", "mariadb:"))
            else PostgresRows(dsn, dict(pool_options or {}))
        )
        self.key = secret.encode()
        self.prefix = cookie_name + "="

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
            await self.rows.start()
            await self.app(scope, receive, send)
            return
        rows = self.rows
        sid = self._sid(scope)
        session = TrackedDict()
        scope["session"] = session

        async def load() -> None:
            # Only routes that use the session load it, as a lazy middleware does.
            nonlocal sid
            if sid is not None:
                text = await rows.load(sid, datetime.now(UTC).replace(tzinfo=None))
                if text is not None:
                    session.update(json.loads(text))
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
                await rows.write(new, sid, json.dumps(session), expires)
                if new:
                    value = "s%3A" + self._sign(sid).replace("/", "%2F").replace("+", "%2B")
                    cookie = f"{self.prefix}{value}; Path=/; HttpOnly; SameSite=Lax"
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_wrapper)
