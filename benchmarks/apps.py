"""The same three routes behind each session middleware the benchmark compares.

`BENCH_VARIANT` picks the middleware: none, starlette, starsessions, floor or ours; `floor+imports` is the
floor with ours' imports loaded and unused.
`BENCH_DATABASE_URL` is the database (plain postgresql://, or mysql:// for MariaDB), `BENCH_REDIS_URL` the
Redis server. With `BENCH_PGBOUNCER=1` that URL is a PgBouncer in transaction mode: ours gets Prisma's
`?pgbouncer=true`, the floor turns asyncpg's statement cache off (what asyncpg's documentation says to do
there).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SECRET = "a santa at nasa"
VARIANT = os.environ.get("BENCH_VARIANT", "ours")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PGBOUNCER = os.environ.get("BENCH_PGBOUNCER") == "1"


async def ensure_loaded(request: Request) -> None:
    """What a route that uses the session calls first: starsessions, the floor and ours load on demand,
    so /noop costs them no query even with a session cookie."""


def middleware() -> list[Middleware]:
    global ensure_loaded
    if VARIANT == "none":
        return []
    if VARIANT == "starlette":
        from starlette.middleware.sessions import SessionMiddleware

        return [Middleware(SessionMiddleware, secret_key=SECRET, https_only=False)]
    if VARIANT == "starsessions":
        from redis.asyncio import Redis
        from starsessions import SessionMiddleware as StarSessions
        from starsessions import load_session
        from starsessions.stores.redis import RedisStore

        ensure_loaded = load_session
        store = RedisStore(connection=Redis.from_url(REDIS_URL))
        return [Middleware(StarSessions, store=store, lifetime=7 * 24 * 3600, cookie_https_only=False)]
    if VARIANT in ("floor", "floor+imports"):
        from benchmarks.floor import FloorSessionMiddleware

        if VARIANT == "floor+imports":
            # The floor in a process that has imported what ours imports, used for nothing: every full
            # garbage collection walks their objects, as it does ours'.
            import fastapi_prisma_session  # noqa: F401

        async def load_floor(request: Request) -> None:
            await request.scope["load_session"]()

        ensure_loaded = load_floor

        pool_options = {"statement_cache_size": 0} if PGBOUNCER else {}
        return [
            Middleware(FloorSessionMiddleware, dsn=DATABASE_URL, secret=SECRET, pool_options=pool_options)
        ]
    if VARIANT == "ours":
        from fastapi_prisma_session import PrismaSessionStore
        from fastapi_prisma_session import SessionMiddleware as Ours
        from fastapi_prisma_session import load_session as load_ours

        ensure_loaded = load_ours

        url = DATABASE_URL + "?pgbouncer=true" if PGBOUNCER else DATABASE_URL
        store = PrismaSessionStore(url, db_record_id_is_session_id=True)
        statistics.append(store.statistics.as_dict)
        return [Middleware(Ours, store=store, secret=SECRET, max_age=7 * 24 * 3600, secure=False)]
    raise SystemExit(f"unknown BENCH_VARIANT {VARIANT!r}")


# What the benchmark reads between runs: ours' statement counters, and every variant's collector pauses.
statistics: list[Callable[[], dict[str, int]]] = []
gc_pauses: list[float] = []
_gc_started = [0.0]


def _time_collections(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        gc_pauses.append(time.perf_counter() - _gc_started[0])


gc.callbacks.append(_time_collections)


async def measurements(request: Request) -> JSONResponse:
    """The statements sent so far (ours only) and the collector's pauses since the last call, which
    clears them."""
    pauses = list(gc_pauses)
    gc_pauses.clear()
    counters = statistics[0]() if statistics else None
    return JSONResponse({"statements": counters, "gc_max_pause_ms": max(pauses, default=0.0) * 1000})


def session_of(request: Request) -> Any:
    return request.scope.get("session", {})


async def noop(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def read(request: Request) -> JSONResponse:
    await ensure_loaded(request)
    return JSONResponse({"n": session_of(request).get("n")})


async def write(request: Request) -> JSONResponse:
    await ensure_loaded(request)
    session = session_of(request)
    session["n"] = session.get("n", 0) + 1
    return JSONResponse({"n": session["n"]})


_middleware = middleware()
# To measure what garbage collection adds to the tail, BENCH_GC is a comma-separated list: off disables the
# collector, freeze calls gc.collect() and gc.freeze() at the lifespan's start-up, and log
# writes each collection's time, generation and pause (seconds) to the file BENCH_GC_LOG as the server shuts
# down (the lifespan's end: uvicorn ends its process by the signal it caught, so atexit does not run).
write_log: Callable[[], None] | None = None
GC = set(os.environ.get("BENCH_GC", "").split(","))
if GC & {"off", "freeze", "log"}:
    if "log" in GC:
        pauses: list[tuple[float, int, float]] = []
        started: list[float] = [0.0]

        def timed(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append((time.time(), info["generation"], time.perf_counter() - started[0]))

        def write_log() -> None:
            with open(os.environ["BENCH_GC_LOG"], "w") as log:
                log.writelines(f"{when:.3f} {generation} {pause:.6f}\n" for when, generation, pause in pauses)

        gc.callbacks.append(timed)
    if "off" in GC:
        gc.disable()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if "freeze" in GC:
        gc.collect()
        gc.freeze()
    yield
    if write_log is not None:
        write_log()


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/noop", noop),
        Route("/read", read),
        Route("/write", write, methods=["GET", "POST"]),
        Route("/_measurements", measurements),
    ],
    middleware=_middleware,
)
