"""The console script `fastapi-prisma-session` that pip installs from the wheel ([project.scripts]),
run from the new venv's bin as a pip user would, in a folder of their own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers import Built, install_wheel, run_checked

# The wheel the `built` fixture makes once, shared with test_packaging.py and test_quick_start.py.
pytestmark = pytest.mark.xdist_group("built")


def test_the_wheel_installs_a_console_script_that_migrates(built: Built, tmp_path: Path) -> None:
    python, _ = install_wheel(built.wheel, tmp_path / "venv")
    script = python.parent / "fastapi-prisma-session"
    assert script.is_file()
    project = tmp_path / "project"
    project.mkdir()

    helped = run_checked([str(script), "--help"], project, timeout=60)
    assert helped.stdout.startswith("usage: fastapi-prisma-session [-h] COMMAND ...")
    assert "migrate" in helped.stdout
    assert "prune" in helped.stdout

    url = f"sqlite:///{project / 'x.db'}"
    migrated = run_checked([str(script), "migrate", "--database-url", url, "--user-key", "user_id"], project)
    assert 'done: the session table "Session" is at head' in migrated.stdout
    assert 'built index "Session_data_user_id_idx" on "Session" (0 rows)' in migrated.stdout
    pruned = run_checked([str(script), "prune", "--database-url", url], project)
    assert 'removed 0 expired sessions from "Session"' in pruned.stdout
    with sqlite3.connect(project / "x.db") as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"Session", "Session_data_user_id_idx"} <= names
