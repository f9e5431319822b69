"""The scale benchmark's tables: filling, sizing and pruning a scratch PostgreSQL or MariaDB table with
its own statements, outside the store."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from datetime import timedelta
from typing import Any, ClassVar

import asyncpg
from sqlalchemy.dialects import mysql

from fastapi_prisma_session.dialects import for_database
from fastapi_prisma_session.models import session_table
from tests.helpers import ROOT, run_module

SESSIONS_PER_USER = 10


COOKIE = '{"originalMaxAge":86400000,"expires":"2030-01-01T00:00:00.000Z","httpOnly":true,"path":"/"}'


INDEXES = ("Session_pkey", "Session_sid_key", "Session_expiresAt_idx", "Session_data_user_id_idx")


# A prune of millions of rows, or an index build on them, takes minutes.
CLI_TIMEOUT = 3600.0


# A MariaDB prune is stopped after this long, and its rate is what it removed meanwhile: while 2,000 reads
# a second run, the pace gives way to them (a few thousand rows a second), and before commit 0776e59 each
# batch read the whole table.
MARIADB_PRUNE_SECONDS = 120.0


# MariaDB's fill goes in transactions of at most this many rows (one of 10,000,000 would swell the undo log).
MARIADB_FILL_CHUNK = 500_000


async def fill(conn: asyncpg.Connection, prefix: str, count: int, expires_in: timedelta, users: int) -> None:
    """`count` sessions named prefix1…, user_id 1…users in turn, expiring `expires_in` from now."""
    await conn.execute(
        'INSERT INTO "Session" (id, sid, data, "expiresAt") '
        "SELECT $1 || g, $1 || g, "
        """'{"cookie":' || $4 || ',"user_id":' || (g % $5 + 1) || ',"views":' || g || '}', """
        "(now() AT TIME ZONE 'utc') + $3::interval FROM generate_series(1, $2) AS g",
        prefix,
        count,
        expires_in,
        COOKIE,
        users,
    )


async def prune_with_cli(plain: str) -> float:
    """Run `python -m fastapi_prisma_session prune` at its default pace; the seconds it says it took
    (the process's start-up is not the prune's)."""
    command = ("prune", "--database-url", plain)
    done = await asyncio.to_thread(run_module, "fastapi_prisma_session", *command, timeout=CLI_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"the prune failed:\n{done.stderr}")
    last = done.stdout.strip().splitlines()[-1]
    print("   ", last, file=sys.stderr)
    found = re.search(r" in ([0-9.]+) s$", last)
    if found is None:
        raise RuntimeError(f"unexpected output from the prune: {last}")
    return max(float(found.group(1)), 0.05)


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    found = {"table": int(await conn.fetchval("""SELECT pg_table_size('"Session"')"""))}
    for index in INDEXES:
        size = await conn.fetchval("SELECT pg_relation_size(to_regclass($1))", f'"{index}"')
        if size is not None:
            found[index] = int(size)
    return found


class PostgresTable:
    """The scratch PostgreSQL database's own statements: filling, putting back, statistics, sizes."""

    # A full read of a large table outlasts the store's 15 s statement timeout: give it longer here.
    patient: ClassVar[dict[str, Any]] = {"connect_args": {"command_timeout": 900}}

    def __init__(self, plain: str, conn: asyncpg.Connection) -> None:
        self.plain, self.conn = plain, conn
        self.url = plain.replace("postgresql://", "postgresql+asyncpg://")

    async def fill(self, prefix: str, count: int, expires_in: timedelta, users: int) -> None:
        await fill(self.conn, prefix, count, expires_in, users)

    async def analyze(self, *, vacuum: bool = True) -> None:
        await self.conn.execute('VACUUM ANALYZE "Session"' if vacuum else 'ANALYZE "Session"')

    async def put_back(self, user: int, rows: int) -> None:
        await _put_back(self.conn, user, rows)

    async def sizes(self) -> dict[str, int]:
        return await sizes(self.conn)

    async def expired_left(self) -> int:
        return int(await self.conn.fetchval("""SELECT count(*) FROM "Session" WHERE "expiresAt" < now()"""))

    async def prune_rate(self, expired: int) -> tuple[float, str | None]:
        """Rows a second of the CLI's prune of the `expired` rows, to the end (and no error: a failed
        prune raises)."""
        return expired / await prune_with_cli(self.plain), None

    async def add_user_key(self, *, stored: bool) -> None:
        await _migrate_user_key(self.plain)


class MariaDBTable:
    """The same on a scratch MariaDB database, through one asyncmy connection in autocommit mode."""

    patient: ClassVar[dict[str, Any]] = {"connect_args": {"read_timeout": 900}}

    def __init__(self, plain: str, conn: Any) -> None:
        self.plain, self.conn = plain, conn
        self.url = plain.replace("mysql://", "mysql+asyncmy://")
        self.left = 0

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self.conn.cursor() as cursor:
            await cursor.execute(statement, args)
            return list(await cursor.fetchall() or [])

    async def fill(self, prefix: str, count: int, expires_in: timedelta, users: int) -> None:
        """As `fill`, from MariaDB's SEQUENCE engine (seq_1_to_N), in chunks."""
        seconds = int(expires_in.total_seconds())
        for start in range(1, count + 1, MARIADB_FILL_CHUNK):
            end = min(count, start + MARIADB_FILL_CHUNK - 1)
            await self.sql(
                "INSERT INTO `Session` (id, sid, data, `expiresAt`) "
                "SELECT CONCAT(%s, seq), CONCAT(%s, seq), "
                """CONCAT('{"cookie":', %s, ',"user_id":', seq %% %s + 1, ',"views":', seq, '}'), """
                f"UTC_TIMESTAMP(3) + INTERVAL %s SECOND FROM seq_{start}_to_{end}",
                prefix,
                prefix,
                COOKIE,
                users,
                seconds,
            )

    async def analyze(self, *, vacuum: bool = True) -> None:
        await self.sql("ANALYZE TABLE `Session`")

    async def end_orphaned_deletes(self) -> None:
        """Stop the prune batch a stopped or failed CLI left running on the server (a client that gives
        up does not stop its statement), and wait until it has rolled back and let go of its rows."""
        running = (
            "SELECT id, command FROM information_schema.processlist WHERE db = DATABASE() "
            "AND id <> CONNECTION_ID() AND info LIKE 'DELETE%%'"
        )
        for _ in range(600):
            found = await self.sql(running)
            if not found:
                return
            for query_id, command in found:
                if command == "Query":
                    await self.sql(f"KILL QUERY {int(query_id)}")
            await asyncio.sleep(1)
        raise RuntimeError("a prune batch is still running ten minutes after its CLI stopped")

    async def put_back(self, user: int, rows: int) -> None:
        """As `_put_back`: live{g} for g % users + 1 == user, from a sequence with a step."""
        users = rows // SESSIONS_PER_USER
        await self.sql(
            "INSERT INTO `Session` (id, sid, data, `expiresAt`) "
            "SELECT CONCAT('live', seq), CONCAT('live', seq), "
            """CONCAT('{"cookie":', %s, ',"user_id":', %s, ',"views":', seq, '}'), """
            f"UTC_TIMESTAMP(3) + INTERVAL 1 DAY FROM seq_{user - 1}_to_{rows}_step_{users} "
            "WHERE seq >= 1 ON DUPLICATE KEY UPDATE id = id",
            COOKIE,
            user,
        )

    async def sizes(self) -> dict[str, int]:
        """The table's (its clustered index: the rows) and each index's bytes, as of the last ANALYZE."""
        found = await self.sql(
            "SELECT index_name, stat_value * @@innodb_page_size FROM mysql.innodb_index_stats "
            "WHERE database_name = DATABASE() AND table_name = 'Session' AND stat_name = 'size'"
        )
        named = {"PRIMARY": "table", **{name: name for name in INDEXES}}
        return {named[index]: int(size) for index, size in found if index in named}

    async def expired_left(self) -> int:
        """The expired rows the prunes left: those a capped prune did not reach, and any still there."""
        [(count,)] = await self.sql("SELECT COUNT(*) FROM `Session` WHERE `expiresAt` < UTC_TIMESTAMP(3)")
        return self.left + int(count)

    async def prune_rate(self, expired: int) -> tuple[float, str | None]:
        """Rows a second of the CLI's prune, stopped after MARIADB_PRUNE_SECONDS if it has not ended, and
        the CLI's error if it failed; the rows it left are
        counted, then deleted in one statement, so that the next step starts from the same table."""
        command = [sys.executable, "-m", "fastapi_prisma_session", "prune", "--database-url", self.plain]
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        error = None
        try:
            async with asyncio.timeout(MARIADB_PRUNE_SECONDS):
                _, stderr = await process.communicate()
            if process.returncode:
                error = stderr.decode().strip().splitlines()[-1]
        except TimeoutError:
            process.terminate()
            await process.wait()
        elapsed = time.monotonic() - started
        await self.end_orphaned_deletes()
        [(left,)] = await self.sql("SELECT COUNT(*) FROM `Session` WHERE `expiresAt` < UTC_TIMESTAMP(3)")
        done = f"failed after {elapsed:.1f} s: {error}" if error else f"in {elapsed:.1f} s"
        print(f"    pruned {expired - int(left):,} of {expired:,} {done}", file=sys.stderr)
        self.left += int(left)
        await self.sql("DELETE FROM `Session` WHERE `expiresAt` < UTC_TIMESTAMP(3)")
        return (expired - int(left)) / elapsed, error

    async def add_user_key(self, *, stored: bool) -> None:
        if not stored:
            await _migrate_user_key(self.plain)
            return
        sql = for_database("mysql", session_table(), prune_batch_size=1)
        for statement in sql.user_key_ddl("user_id")[0]:
            ddl = str(statement.compile(dialect=mysql.dialect()))
            await self.sql(ddl.replace(") VIRTUAL", ") STORED"))


async def _migrate_user_key(plain: str) -> None:
    command = ("migrate", "--database-url", plain, "--user-key", "user_id")
    done = await asyncio.to_thread(run_module, "fastapi_prisma_session", *command, timeout=CLI_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"migrate --user-key failed:\n{done.stderr}")


Table = PostgresTable | MariaDBTable


async def _put_back(conn: asyncpg.Connection, user: int, rows: int) -> None:
    """Recreate the sessions of `user` (live{g} for g % users + 1 == user) that destroy_all removed."""
    await conn.execute(
        'INSERT INTO "Session" (id, sid, data, "expiresAt") '
        "SELECT 'live' || g, 'live' || g, "
        """'{"cookie":' || $3 || ',"user_id":' || $1 || ',"views":' || g || '}', """
        "(now() AT TIME ZONE 'utc') + interval '1 day' FROM generate_series($1 - 1, $2, $4) AS g "
        "WHERE g >= 1 ON CONFLICT DO NOTHING",
        user,
        rows,
        COOKIE,
        rows // SESSIONS_PER_USER,
    )
