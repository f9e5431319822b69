"""Pruning at scale: the advisory lock, progress, jitter, the CLI, and several pruners at once.

PostgreSQL's: the lock is pg_try_advisory_xact_lock and the rows are seeded with generate_series.
MariaDB's GET_LOCK, batches and concurrent pruners are tested in test_mariadb.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.dialects import for_database
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.pruning import (
    APP_RATE,
    BATCH_BUDGET,
    JITTER,
    LOAD_WINDOW,
    MAX_BATCH,
    MAX_PAUSE,
    MIN_BATCH,
    REST_SHARE,
    START_BATCH,
    UNKNOWN_LOAD_REST,
    AppLoad,
    Pace,
    PruneLoop,
    advisory_lock_key,
)
from tests.helpers import (
    a_fresh_store_prunes,
    advisory_locks,
    alembic,
    prune_in_processes,
    scratch_database,
    seed,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def migrated(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database with the table, as a plain postgresql:// URL (what cron jobs have)."""
    with scratch_database("fps_prune") as url:
        yield url


async def counts(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE sid LIKE 'expired%'), count(*) FILTER (WHERE sid LIKE 'live%') "
            'FROM "Session"'
        )
    finally:
        await conn.close()
    return row[0], row[1]


@pytest.fixture
async def store(migrated: str) -> AsyncIterator[PrismaSessionStore]:
    async with PrismaSessionStore(migrated) as store:
        yield store


async def test_a_prune_run_skips_while_another_process_holds_the_lock(
    store: PrismaSessionStore, migrated: str
) -> None:
    await seed(migrated, expired=10, live=2)
    other = await asyncpg.connect(migrated)
    try:
        assert await other.fetchval(
            "SELECT pg_try_advisory_lock($1)", advisory_lock_key("fastapi_prisma_session prune Session")
        )
        assert await store.prune() == 0
        assert store.last_prune_skipped
        assert await counts(migrated) == (10, 2)
    finally:
        await other.close()  # releases the lock
    assert await store.prune() == 10
    assert not store.last_prune_skipped
    assert await counts(migrated) == (0, 2)


async def test_no_prune_lock_outlives_a_prune_run(migrated: str) -> None:
    """The lock is taken per batch, for its transaction only: after three stores prune at once nothing
    holds it (a session lock could stay on an idle server connection behind a transaction pooler), and a
    fresh store's prune runs."""
    await seed(migrated, expired=3000, live=5)
    stores = [PrismaSessionStore(migrated, prune_batch_size=100, prune_pause=0) for _ in range(3)]
    try:
        removed = await asyncio.gather(*(store.prune() for store in stores))
        assert sum(removed) <= 3000
        assert await advisory_locks(migrated) == 0
        await seed(migrated, expired=0, live=0)
        await a_fresh_store_prunes(migrated)
        assert await counts(migrated) == (0, 5)
    finally:
        for store in stores:
            await store.shutdown()


async def test_prune_reports_progress_per_batch(migrated: str) -> None:
    await seed(migrated, expired=2500, live=10)
    seen: list[int] = []
    async with PrismaSessionStore(migrated, prune_batch_size=1000) as store:
        assert await store.prune(progress=seen.append) == 2500
    assert seen == [1000, 2000, 2500]


def test_the_loop_jitters_its_period() -> None:
    async def prune() -> int:
        return 0

    loop = PruneLoop(prune, 100.0, lambda *args: None)
    delays = {loop._next_delay() for _ in range(200)}
    assert len(delays) > 100
    assert all(100 * (1 - JITTER) <= d <= 100 * (1 + JITTER) for d in delays)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_prisma_session", *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )


async def test_the_cli_prunes_a_postgresql_database(migrated: str) -> None:
    await seed(migrated, expired=1200, live=5)
    result = cli("prune", "--database-url", migrated, "--batch-size", "500")
    assert result.returncode == 0, result.stderr
    assert 'removed 1200 expired sessions from "Session"' in result.stdout
    assert await counts(migrated) == (0, 5)


def test_the_cli_reads_database_url_and_works_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cron.db'}"
    assert alembic(url, "upgrade", "head").returncode == 0
    result = cli("prune", env={**os.environ, "DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert 'removed 0 expired sessions from "Session"' in result.stdout


def test_the_cli_without_a_database_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = cli("prune", env=env)
    assert result.returncode == 2
    assert "--database-url" in result.stderr


def test_the_cli_names_the_migration_when_the_table_is_missing(tmp_path: Path) -> None:
    result = cli("prune", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 1
    assert "alembic upgrade head" in result.stderr


async def test_several_processes_prune_at_once_without_errors_or_touching_live_rows(migrated: str) -> None:
    await seed(migrated, expired=30_000, live=3_000)
    removed = await prune_in_processes(migrated, 4)
    assert removed == 30_000  # each expired row removed once, by whichever process held the lock
    assert await counts(migrated) == (0, 3_000)


# -- the pace of a prune (issue 16, item 2): decisions, not timings ----------------------------------


def test_the_pace_sizes_batches_to_the_time_budget() -> None:
    pace = Pace(None, None)
    assert pace.size == START_BATCH
    pace.rest(START_BATCH, BATCH_BUDGET / 4)  # four times faster than the budget: at most twice as big
    assert pace.size == 2 * START_BATCH
    for _ in range(20):
        pace.rest(pace.size, BATCH_BUDGET * 10)  # far slower: halves, down to the floor
    assert pace.size == MIN_BATCH
    for _ in range(40):
        pace.rest(pace.size, 0.0001)
    assert pace.size == MAX_BATCH


def test_the_pace_rests_more_when_the_database_slows_down_and_less_when_it_recovers() -> None:
    pace = Pace(1000, None)
    steady = [pace.rest(1000, 0.01) for _ in range(10)]
    assert steady[-1] == pytest.approx(0.01 * REST_SHARE)  # as fast as its best: a short rest
    slowed = [pace.rest(1000, 0.03) for _ in range(10)]  # three times slower per row: busy
    assert slowed[-1] > 5 * steady[-1]
    assert slowed == sorted(slowed)  # the rest grows as the slowdown is confirmed
    recovered = [pace.rest(1000, 0.01) for _ in range(30)]
    assert recovered[-1] < 2 * steady[-1]
    assert max(pace.rest(1000, 100.0) for _ in range(5)) == MAX_PAUSE


def test_a_given_batch_size_or_pause_is_kept() -> None:
    fixed = Pace(200, 0.01)
    assert [fixed.rest(200, seconds) for seconds in (0.001, 1.0, 0.1)] == [0.01, 0.01, 0.01]
    assert fixed.size == 200
    pause_only = Pace(None, 0.0)
    assert pause_only.rest(START_BATCH, 5.0) == 0.0
    assert pause_only.size == START_BATCH // 2


async def test_a_default_prune_paces_itself_and_removes_every_expired_row(migrated: str) -> None:
    await seed(migrated, expired=30_000, live=100)
    seen: list[int] = []
    async with PrismaSessionStore(migrated) as store:
        assert await store.prune(progress=seen.append) == 30_000
    batches = [after - before for before, after in zip([0, *seen], seen, strict=False)]
    assert batches[0] == START_BATCH
    assert len(set(batches)) > 1  # sized batch by batch
    assert await counts(migrated) == (0, 100)


def test_the_pace_rests_in_proportion_to_the_apps_rate_of_transactions() -> None:
    pace = Pace(1000, None)
    idle, unknown, busy = (pace.rest(1000, 0.01, rate) for rate in (0.0, None, 2000.0))
    assert idle == pytest.approx(0.01 * REST_SHARE)  # an idle database: close to full speed
    assert unknown == pytest.approx(0.01 * (REST_SHARE + UNKNOWN_LOAD_REST))  # the first second: half speed
    assert busy == pytest.approx(0.01 * (REST_SHARE + 2000 / APP_RATE))  # 2,000 a second: a tenth pruning
    assert pace.rest(1000, 0.2, 1_000_000.0) == MAX_PAUSE


def test_a_slightly_slower_row_is_not_a_busy_database() -> None:
    """Deleting a row costs more or less from batch to batch on an idle database (pages in cache or
    not, checkpoints): only a pace well past its best counts as the database slowing down."""
    pace = Pace(1000, None)
    rests = [pace.rest(1000, seconds) for seconds in [0.01] * 5 + [0.013, 0.011, 0.014] * 10]
    assert max(rests) == pytest.approx(0.014 * REST_SHARE)


def test_the_apps_rate_is_the_counters_growth_less_the_pruners_own() -> None:
    load = AppLoad(own_per_batch=1)
    assert load.add(1000, now=0.0) is None
    assert load.add(1001, now=LOAD_WINDOW / 2) is None  # not a whole window yet
    # 1,000 transactions in the window, 2 of them the two batches': 998 of the app's.
    assert load.add(2000, now=LOAD_WINDOW) == pytest.approx(998 / LOAD_WINDOW)
    assert load.add(2001, now=2 * LOAD_WINDOW) == pytest.approx(998 / LOAD_WINDOW / 2)  # smoothed, going
    assert load.average == pytest.approx(998 / (2 * LOAD_WINDOW))  # over the whole prune
    idle = AppLoad(own_per_batch=3)
    rates = [idle.add(3 * n, now=n * LOAD_WINDOW) for n in range(10)]
    assert rates[0] is None
    assert rates[1:] == [0.0] * 9  # a counter that grows by the pruner's own statements only: idle
    assert idle.average == 0.0


async def test_the_pruner_measures_the_apps_transactions_and_makes_way(migrated: str) -> None:
    """Against the real database: while another connection runs transactions on it, the pruner reads
    their rate off pg_stat_database and rests more of the time than without them."""

    async def prune(expired: int, traffic: float) -> tuple[float | None, float]:
        await seed(migrated, expired=expired, live=0 if traffic else 100)  # the live rows once
        stopped = asyncio.get_running_loop().time() + traffic

        async def app() -> None:  # as many transactions as one connection runs, for `traffic` seconds
            conn = await asyncpg.connect(migrated)
            try:
                while asyncio.get_running_loop().time() < stopped:
                    await conn.fetchval("SELECT 1")
            finally:
                await conn.close()

        task = asyncio.ensure_future(app())
        # Batches of 20: enough of them (600 and more, each followed by a rest as long) to outlast the
        # first window even where a batch takes a millisecond. With 50, a fast quiet database finished
        # the quiet prune inside the first window, and its rate was never known.
        async with PrismaSessionStore(migrated, prune_batch_size=20) as store:
            assert await store.prune() == expired
            pruner = store._pruner
        await task
        return pruner.last_app_rate, pruner.last_rest_share

    quiet_rate, quiet_rest = await prune(20_000, traffic=0.0)
    # Fewer rows: after the app stops, the pruner takes a few seconds to trust that it has.
    busy_rate, busy_rest = await prune(12_000, traffic=1.5)
    assert quiet_rate is not None
    assert busy_rate is not None
    # The rate is the average over the whole prune, which the traffic's 1.5 s may be a small part of
    # on a loaded machine: compared with the quiet prune's, not with a fixed figure.
    assert quiet_rate < 50
    assert busy_rate > quiet_rate + 20
    assert busy_rest > quiet_rest


async def test_a_prune_batch_finds_its_rows_by_primary_key_after_a_mass_expiry(migrated: str) -> None:
    """After one UPDATE expired most rows, and before any ANALYZE (statistics that say hardly a row is
    expired), a batch's DELETE still looks its rows up by primary key: read through the expiresAt index,
    each batch would walk every expired row left, and a backlog would prune in quadratic time."""
    await seed(migrated, expired=0, live=5000)
    conn = await asyncpg.connect(migrated)
    try:
        await conn.execute('ANALYZE "Session"')
        await conn.execute(
            """UPDATE "Session" SET "expiresAt" = (now() AT TIME ZONE 'utc') - interval '1 hour'
            WHERE sid <= 'live3'"""
        )
        sql = for_database("postgresql", session_table(), prune_batch_size=MAX_BATCH)
        statement = str(sql.prune_batch.compile(dialect=postgresql.dialect()))
        plain = re.sub(r"%\((\w+)\)s", lambda found: {"now": "$1", "batch_size": "$2"}[found[1]], statement)
        prepared = await conn.prepare(f"EXPLAIN {plain}")
        now = datetime.now(UTC).replace(tzinfo=None)
        plan = [row[0] for row in await prepared.fetch(now, 500)]
    finally:
        await conn.close()
    # The DELETE's own scan: the lines after its InitPlan (the subquery that finds the batch).
    [init] = [n for n, line in enumerate(plan) if "InitPlan" in line]
    depth = len(plan[init]) - len(plan[init].lstrip())
    outer = next(n for n in range(init + 1, len(plan)) if len(plan[n]) - len(plan[n].lstrip()) <= depth)
    scan = "\n".join(plan[outer:])
    assert '"Session_pkey"' in scan, plan
    assert "expiresAt" not in scan, plan
