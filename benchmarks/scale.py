"""The scale benchmark: the store on a table of 100,000 to 10,000,000 live sessions, on PostgreSQL or
MariaDB.

    python -m benchmarks.scale --rows 10000000 [--rows 1000000 ...] [--writes 1000000] [--record]
    python -m benchmarks.scale --database mariadb --rows 1000000 [--stored] [--record]

For each size, in a scratch database of its own (dropped afterwards, for the disk's sake):

- the table is filled with INSERT ... SELECT from a sequence (PostgreSQL's generate_series, MariaDB's
  seq_1_to_N): `rows` live sessions of `rows / 10` users (10 sessions each, `user_id` a JSON number), as
  express-session writes them;
- load and write latency through the store (p50, p99), with and without the user-key index;
- `matching(user_id=…)` and `destroy_all(user_id=…)`: read every row (no `user_key`), then through the
  index that `migrate --user-key user_id` adds (its build time too);
- prune: `rows / 10` expired rows (at least 500,000) pruned by the CLI at its default pace on an idle
  database, and as many again while 8 readers load live sessions 2,000 times a second (their p99 during
  the prune against the 10 s before and after it);
- with `--writes N` (PostgreSQL): the table's and each index's growth over N writes (touches and
  data-only updates, as the store sends them, from 4 connections), autovacuum on, without the user-key
  index, at fillfactor 100 and at `--fillfactor`;
- with `--stored` (MariaDB): the user-key column STORED instead of the VIRTUAL one `migrate` adds, to
  compare the two.

The load average before and after each size is recorded: other jobs share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks import mass_expiry, page
from benchmarks.scale_report import percentile, prune_chart, report
from benchmarks.scale_tables import (
    COOKIE,
    SESSIONS_PER_USER,
    MariaDBTable,
    PostgresTable,
    Table,
    sizes,
)
from fastapi_prisma_session import PrismaSessionStore
from tests.helpers import mariadb_database, run_module, scratch_database

READERS = 8
# Each reader's pace: 8 x 250 = 2,000 reads a second, a busy app rather than a saturated machine.
READS_PER_SECOND_PER_READER = 250


# How long the scans without user_key may take (seconds).
SCAN_TIMEOUT = 900


async def timed(operation: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - started)
    return samples


async def paced_reads(
    store: PrismaSessionStore, live: int, stop: asyncio.Event, first: int = 1
) -> list[float]:
    """Readers loading random live sessions (live{first} to live{first + live - 1}) at a steady pace
    until `stop`; their latencies."""
    latencies: list[float] = []

    async def reader() -> None:
        interval = 1 / READS_PER_SECOND_PER_READER
        next_at = time.perf_counter() + random.random() * interval
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            sid = f"live{random.randint(first, first + live - 1)}"
            started = time.perf_counter()
            if await store.load(sid) is None:
                raise AssertionError(f"live session {sid} was not found")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(reader() for _ in range(READERS)))
    return latencies


async def reads_for(store: PrismaSessionStore, live: int, seconds: float, first: int = 1) -> list[float]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(paced_reads(store, live, stop, first))
    await asyncio.sleep(seconds)
    stop.set()
    return await task


async def write_load(plain: str, live: int, writes: int, workers: int = 4, batch: int = 500) -> float:
    """`writes` writes of random sessions as the store sends them: half touches (a new expiry, and the
    cookie in `data`), half updates of one key (the same expiry), by `workers` connections in batches
    (asyncpg's executemany); returns writes per second."""
    touch = 'UPDATE "Session" SET data = $2, "expiresAt" = $3 WHERE sid = $1'
    update = 'UPDATE "Session" SET data = $2 WHERE sid = $1'
    remaining = writes

    async def worker() -> None:
        nonlocal remaining
        conn = await asyncpg.connect(plain)
        try:
            while remaining > 0:
                count = min(batch, remaining)
                remaining -= count
                later = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
                # Sorted, so that concurrent batches lock their rows in one order (no deadlock).
                sids = sorted(f"live{random.randint(1, live)}" for _ in range(count))
                data = [f'{{"cookie":{COOKIE},"user_id":1,"views":{n}}}' for n in range(count)]
                half = count // 2
                await conn.executemany(
                    touch, [(sid, text, later) for sid, text in zip(sids[:half], data, strict=False)]
                )
                await conn.executemany(update, list(zip(sids[half:], data[half:], strict=True)))
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return writes / (time.monotonic() - started)


async def measure(
    db: Table, rows: int, writes: int, fillfactor: int, *, stored: bool = False
) -> dict[str, Any]:
    url = db.url
    users = max(1, rows // SESSIONS_PER_USER)
    # Prune rates are measured on 500,000 rows at least (1,000 on a tiny table: the harness's own test),
    # so that the CLI's start and a p99 over the prune's few seconds have enough to go on.
    expired = max(1000 if rows < 100_000 else 500_000, rows // 10)
    r: dict[str, Any] = {"rows": rows, "load_before": os.getloadavg()[0]}
    # Fewer samples on a tiny table (the harness's own test), the full count from 100,000 rows up.
    samples, users_timed = (2000, 50) if rows >= 100_000 else (50, 5)
    started = time.monotonic()
    await db.fill("live", rows, timedelta(days=1), users)
    await db.analyze()
    r["fill_s"] = time.monotonic() - started
    r["table_mb"] = (await db.sizes())["table"] / 2**20
    print(f"  filled {rows:,} rows in {r['fill_s']:.1f} s ({r['table_mb']:.0f} MB)", file=sys.stderr)
    target = random.randint(1, users)

    # Without user_key, matching and destroy_all read every row: minutes at ten million, so this store
    # waits for them (operation_timeout would end them first, as the docs say it does).
    async with PrismaSessionStore(url, engine_options=db.patient, operation_timeout=SCAN_TIMEOUT) as store:
        r["load"] = await timed(lambda: store.load(f"live{random.randint(1, rows)}"), samples)
        r["write"] = await timed(lambda: _one_write(store, rows), samples // 2)
        passes = 1 if rows >= 1_000_000 else 3
        r["matching_scan"] = await timed(lambda: store.matching(user_id=target), passes)
        r["destroy_all_scan"] = [await _timed_destroy(store, db, users, rows)]
        print(f"  without user_key: matching {min(r['matching_scan']):.2f} s", file=sys.stderr)

    started = time.monotonic()
    await db.add_user_key(stored=stored)
    r["index_build_s"] = time.monotonic() - started
    await db.analyze(vacuum=False)
    async with PrismaSessionStore(url, user_key="user_id") as store:
        r["matching_indexed"] = await timed(
            lambda: store.matching(user_id=random.randint(1, users)), users_timed
        )
        r["destroy_all_indexed"] = [
            await _timed_destroy(store, db, random.randint(1, users), rows) for _ in range(users_timed)
        ]
        r["load_indexed"] = await timed(lambda: store.load(f"live{random.randint(1, rows)}"), samples)
        r["write_indexed"] = await timed(lambda: _one_write(store, rows), samples // 2)
    await db.analyze(vacuum=False)
    r["sizes"] = await db.sizes()
    print(f"  with user_key: index built in {r['index_build_s']:.1f} s", file=sys.stderr)

    live = rows  # every live session is there: destroy_all's were put back
    await db.fill("idle", expired, timedelta(hours=-1), users)
    await db.analyze()
    r["prune_idle_rate"], r["prune_idle_error"] = await db.prune_rate(expired)

    await db.fill("busy", expired, timedelta(hours=-1), users)
    await db.analyze()
    async with PrismaSessionStore(url) as store:
        window = 10 if rows >= 100_000 else 1
        before = await reads_for(store, live, window)
        stop = asyncio.Event()
        during_task = asyncio.ensure_future(paced_reads(store, live, stop))
        r["prune_busy_rate"], r["prune_busy_error"] = await db.prune_rate(expired)
        stop.set()
        during = await during_task
        after = await reads_for(store, live, window)
    r["reads_quiet_p99"] = percentile(before + after, 0.99)
    r["reads_prune_p99"] = percentile(during, 0.99)
    r["expired_left"] = await db.expired_left()

    if writes and isinstance(db, PostgresTable):
        # As most deployments run: without the user-key index, which makes every change of data a
        # non-HOT update (it indexes an expression of data).
        conn, plain = db.conn, db.plain
        await conn.execute('DROP INDEX "Session_data_user_id_idx"')
        r["amplification"] = [await _amplification(conn, plain, rows, writes, 100)]
        r["amplification"].append(await _amplification(conn, plain, rows, writes, fillfactor))
    r["load_after"] = os.getloadavg()[0]
    return r


async def _one_write(store: PrismaSessionStore, rows: int) -> None:
    sid = f"live{random.randint(1, rows)}"
    await store.update(
        sid, {"cookie": {"originalMaxAge": None, "expires": None}, "views": 1}, changed={"views"}
    )


async def _timed_destroy(store: PrismaSessionStore, db: Table, user: int, rows: int) -> float:
    """destroy_all(user_id=user), timed; the user's sessions are put back afterwards (not timed)."""
    started = time.perf_counter()
    removed = await store.destroy_all(user_id=user)
    elapsed = time.perf_counter() - started
    if removed != SESSIONS_PER_USER:
        raise AssertionError(
            f"destroy_all(user_id={user}) removed {removed} sessions, not {SESSIONS_PER_USER}"
        )
    await db.put_back(user, rows)
    return elapsed


async def _amplification(
    conn: asyncpg.Connection, plain: str, rows: int, writes: int, fillfactor: int
) -> dict[str, Any]:
    await conn.execute(f'ALTER TABLE "Session" SET (fillfactor = {fillfactor})')
    await conn.execute('VACUUM FULL "Session"')  # rewrite it at that fillfactor
    await conn.execute('ANALYZE "Session"')
    before = await sizes(conn)
    hot_before = await conn.fetchval(
        "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'Session'"
    )
    upd_before = await conn.fetchval("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'Session'")
    rate = await write_load(plain, rows, writes)
    await asyncio.sleep(1)  # the statistics collector catches up
    after = await sizes(conn)
    hot = await conn.fetchval("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'Session'")
    updates = await conn.fetchval("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'Session'")
    print(f"  {writes:,} writes at fillfactor {fillfactor}: {rate:,.0f}/s", file=sys.stderr)
    return {
        "fillfactor": fillfactor,
        "rate": rate,
        "before": before,
        "after": after,
        "hot_share": (hot - hot_before) / max(1, updates - upd_before),
    }


def run_size(
    database: str, rows: int, writes: int, fillfactor: int, *, stored: bool = False
) -> dict[str, Any]:
    """`measure` at one size, in a scratch database of its own."""
    if database == "mariadb":
        with mariadb_database("fps_scale") as plain:
            done = run_module("fastapi_prisma_session", "migrate", "--database-url", plain)
            if done.returncode:
                raise RuntimeError(f"migrate failed:\n{done.stderr}")
            return asyncio.run(_on_mariadb(plain, rows, stored=stored))
    with scratch_database("fps_scale") as plain:
        return asyncio.run(_on_postgres(plain, rows, writes, fillfactor))


async def _on_postgres(plain: str, rows: int, writes: int, fillfactor: int) -> dict[str, Any]:
    conn = await asyncpg.connect(plain)
    try:
        return await measure(PostgresTable(plain, conn), rows, writes, fillfactor)
    finally:
        await conn.close()


async def _on_mariadb(plain: str, rows: int, *, stored: bool) -> dict[str, Any]:
    import asyncmy
    from sqlalchemy.engine import make_url

    parsed = make_url(plain)
    conn = await asyncmy.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        autocommit=True,
    )
    try:
        return await measure(MariaDBTable(plain, conn), rows, 0, 100, stored=stored)
    finally:
        await conn.ensure_closed()


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="live sessions (repeat for several sizes)")
    parser.add_argument(
        "--database",
        choices=["postgresql", "mariadb", "sqlite"],
        default="postgresql",
        help="where the table is (sqlite: the mass-expiry case only)",
    )
    parser.add_argument(
        "--writes", type=int, default=0, help="measure table growth over this many writes (PostgreSQL)"
    )
    parser.add_argument("--fillfactor", type=int, default=90, help="the fillfactor compared with 100")
    parser.add_argument(
        "--stored", action="store_true", help="a STORED user-key column instead of the VIRTUAL one (MariaDB)"
    )
    parser.add_argument(
        "--case",
        choices=["sizes", "mass-expiry"],
        default="sizes",
        help="mass-expiry: the prune after one UPDATE expired most of a table (benchmarks/mass_expiry.py)",
    )
    parser.add_argument(
        "--expired", type=int, default=172_000, help="mass-expiry: the rows the UPDATE expires"
    )
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.case == "mass-expiry":
        return mass_expiry.main(
            args.database, (args.rows or [250_000])[0], args.expired, command, args.record
        )
    if args.database == "sqlite":
        parser.error("--database sqlite is for --case mass-expiry")
    if args.database == "mariadb" and args.writes:
        parser.error(
            "--writes measures PostgreSQL's heap and HOT updates: leave it out with --database mariadb"
        )
    if args.database == "postgresql" and args.stored:
        parser.error("--stored is MariaDB's: PostgreSQL's user-key index is on a function, not a column")
    results = []
    for rows in args.rows or [100_000, 1_000_000, 10_000_000]:
        print(f"{rows:,} rows:", file=sys.stderr)
        results.append(run_size(args.database, rows, args.writes, args.fillfactor, stored=args.stored))
        print(report(results, args.writes), file=sys.stderr)  # so far, in case a larger size fails
    text = report(results, args.writes)
    print(text)
    if args.record:
        title = "Scale" if args.database == "postgresql" else "Scale on MariaDB"
        key = "scale" if args.database == "postgresql" else "scale-mariadb"
        chart = "\n\n![Prune rate against table size]({chart:prune-rate})\n"
        page.record(key, page.heading(title, command) + text + chart, {"prune-rate": prune_chart(results)})
    return text


if __name__ == "__main__":
    main()
