"""The test app (tests/routes.py) as a module uvicorn can serve, on the store that the environment
describes: `FPS_DATABASE_URL`, and `FPS_STORE_OPTIONS` (JSON keyword arguments for the store). Used to
run real HTTP traffic, from several workers, through a pooler (tests/test_pgbouncer.py)."""

from __future__ import annotations

import json
import os

from fastapi import Request

from fastapi_prisma_session import PrismaSessionStore
from tests.helpers import SECRET
from tests.routes import build_app

store = PrismaSessionStore(
    os.environ["FPS_DATABASE_URL"], **json.loads(os.environ.get("FPS_STORE_OPTIONS", "{}"))
)
app = build_app(store, secret=SECRET)


@app.post("/logout-everywhere")
async def logout_everywhere(request: Request, user: str) -> dict[str, int]:
    """`destroy_all(user=…)`: every session of that user ends."""
    return {"ended": await request.app.state.store.destroy_all(user=user)}
