"""Two app processes on one PostgreSQL database share sessions: one logs in, the other sees it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import scratch_database, serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def migrated_postgres(postgres_url: str) -> Iterator[str]:
    with scratch_database("fps_procs") as url:
        yield url


@pytest.fixture
def two_servers(migrated_postgres: str) -> Iterator[list[str]]:
    env = {"DATABASE_URL": migrated_postgres}
    with serve("demo.app:app", env) as first, serve("demo.app:app", env) as second:
        yield [first, second]


def csrf_token_in(page: httpx.Response) -> str:
    """The token the demo's forms carry, which its POST routes require."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_sessions_are_shared_across_processes(two_servers: list[str]) -> None:
    first, second = two_servers
    with httpx.Client(follow_redirects=True) as client:
        page = client.get(first + "/")
        assert "<strong>1</strong>" in page.text
        page = client.post(first + "/login", data={"username": "grace", "csrf_token": csrf_token_in(page)})
        assert "Logged in as <strong>grace</strong>" in page.text

        page = client.get(second + "/")  # the other process reads and changes it
        assert "Logged in as <strong>grace</strong>" in page.text
        assert "<strong>3</strong>" in page.text

        page = client.get(first + "/")
        assert "<strong>4</strong>" in page.text

        old_cookie = client.cookies["connect.sid"]
        client.post(
            second + "/logout", data={"csrf_token": csrf_token_in(page)}
        )  # destroyed by one process, gone in the other
        page = client.get(first + "/", headers={"cookie": f"connect.sid={old_cookie}"})
        assert "Not logged in" in page.text
        assert "<strong>1</strong>" in page.text
