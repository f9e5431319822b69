"""The peer benchmark: /noop, /read and /write behind each session middleware, under wrk, in one run.

    make bench                      # or: python -m benchmarks.run --duration 5 --rounds 2 [--record]
    python -m benchmarks.run --pgbouncer-only --record   # only the rows through PgBouncer
    python -m benchmarks.run --database mariadb --rounds 1 --record   # ours against the floor on MariaDB

Each app is served by uvicorn with one worker on loopback, and every route is driven by wrk with a pool
of existing sessions (their cookies are rotated request by request). Ratios come from this run only, and
the apps compared on a route are measured one after another, round after round, with all their servers
up, so that a slow spell of the machine falls on each of them alike.
Ours and the floor also run with Debian's PgBouncer in transaction mode in front of PostgreSQL (started
here, on a free port, and stopped by its pid): ours with Prisma's `?pgbouncer=true`, the floor with
asyncpg's statement cache off. A last pass serves no middleware, the floor and ours with `gc.freeze()` at
start-up (BENCH_GC=freeze in benchmarks/apps.py), the same for all three.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import httpx
from sqlalchemy.engine import make_url

from benchmarks import peer_charts
from benchmarks.wrk import Result, measured_run, run_wrk
from tests.helpers import ROOT, free_port, mariadb_database, run_module, scratch_database
from tests.pgbouncer import in_front_of_test_server

VARIANTS = ["none", "starlette", "starsessions", "floor", "floor+imports", "ours"]
# The floor with ours' imports loaded (benchmarks/apps.py) runs only these routes: ours' p99 against it
# tells the request path's tail from what a full garbage collection of SQLAlchemy's objects adds.
ONLY_ROUTES = {"floor+imports": ("read", "write")}
# On MariaDB only the two that use it: the hand-written floor and ours.
MARIADB_VARIANTS = ["floor", "ours"]
SCENARIOS = [
    ("plain", "GET", "/noop", False),
    ("noop", "GET", "/noop", True),
    ("read", "GET", "/read", True),
    ("write", "POST", "/write", True),
]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# The rows through PgBouncer (transaction mode): these apps and routes, and as many server connections
# as the floor's own pool holds, so that the pooler's size is not what limits either.
# The pass with gc.freeze() at start-up in every app (BENCH_GC=freeze; docs/deploying, "Tail latency"):
# these apps, every route.
FROZEN_VARIANTS = ["none", "floor", "ours"]
POOLED_VARIANTS = ["floor", "ours"]
POOLED_SCENARIOS = [scenario for scenario in SCENARIOS if scenario[0] in ("read", "write")]
POOLED_SERVER_CONNECTIONS = 10


def start_server(
    variant: str, database_url: str, *, pgbouncer: bool = False, gc: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_DATABASE_URL": database_url,
        "BENCH_REDIS_URL": REDIS_URL,
        "BENCH_PGBOUNCER": "1" if pgbouncer else "0",
        "BENCH_GC": gc,
    }
    command = [
        sys.executable, "-m", "uvicorn", "benchmarks.apps:app", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the {variant} server exited")
        try:
            httpx.get(base + "/noop", timeout=1)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {variant} server did not start") from None
            time.sleep(0.1)


def make_sessions(base: str, count: int, *, distinct: bool = True) -> list[str]:
    """Create `count` sessions through the app itself; returns their Cookie header values.

    With `distinct`, each cookie must name a session of its own (a server-side store); Starlette's
    cookie-only sessions with equal data signed in the same second are equal, and need not be."""
    cookies = []
    with httpx.Client() as client:
        for _ in range(count):
            client.cookies.clear()  # each request without a cookie starts a session of its own
            response = client.post(base + "/write")
            header = response.headers.get("set-cookie")
            if header:
                cookies.append(header.split(";", 1)[0])
    if distinct and len(set(cookies)) != count:
        raise SystemExit(f"expected {count} distinct sessions, got {len(set(cookies))}")
    return cookies


def bench(
    database_url: str,
    duration: float,
    rounds: int,
    sessions: int,
    connections: int,
    *,
    variants: list[str] = VARIANTS,
    scenarios: list[tuple[str, str, str, bool]] = SCENARIOS,
    pgbouncer: bool = False,
    gc: str = "",
) -> dict[str, dict[str, Result]]:
    if "starsessions" in variants:
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True, check=False)
    best: dict[str, dict[str, Result]] = {variant: {} for variant in variants}
    # Every app's server runs for the whole pass, and each route is measured app after app, round after
    # round (the order reversed every other round): the apps compared on a route are measured seconds
    # apart, not minutes, so that a slow spell of this shared machine falls on them alike.
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for variant in variants:
            servers[variant] = start_server(variant, database_url, pgbouncer=pgbouncer, gc=gc)
        cookies = {
            variant: make_sessions(base, sessions, distinct=variant != "starlette")
            if variant != "none"
            else []
            for variant, (_, base) in servers.items()
        }
        for label, method, path, with_cookie in scenarios:
            runs = [variant for variant in variants if label in ONLY_ROUTES.get(variant, (label,))]
            for round_number in range(rounds):
                for variant in runs if round_number % 2 == 0 else list(reversed(runs)):
                    base = servers[variant][1]
                    pool = cookies[variant] if with_cookie else []
                    run_wrk(base, method, path, pool, 1, connections)  # warm-up
                    result = measured_run(base, method, path, pool, duration, connections)
                    previous = best[variant].get(label)
                    if previous is None or result.rps > previous.rps:
                        best[variant][label] = result
                    where = " via PgBouncer" if pgbouncer else " gc.freeze()" if gc else ""
                    print(
                        f"round {round_number + 1} {variant:>13} {label:>5}{where}: {result.rps:8.0f} req/s "
                        f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms errors {result.errors}",
                        file=sys.stderr,
                    )
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(timeout=10)
    return best


def _optional(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


# (what, ours' route, the other app and its route, p99 rather than req/s, target, at least or at most)
TARGETS = [
    ("/read, ours ÷ floor", "read", "floor", "read", False, 1.4, True),
    ("/write, ours ÷ floor", "write", "floor", "write", False, 0.85, True),
    ("/noop with a session cookie, ours ÷ floor", "noop", "floor", "noop", False, 0.9, True),
    ("/noop without cookie, ours ÷ no middleware", "plain", "none", "plain", False, 0.9, True),
    ("/read, ours ÷ starsessions+Redis", "read", "starsessions", "read", False, 1.5, True),
    ("/read p99, ours ÷ floor", "read", "floor", "read", True, 1.5, False),
    ("/write p99, ours ÷ floor", "write", "floor", "write", True, 1.5, False),
]


def ratios(best: dict[str, dict[str, Result]]) -> list[tuple[str, float, float, bool]]:
    """(what, value, target, whether the target is a least) of each ratio whose apps this run ran (on
    MariaDB, only the floor and ours run)."""
    found = []
    for label, route, other, other_route, tail, target, at_least in TARGETS:
        if other in best and route in best.get("ours", {}) and other_route in best[other]:
            ours, theirs = best["ours"][route], best[other][other_route]
            value = ours.p99_ms / theirs.p99_ms if tail else ours.rps / theirs.rps
            found.append((label, value, target, at_least))
    return found


def report(best: dict[str, dict[str, Result]], args: argparse.Namespace) -> str:
    measured = [r for routes in best.values() for r in routes.values()]
    statements = any(r.statements_per_1000 is not None for r in measured)
    pauses = any(r.gc_max_pause_ms is not None for r in measured)
    extra_head = (" statements / 1,000 req |" if statements else "") + (
        " GC max pause ms |" if pauses else ""
    )
    lines = [
        "| app | route | req/s | p50 ms | p99 ms | errors |" + extra_head,
        "|---|---|---:|---:|---:|---:|" + "---:|" * (statements + pauses),
    ]
    for variant in [v for v in VARIANTS if v in best]:
        for label, *_ in SCENARIOS:
            if label not in best[variant]:
                continue
            r = best[variant][label]
            extra = (f" {_optional(r.statements_per_1000, ',.0f')} |" if statements else "") + (
                f" {_optional(r.gc_max_pause_ms, '.2f')} |" if pauses else ""
            )
            lines.append(
                f"| {variant} | /{label} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
                + extra
            )
    lines += ["", "| ratio (same run) | value | target | met |", "|---|---:|---:|---|"]
    for label, value, target, at_least in ratios(best):
        met = value >= target if at_least else value <= target
        bound = "≥" if at_least else "≤"
        lines.append(f"| {label} | {value:.2f} | {bound} {target:.2f} | {'yes' if met else 'no'} |")
    if "floor+imports" in best:
        # No targets: what is left of ours' tail once the floor's process holds the same imports, and
        # what those imports alone do to the floor's.
        lines += ["", "| ratio (same run), the floor holding ours' imports | value |", "|---|---:|"]
        routes = ONLY_ROUTES["floor+imports"]
        for numerator, denominator, label in [
            ("ours", "floor+imports", "ours ÷ floor with ours' imports"),
            ("floor+imports", "floor", "floor with ours' imports ÷ floor"),
        ]:
            for route in routes:
                value = best[numerator][route].p99_ms / best[denominator][route].p99_ms
                lines.append(f"| /{route} p99, {label} | {value:.2f} |")
    errors = sum(r.errors for routes in best.values() for r in routes.values())
    lines.append("")
    lines.append(
        f"wrk -t1 -c{args.connections}, {args.duration:g} s per route after a 1 s warm-up, best of "
        f"{args.rounds} rounds, {args.sessions} sessions per app; {errors} errors in all."
    )
    return "\n".join(lines)


FROZEN_TITLE = (
    "The same routes with `gc.collect(); gc.freeze()` at the end of the lifespan's start-up in every app "
    "(no middleware, the floor and ours), as [Deploying](deploying/index.md) suggests for the tail:"
)


def bench_pooled(
    plain_url: str, duration: float, rounds: int, sessions: int, connections: int
) -> dict[str, dict[str, Result]]:
    """Ours and the floor, /read and /write, through a PgBouncer in transaction mode of the run's own."""
    database = make_url(plain_url).database
    assert database is not None
    with in_front_of_test_server("transaction", POOLED_SERVER_CONNECTIONS) as bouncer:
        return bench(
            bouncer.dsn(database),
            duration,
            rounds,
            sessions,
            connections,
            variants=POOLED_VARIANTS,
            scenarios=POOLED_SCENARIOS,
            pgbouncer=True,
        )


def report_pooled(best: dict[str, dict[str, Result]], args: argparse.Namespace) -> str:
    """The rows through PgBouncer, and ours ÷ floor there."""
    lines = [
        "Through PgBouncer (transaction mode, "
        f"default_pool_size={POOLED_SERVER_CONNECTIONS}): ours with `?pgbouncer=true`, the floor with "
        "asyncpg's statement cache off.",
        "",
        "| app | route | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for variant in POOLED_VARIANTS:
        for label, *_ in POOLED_SCENARIOS:
            r = best[variant][label]
            lines.append(
                f"| {variant} via PgBouncer | /{label} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                f"| {r.errors} |"
            )
    lines += ["", "| ratio (same run, through PgBouncer) | value |", "|---|---:|"]
    for label, *_ in POOLED_SCENARIOS:
        ours, floor = best["ours"][label], best["floor"][label]
        lines.append(f"| /{label}, ours ÷ floor | {ours.rps / floor.rps:.2f} |")
        lines.append(f"| /{label} p99, ours ÷ floor | {ours.p99_ms / floor.p99_ms:.2f} |")
    lines += [
        "",
        f"wrk -t1 -c{args.connections}, {args.duration:g} s per route after a 1 s warm-up, best of "
        f"{args.rounds} rounds, {args.sessions} sessions per app.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--connections", type=int, default=32, help="wrk's -c")
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    parser.add_argument(
        "--pgbouncer-only", action="store_true", help="run only ours and the floor through PgBouncer"
    )
    parser.add_argument(
        "--database",
        choices=["postgresql", "mariadb"],
        default="postgresql",
        help="mariadb: only the floor and ours, on a scratch MariaDB database",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    measure = (args.duration, args.rounds, args.sessions, args.connections)
    if args.database == "mariadb":
        with mariadb_database("fps_bench") as plain_url:
            done = run_module("fastapi_prisma_session", "migrate", "--database-url", plain_url)
            if done.returncode:
                raise SystemExit(f"migrate failed:\n{done.stderr}")
            charted = bench(plain_url, *measure, variants=MARIADB_VARIANTS)
            text = report(charted, args)
        title = "Peer benchmark on MariaDB"
    else:
        with scratch_database("fps_bench") as plain_url:
            charted = {} if args.pgbouncer_only else bench(plain_url, *measure)
            parts = [] if args.pgbouncer_only else [report(charted, args)]
            if not args.pgbouncer_only:
                frozen = bench(plain_url, *measure, variants=FROZEN_VARIANTS, gc="freeze")
                parts.append(FROZEN_TITLE + "\n\n" + report(frozen, args))
            pooled = bench_pooled(plain_url, *measure)
            parts.append(report_pooled(pooled, args))
            charted = charted or pooled
        text = "\n\n".join(parts)
        title = "Through PgBouncer" if args.pgbouncer_only else "Peer benchmark"
    print(text)
    if args.record:
        command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
        peer_charts.record(title, command, text, charted, ratios(charted))


if __name__ == "__main__":
    main()
