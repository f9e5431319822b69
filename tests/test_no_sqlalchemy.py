"""A serving process never imports SQLAlchemy, SQLModel or Alembic: it builds the store and the middleware,
serves requests that load, write, touch and end sessions, and prunes, on SQLite and on PostgreSQL. The
table is made beforehand (with SQLAlchemy, in this test's process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_prisma_session import PrismaSessionStore
from tests.helpers import free_port, scratch_database

SERVER = """
import asyncio, json, sys

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware, load_session

store = PrismaSessionStore(sys.argv[1], table_name="no_sqlalchemy")


async def write(request: Request) -> JSONResponse:
    session = await load_session(request)
    session["n"] = session.get("n", 0) + 1
    return JSONResponse({"n": session["n"]})


async def logout(request: Request) -> JSONResponse:
    await (await load_session(request)).destroy()
    return JSONResponse({})


async def noop(request: Request) -> JSONResponse:
    return JSONResponse({})


app = Starlette(
    routes=[Route("/write", write), Route("/logout", logout), Route("/noop", noop)],
    middleware=[Middleware(SessionMiddleware, store=store, secret="a" * 32, secure=False)],
)


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        counts = [(await client.get("/write")).json()["n"] for _ in range(3)]
        await client.get("/noop")
        others = []
        for _ in range(20):
            client.cookies.clear()
            others.append((await client.get("/write")).json()["n"])
        await client.get("/logout")
    pruned = await store.prune()
    await store.shutdown()
    loaded = [name for name in ("sqlalchemy", "sqlmodel", "alembic") if name in sys.modules]
    print(json.dumps({"counts": counts, "others": others, "pruned": pruned, "loaded": loaded}))


asyncio.run(main())
"""


async def made(url: str) -> None:
    maker = PrismaSessionStore(url, table_name="no_sqlalchemy")
    await maker.create_table()
    await maker.shutdown()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_serving_process_imports_no_sqlalchemy(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'sessions.db'}"
        else:
            request.getfixturevalue("postgres_url")  # the server is there (under CI=true, or fail)
            # A database of its own: a table left in the run's shared one would be drift to the tests
            # that compare that database with the package's migrations.
            url = stack.enter_context(scratch_database("fps_no_sqlalchemy", migrate=False))
        serve_and_check(url, tmp_path)


def serve_and_check(url: str, tmp_path: Path) -> None:
    asyncio.run(made(url))
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    done = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["counts"] == [1, 2, 3]
    assert report["others"] == [1] * 20
    assert report["pruned"] == 0
    assert report["loaded"] == []


UNREACHABLE = """
import asyncio, json, logging, sys

from starlette.applications import Starlette
from starlette.middleware import Middleware

from fastapi_prisma_session import PrismaSessionStore, SessionMiddleware

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
store = PrismaSessionStore(sys.argv[1], operation_timeout=1)
app = Starlette(middleware=[Middleware(SessionMiddleware, store=store, secret="a" * 32)])


async def main() -> None:
    messages = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        messages.put_nowait({"type": kind})
    sent = []

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, messages.get, send)
    loaded = [name for name in ("sqlalchemy", "sqlmodel", "alembic") if name in sys.modules]
    print(json.dumps({"sent": sent, "loaded": loaded}))


asyncio.run(main())
"""


def test_starting_without_the_database_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """The warning that names the unreachable database is written from the store's own URL."""
    script = tmp_path / "unreachable.py"
    script.write_text(UNREACHABLE)
    url = f"postgresql://someone:secret@127.0.0.1:{free_port()}/sessions"
    done = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert report["loaded"] == []
    assert "postgresql+asyncpg://someone:***@127.0.0.1" in done.stderr
    assert "secret" not in done.stderr
