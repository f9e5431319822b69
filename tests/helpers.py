"""Direct table access for tests: what is really stored, written without going through the store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table

ROOT = Path(__file__).resolve().parents[1]


async def rows(engine: AsyncEngine, table_name: str = "Session") -> dict[str, dict[str, Any]]:
    """Every row by sid, with `data` as stored (text) and `id`, `expires_at`."""
    table = session_table(table_name)
    async with engine.connect() as conn:
        result = await conn.execute(select(table))
        return {row.sid: {"id": row.id, "data": row.data, "expires_at": row.expiresAt} for row in result}


async def insert_row(
    engine: AsyncEngine,
    sid: str,
    data: str | dict[str, Any],
    expires_at: datetime | None = None,
    table_name: str = "Session",
) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    async with engine.begin() as conn:
        await conn.execute(
            insert(session_table(table_name)).values(
                id=sid, sid=sid, data=text, expiresAt=expires_at or utcnow() + timedelta(days=1)
            )
        )


def close_to(moment: datetime, expected: datetime, seconds: float = 5) -> bool:
    return abs((moment - expected).total_seconds()) <= seconds


async def shift_expiry(engine: AsyncEngine, sid: str, by: timedelta, table_name: str = "Session") -> None:
    """Move a row's expiresAt, as if it had been written earlier (by < 0) or later."""
    table = session_table(table_name)
    async with engine.begin() as conn:
        current = (await conn.execute(select(table.c.expiresAt).where(table.c.sid == sid))).scalar_one()
        await conn.execute(update(table).where(table.c.sid == sid).values(expiresAt=current + by))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: str, env: dict[str, str], ready_path: str = "/docs") -> Iterator[str]:
    """Run `uvicorn app` in its own process on a free port; yields its base URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + ready_path, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, f"{app} exited"
                assert time.monotonic() < deadline, f"{app} did not start"
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
