"""Direct table access for tests: what is really stored, written without going through the store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.store import utcnow


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
