"""MySQL: asyncmy's own pool against the request pool, in one process, on one scratch database.

    python -m benchmarks.mysql_pool [--rounds 3] [--seconds 3] [--tasks 32] [--connections 10]

The server is `TEST_MARIADB_URL`'s (default mysql://root@127.0.0.1:3306), as for the tests.

Each variant runs the store's two request-path statements, compiled as the store compiles them: `load`
(a single-row SELECT by sid through the unique index) and `update` (data and expiry by sid), from
`--tasks` concurrent tasks over `--connections` connections, for `--seconds` each:

- `request pool`: `connections.RequestPool` with `dialects/mysql/connection.py`'s `MySQLConnection`
  (a deadline on every statement, one shared timer);
- `asyncmy pool`: `asyncmy.create_pool`, then acquire, cursor, execute, fetchone, release;
- `asyncmy pool + timeout`: the same inside `asyncio.timeout`, the least a store needs to bound a call.

The variants alternate, their order reversed every round, so that drift on the machine (the server
shares it) falls on each alike. Per variant: statements a second, and the client's CPU (process time)
per statement; the ratios are each round's, then their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncmy
from asyncmy.constants import CLIENT
from sqlalchemy.dialects.mysql.asyncmy import dialect as asyncmy_dialect
from sqlalchemy.engine import make_url

from fastapi_prisma_session.connections import RequestPool
from fastapi_prisma_session.dialects.mysql.driver import Driver
from fastapi_prisma_session.dialects.mysql.sql import Dialect
from fastapi_prisma_session.models import session_table
from tests.helpers import PRISMA_MYSQL_DDL, mariadb_database, mariadb_sql

ROWS = 1000
DEADLINE = 5.0
DATA = (
    '{"cookie":{"originalMaxAge":1209600000,"expires":"2030-01-01T00:00:00.000Z","httpOnly":true,'
    '"path":"/"},"user_id":42}'
)
# Runs `sql` with `args`: a read's row or a write's count.
Run = Callable[[str, Sequence[Any], bool], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Statement:
    kind: str
    sql: str
    order: tuple[str, ...]
    read: bool

    @classmethod
    def of(cls, name: str, read: bool) -> Statement:
        compiled = getattr(Dialect(session_table(), prune_batch_size=100), name).compile(
            dialect=asyncmy_dialect()
        )
        kind = "SELECT by sid" if read else "UPDATE by sid"
        return cls(kind, compiled.string, tuple(compiled.positiontup or ()), read)

    def args(self, n: int, expires: datetime) -> list[Any]:
        values = {"session_id": f"s{n % ROWS}", "payload": DATA, "expires": expires}
        return [values[name] for name in self.order]


def connect_kwargs(url: str) -> dict[str, Any]:
    """What both pools open their connections with: the request path's settings (autocommit, found
    rows, utf8mb4), with no init_command, which only a new connection runs."""
    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 3306,
        "user": parsed.username or "root",
        "password": parsed.password or "",
        "database": parsed.database,
        "charset": "utf8mb4",
        "autocommit": True,
        "client_flag": CLIENT.FOUND_ROWS,
    }


@contextlib.asynccontextmanager
async def request_pool(kwargs: dict[str, Any], size: int) -> AsyncIterator[Run]:
    pool = RequestPool(Driver(), kwargs, max_size=size, idle_timeout=60.0, deadline=DEADLINE)

    async def run(sql: str, args: Sequence[Any], read: bool) -> Any:
        if read:
            return await pool.run("fetchrow", sql, args, retry=True)
        return await pool.run("execute", sql, args)

    try:
        yield run
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def asyncmy_pool(kwargs: dict[str, Any], size: int, *, bounded: bool) -> AsyncIterator[Run]:
    pool = await asyncmy.create_pool(minsize=size, maxsize=size, **kwargs)

    async def plain(sql: str, args: Sequence[Any], read: bool) -> Any:
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(sql, args)
            return await cursor.fetchone() if read else cursor.rowcount

    async def within_deadline(sql: str, args: Sequence[Any], read: bool) -> Any:
        async with asyncio.timeout(DEADLINE):
            return await plain(sql, args, read)

    try:
        yield within_deadline if bounded else plain
    finally:
        pool.close()
        await pool.wait_closed()


@dataclass(frozen=True, slots=True)
class Measure:
    per_second: float
    cpu_us: float


async def measure(run: Run, statement: Statement, tasks: int, seconds: float) -> Measure:
    expires = datetime.now() + timedelta(days=1)  # the column holds naive UTC; any future will do
    stop = False
    counts = [0] * tasks

    async def worker(index: int) -> None:
        n = index
        while not stop:
            result = await run(statement.sql, statement.args(n, expires), statement.read)
            assert result  # a row, or one row matched
            counts[index] += 1
            n += tasks

    # Every connection opened before the clock starts.
    await asyncio.gather(
        *(run(statement.sql, statement.args(n, expires), statement.read) for n in range(tasks))
    )
    workers = [asyncio.ensure_future(worker(index)) for index in range(tasks)]
    await asyncio.sleep(0.2)  # warm
    start, cpu, done = time.perf_counter(), time.process_time(), sum(counts)
    await asyncio.sleep(seconds)
    elapsed, used, count = time.perf_counter() - start, time.process_time() - cpu, sum(counts) - done
    stop = True
    await asyncio.gather(*workers)
    return Measure(count / elapsed, used / count * 1e6)


async def run_count(run: Run, statement: Statement, tasks: int, count: int) -> None:
    """Exactly `count` statements from `tasks` tasks: what callgrind counts the instructions of."""
    expires = datetime.now() + timedelta(days=1)
    left = count

    async def worker(index: int) -> None:
        nonlocal left
        n = index
        while left > 0:
            left -= 1
            assert await run(statement.sql, statement.args(n, expires), statement.read)
            n += tasks

    await asyncio.gather(*(worker(index) for index in range(tasks)))


VARIANTS = ("request pool", "asyncmy pool", "asyncmy pool + timeout")
STATEMENTS = {"load": True, "update": False}  # the store's statement, and whether it is a read


def pool_of(variant: str, kwargs: dict[str, Any], size: int) -> contextlib.AbstractAsyncContextManager[Run]:
    if variant == "request pool":
        return request_pool(kwargs, size)
    return asyncmy_pool(kwargs, size, bounded=variant.endswith("timeout"))


async def seed(url: str) -> None:
    await mariadb_sql(PRISMA_MYSQL_DDL, url)
    values = ", ".join(f"('s{n}', 's{n}', '{DATA}', NOW() + INTERVAL 1 DAY)" for n in range(ROWS))
    await mariadb_sql(f"INSERT INTO `Session` VALUES {values}", url)


async def bench(url: str, args: argparse.Namespace) -> dict[tuple[str, str], list[Measure]]:
    await seed(url)
    kwargs = connect_kwargs(url)
    results: dict[tuple[str, str], list[Measure]] = {}
    for round_ in range(args.rounds):
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for statement in (Statement.of(name, read) for name, read in STATEMENTS.items()):
            for variant in order:
                async with pool_of(variant, kwargs, args.connections) as run:
                    found = await measure(run, statement, args.tasks, args.seconds)
                results.setdefault((statement.kind, variant), []).append(found)
    return results


def spread(ratios: list[float]) -> str:
    """The median of each round's ratio, and the lowest and highest."""
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f})"


def report(results: dict[tuple[str, str], list[Measure]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.tasks} tasks, {args.connections} connections, {args.seconds:g} s a variant, {args.rounds} "
        "rounds (order reversed each round); client CPU is the process's time per statement.",
        "",
        "| statement | variant | statements/s (median) | CPU µs/statement (median) |"
        " throughput ÷ request pool (median, range) | CPU ÷ request pool (median, range) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in ("SELECT by sid", "UPDATE by sid"):
        ours = results[(kind, "request pool")]
        for variant in VARIANTS:
            measures = results[(kind, variant)]
            speed = [m.per_second / o.per_second for m, o in zip(measures, ours, strict=True)]
            cpu = [m.cpu_us / o.cpu_us for m, o in zip(measures, ours, strict=True)]
            lines.append(
                f"| {kind} | {variant} | {statistics.median(m.per_second for m in measures):,.0f} | "
                f"{statistics.median(m.cpu_us for m in measures):.1f} | {spread(speed)} | {spread(cpu)} |"
            )
    lines += ["", "Per round (statements/s, CPU µs):"]
    for (kind, variant), measures in results.items():
        rounds = ", ".join(f"{m.per_second:,.0f} / {m.cpu_us:.1f}" for m in measures)
        lines.append(f"- {kind}, {variant}: {rounds}")
    return "\n".join(lines)


# Under callgrind, each variant runs these many statements in a process of its own; the difference of
# the two counts' instructions, divided by theirs, is a statement's (start-up and connecting cancel out).
CALLGRIND_COUNTS = (300, 1500)


def instructions(url: str, variant: str, name: str, count: int, args: argparse.Namespace) -> int:
    """The instructions (callgrind's Ir) of a process that runs `count` statements `name` on `variant`."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m"]
        command += [
            "benchmarks.mysql_pool",
            "--child",
            url,
            variant,
            name,
            str(count),
            "--tasks",
            str(args.tasks),
        ]
        command += ["--connections", str(args.connections), *(["--no-uvloop"] if args.no_uvloop else [])]
        subprocess.run(command, check=True, capture_output=True, timeout=900)
        summary = [line for line in out.read_text().splitlines() if line.startswith("summary:")]
        return int(summary[0].split()[1])


def instruction_report(url: str, args: argparse.Namespace) -> str:
    few, many = CALLGRIND_COUNTS
    lines = [
        "",
        f"Instructions per statement (callgrind, the client process; {many} statements less {few}):",
        "",
        "| statement | variant | instructions/statement | ÷ request pool |",
        "|---|---|---:|---:|",
    ]
    for name in STATEMENTS:
        counted = {}
        for variant in VARIANTS:
            counted[variant] = (
                instructions(url, variant, name, many, args) - instructions(url, variant, name, few, args)
            ) / (many - few)
        for variant, per in counted.items():
            kind = Statement.of(name, STATEMENTS[name]).kind
            lines.append(f"| {kind} | {variant} | {per:,.0f} | {per / counted['request pool']:.2f} |")
    return "\n".join(lines)


async def child(url: str, variant: str, name: str, count: int, args: argparse.Namespace) -> None:
    statement = Statement.of(name, STATEMENTS[name])
    async with pool_of(variant, connect_kwargs(url), args.connections) as run:
        await run_count(run, statement, args.tasks, count)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--connections", type=int, default=10, help="each pool's size (the store's default)")
    parser.add_argument("--no-uvloop", action="store_true", help="the default event loop instead of uvloop")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions per statement under callgrind"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("URL", "VARIANT", "STATEMENT", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    loop_factory = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    if args.child:
        url, variant, name, count = args.child
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(child(url, variant, name, int(count), args))
        return ""
    with mariadb_database("fps_bench_pool") as url:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(bench(url, args))
        loop = "uvloop" if loop_factory is not None else "asyncio"
        text = f"Event loop: {loop}. " + report(results, args)
        if args.instructions:
            text += "\n" + instruction_report(url, args)
    print(text)
    return text


if __name__ == "__main__":
    main()
