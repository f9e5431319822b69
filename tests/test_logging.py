"""What the package logs, at which level, under which logger, with session ids redacted."""

from __future__ import annotations

import logging

import pytest

from fastapi_prisma_session import PrismaSessionStore
from tests.helpers import client_for, make_app


async def test_lifecycle_events_are_logged_with_redacted_ids(
    store: PrismaSessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="fastapi_prisma_session"):
        async with client_for(make_app(store)) as client:
            sid = (await client.post("/write")).json()["id"]
            new = (await client.post("/login")).json()["id"]
            await client.delete("/session")
            await client.get("/read", headers={"cookie": "connect.sid=s%3Aforged.bad"})
    ours = [r for r in caplog.records if r.name.startswith("fastapi_prisma_session")]
    lines = [(r.name, r.levelname, r.getMessage()) for r in ours]
    logger = "fastapi_prisma_session.middleware"
    assert (logger, "DEBUG", f"created session {sid[:6]}…") in lines
    assert (logger, "INFO", f"regenerated session {sid[:6]}… as {new[:6]}…") in lines
    assert (logger, "INFO", f"destroyed session {new[:6]}…") in lines
    assert (logger, "INFO", "rejected 1 session cookie(s) without a valid signature from 127.0.0.1") in lines
    text = "\n".join(message for *_, message in lines)
    assert sid not in text
    assert new not in text


def test_the_package_never_prints() -> None:
    import ast
    import pathlib

    def prints(path: pathlib.Path) -> bool:
        calls = (node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call))
        return any(isinstance(call.func, ast.Name) and call.func.id == "print" for call in calls)

    package = pathlib.Path(__file__).resolve().parents[1] / "fastapi_prisma_session"
    offenders = [path.name for path in package.rglob("*.py") if path.name != "cli.py" and prints(path)]
    assert offenders == []  # the CLI prints its report; everything else logs (a message may name print)
