"""The mass-expiry case of the scale benchmark (`python -m benchmarks.scale --case mass-expiry`): a
table of `rows` live sessions, one UPDATE that expires `expired` of them (a secret rotation, a forced
logout of everyone), no VACUUM (autovacuum is off for the table on PostgreSQL: the worst case, as a busy
autovacuum may not have come round yet), then a prune at its default settings while 8 readers
load live sessions 2,000 times a second. Reported: rows a second, and the readers' p99 during the prune
against the `WINDOW` seconds before and after it. The prune runs in the readers' process, through a
store of its own, as an app's own prune loop does.

PostgreSQL and MariaDB run in a scratch database of their own; SQLite in a temporary file.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks import page
from benchmarks.charts import bar_chart
from fastapi_prisma_session import PrismaSessionStore, StoreUnavailableError
from tests.helpers import mariadb_database, run_module, scratch_database

DATABASES = ("postgresql", "mariadb", "sqlite")
# A prune still running after this long is stopped, and its rate is what it removed meanwhile.
PRUNE_LIMIT = 300.0
WINDOW = 10.0
DATA = (
    '{"cookie":{"originalMaxAge":86400000,"expires":"2030-01-01T00:00:00.000Z","httpOnly":true,"path":"/"}}'
)

FILL = {
    "postgresql": [
        'ALTER TABLE "Session" SET (autovacuum_enabled = false)',
        """INSERT INTO "Session" (id, sid, data, "expiresAt") SELECT 'live' || g, 'live' || g, :data,
        (now() AT TIME ZONE 'utc') + interval '1 day' FROM generate_series(1, :rows) AS g
        ON CONFLICT DO NOTHING""",
        'VACUUM ANALYZE "Session"',
        """UPDATE "Session" SET "expiresAt" = (now() AT TIME ZONE 'utc') - interval '1 hour'
        WHERE id IN (SELECT 'live' || g FROM generate_series(1, :expired) AS g)""",
    ],
    "mariadb": [
        """INSERT IGNORE INTO `Session` (id, sid, data, `expiresAt`)
        SELECT CONCAT('live', seq), CONCAT('live', seq), :data, UTC_TIMESTAMP(3) + INTERVAL 1 DAY
        FROM seq_1_to_{rows}""",
        "ANALYZE TABLE `Session`",
        """UPDATE `Session` SET `expiresAt` = UTC_TIMESTAMP(3) - INTERVAL 1 HOUR
        WHERE CAST(SUBSTRING(id, 5) AS UNSIGNED) <= :expired""",
    ],
    "sqlite": [
        """WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :rows)
        INSERT OR IGNORE INTO "Session" (id, sid, data, "expiresAt") SELECT 'live' || n, 'live' || n, :data,
        strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+1 day') FROM g""",
        """UPDATE "Session" SET "expiresAt" = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-1 hour')
        WHERE CAST(substr(id, 5) AS INTEGER) <= :expired""",
    ],
}


@contextmanager
def _database(database: str) -> Iterator[str]:
    """A fresh database for the session table (PostgreSQL's and MariaDB's migrated; SQLite's file is
    created by the store): the store's URL."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'sessions.db'}"
    elif database == "mariadb":
        with mariadb_database("fps_mass") as plain:
            done = run_module("fastapi_prisma_session", "migrate", "--database-url", plain)
            if done.returncode:
                raise RuntimeError(f"migrate failed:\n{done.stderr}")
            yield plain.replace("mysql://", "mysql+asyncmy://")
    else:
        with scratch_database("fps_mass") as plain:
            yield plain.replace("postgresql://", "postgresql+asyncpg://")


async def _fill(url: str, database: str, rows: int, expired: int) -> None:
    engine = create_async_engine(
        url, connect_args={"command_timeout": 900} if database == "postgresql" else {}
    )
    try:
        for statement in FILL[database]:
            sql = statement.format(rows=rows, expired=expired)
            given = {"data": DATA, "rows": rows, "expired": expired}
            params = {key: value for key, value in given.items() if f":{key}" in sql}
            if statement.startswith("VACUUM"):
                async with engine.connect() as conn:
                    await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text(sql))
                continue
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def _expired(url: str) -> int:
    """The expired rows left: all rows less the live ones the store counts."""
    async with PrismaSessionStore(url) as store:
        quote = store.engine.dialect.identifier_preparer.quote
        async with store.engine.connect() as conn:
            everything = await conn.scalar(text(f"SELECT count(*) FROM {quote('Session')}"))
        return int(everything or 0) - await store.length()


async def _prune(url: str) -> tuple[float, bool]:
    """Prune at the default settings through a store of its own in this process, as an app's prune
    loop does; (its seconds, whether it finished within PRUNE_LIMIT and without an error)."""
    async with PrismaSessionStore(url) as store:
        started = time.monotonic()
        try:
            async with asyncio.timeout(PRUNE_LIMIT):
                await store.prune()
        except (TimeoutError, StoreUnavailableError) as error:
            # Stopped, or a batch outlasted the statement timeout: the rate is what went meanwhile.
            print(f"  the prune stopped: {error!r}", file=sys.stderr)
            return time.monotonic() - started, False
        return time.monotonic() - started, True


async def measure(url: str, database: str, rows: int, expired: int, window: float) -> dict[str, Any]:
    from benchmarks.scale import paced_reads, percentile, reads_for

    if database == "sqlite":
        async with PrismaSessionStore(url) as creator:
            await creator.create_table()
    await _fill(url, database, rows, expired)
    idle_seconds, idle_finished = await _prune(url)
    idle_removed = expired - await _expired(url)
    print(
        f"  {database}, idle: pruned {idle_removed:,} of {expired:,} in {idle_seconds:.1f} s", file=sys.stderr
    )
    # The same rows again (but those the idle prune left, if it was stopped), expired again.
    await _fill(url, database, expired, expired)
    live, first = rows - expired, expired + 1
    async with PrismaSessionStore(url) as store:
        before = await reads_for(store, live, window, first=first)
        stop = asyncio.Event()
        during_task = asyncio.ensure_future(paced_reads(store, live, stop, first=first))
        seconds, finished = await _prune(url)
        stop.set()
        during = await during_task
        after = await reads_for(store, live, window, first=first)
    removed = expired - await _expired(url)
    print(f"  {database}, busy: pruned {removed:,} of {expired:,} in {seconds:.1f} s", file=sys.stderr)
    return {
        "database": database,
        "rows": rows,
        "expired": expired,
        "idle": (idle_removed, idle_seconds, idle_finished),
        "busy": (removed, seconds, finished),
        "quiet_p99": percentile(before + after, 0.99),
        "prune_p99": percentile(during, 0.99),
    }


def _done(outcome: tuple[int, float, bool]) -> str:
    removed, seconds, finished = outcome
    stopped = "" if finished else ", stopped"
    return f"{removed / seconds:,.0f} ({removed:,} in {seconds:.1f} s{stopped})"


def rate(outcome: tuple[int, float, bool]) -> float:
    return outcome[0] / outcome[1]


def report(r: dict[str, Any]) -> str:
    lines = [
        "| measure | value |",
        "|---|---:|",
        f"| table | {r['rows']:,} rows, {r['expired']:,} expired by one UPDATE, no vacuum |",
        f"| prune rate, idle database (rows/s, target ≥ 50,000) | {_done(r['idle'])} |",
        f"| prune rate, 2,000 reads/s running (rows/s) | {_done(r['busy'])} |",
        f"| readers' p99 without / during the prune (ms) | {r['quiet_p99']:.2f} / {r['prune_p99']:.2f} |",
        f"| readers' p99 during ÷ without (target ≤ 2) | {r['prune_p99'] / r['quiet_p99']:.2f} |",
    ]
    return "\n".join(lines)


def charts(r: dict[str, Any]) -> dict[str, str]:
    rates = [("idle", [("rows/s", rate(r["idle"]))]), ("2,000 reads/s", [("rows/s", rate(r["busy"]))])]
    p99 = [("readers' p99", [("without a prune", r["quiet_p99"]), ("during the prune", r["prune_p99"])])]
    return {
        "rate": bar_chart(f"Prune after a mass expiry on {r['database']}, rows/s", rates, "rows/s", 50_000),
        "p99": bar_chart(f"Readers' p99 on {r['database']}, ms", p99, "ms"),
    }


def run(database: str, rows: int, expired: int, window: float = WINDOW) -> dict[str, Any]:
    with _database(database) as url:
        return asyncio.run(measure(url, database, rows, expired, window))


def main(database: str, rows: int, expired: int, command: str, record: bool) -> str:
    """Run the case and print its report; with `record`, write it to the benchmark page."""
    result = run(database, rows, expired, WINDOW if rows >= 100_000 else 1.0)
    text = report(result)
    print(text)
    if record:
        body = page.heading(f"Prune after a mass expiry on {database}", command) + text
        body += "\n\n![Prune rate]({chart:rate})\n![Readers' p99 without and during the prune]({chart:p99})\n"
        page.record(f"mass-expiry-{database}", body, charts(result))
    return text
