"""The scale benchmark: prune 1,000,000 expired sessions next to 200,000 live ones, under read load.

    python -m benchmarks.prune_scale [--expired 1000000] [--live 200000] [--record]

Reads of live sessions (the request path's SELECT) run the whole time. Their p99 while the CLI prunes
in another process is compared with their p99 before it, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from benchmarks.run import machine
from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.pruning import PRUNE_BATCH_SIZE, PRUNE_PAUSE
from tests.helpers import ROOT, scratch_database, seed

READERS = 8
BASELINE_SECONDS = 10
# Each reader's pace: 8 x 250 = 2,000 reads a second, a busy app rather than a saturated machine. A
# closed loop as fast as it can go would measure only CPU contention on 2 cores.
READS_PER_SECOND_PER_READER = 250


async def count(url: str, prefix: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval('SELECT count(*) FROM "Session" WHERE sid LIKE $1', prefix + "%"))
    finally:
        await conn.close()


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99)] * 1000


async def read_load(store: PrismaSessionStore, live: int, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []

    async def reader() -> None:
        interval = 1 / READS_PER_SECOND_PER_READER
        next_at = time.perf_counter() + random.random() * interval
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            sid = f"live{random.randint(1, live)}"
            started = time.perf_counter()
            if await store.load(sid) is None:
                raise AssertionError(f"live session {sid} was not found")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(reader() for _ in range(READERS)))
    return latencies


async def timed_load(store: PrismaSessionStore, live: int, seconds: float) -> list[float]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(read_load(store, live, stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await task


async def measure(plain: str, expired: int, live: int, batch_size: int, pause: float) -> dict[str, float]:
    """Seed the database at `plain` (postgresql://), then time a CLI prune under read load."""
    url = plain.replace("postgresql://", "postgresql+asyncpg://")
    started = time.monotonic()
    await seed(plain, expired, live)
    print(
        f"seeded {expired} expired and {live} live rows in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )

    async with PrismaSessionStore(url) as store:
        before = await timed_load(store, live, BASELINE_SECONDS)

        stop = asyncio.Event()
        during_task = asyncio.ensure_future(read_load(store, live, stop))
        started = time.monotonic()
        pruner = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastapi_prisma_session", "prune", "--database-url", plain,
            "--batch-size", str(batch_size), "--pause", str(pause), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await pruner.communicate()
        elapsed = time.monotonic() - started
        stop.set()
        during = await during_task
        after = await timed_load(store, live, BASELINE_SECONDS)
    print(output.decode().strip(), file=sys.stderr)
    return {
        "rows_per_second": expired / elapsed,
        "prune_seconds": elapsed,
        # The quiet p99 wanders from run to run; the windows before and after the prune both count.
        "p99_before_ms": p99(before + after),
        "p99_during_ms": p99(during),
        "reads_before": len(before) + len(after),
        "reads_during": len(during),
        "expired_left": await count(plain, "expired"),
        "live_left": await count(plain, "live"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=PRUNE_BATCH_SIZE)
    parser.add_argument("--pause", type=float, default=PRUNE_PAUSE, help="the CLI's --pause between batches")
    parser.add_argument("--record", action="store_true", help="append the results to BENCHMARKS.md")
    args = parser.parse_args()
    with scratch_database("fps_scale") as plain:
        r = asyncio.run(measure(plain, args.expired, args.live, args.batch_size, args.pause))
    ratio = r["p99_during_ms"] / r["p99_before_ms"]
    text = "\n".join(
        [
            "| measure | value |",
            "|---|---:|",
            f"| expired rows pruned | {args.expired:,} in {r['prune_seconds']:.1f} s |",
            f"| rows removed per second | {r['rows_per_second']:,.0f} |",
            f"| read p99 without a prune, 10 s before and after ({r['reads_before']:,} reads) "
            f"| {r['p99_before_ms']:.2f} ms |",
            f"| read p99 during the prune ({r['reads_during']:,} reads) | {r['p99_during_ms']:.2f} ms |",
            f"| p99 during ÷ without (target ≤ 2) | {ratio:.2f} |",
            f"| expired rows left (target 0) | {r['expired_left']:,.0f} |",
            f"| live rows left (target {args.live:,}) | {r['live_left']:,.0f} |",
        ]
    )
    print(text)
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python -m benchmarks.prune_scale " + " ".join(sys.argv[1:])
        entry = (
            f"\n## Prune at scale, {stamp}\n\nMachine: {machine()}. Command: `{command}`. "
            f"{READERS} readers, each loading a random live session {READS_PER_SECOND_PER_READER} times a "
            "second through the store, run for 10 s before the prune, throughout it, and 10 s after it. "
            f"The CLI prunes in its own process.\n\n{text}\n"
        )
        with (Path(ROOT) / "BENCHMARKS.md").open("a") as out:
            out.write(entry)


if __name__ == "__main__":
    main()
