"""The Quick start (README.md) and Getting started (docs/getting-started.md), each run top to bottom as a
newcomer pastes it, in an empty folder.

- Install: the `pip install` line (README.md's, and the docs' home page's) names the GitHub repository,
  which a test cannot reach offline. The test installs what that line would: the wheel `python -m build`
  makes of this checkout (the `built` fixture), into a fresh venv, with this environment's packages
  (uvicorn among them) as its dependencies (`install_wheel`; tests/test_packaging.py says what that
  leaves out).
- `main.py` is the page's blocks that start with `# main.py`.
- The commands of the page's "Run it" run as given: `fastapi-prisma-session migrate ...` with the script
  the wheel installed in the venv, and `uvicorn main:app` as `python -m uvicorn main:app` on a free port
  instead of 8000, stopped by its pid at the end.
- Each curl line runs as given, with that port, and prints what its comment says.
"""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.helpers import DOCS, README, Built, doc_blocks, doc_file, install_wheel, run_checked, serve

# Both modules use the one wheel the `built` fixture makes: one xdist worker runs them, and builds it once.
pytestmark = pytest.mark.xdist_group("built")

INSTALL = (
    'pip install "fastapi-prisma-session @ git+https://github.com/fastapi-prisma-session/fastapi-prisma-session"'
    " uvicorn\n"
)
README_PORT = "127.0.0.1:8000"


def test_both_install_lines_are_the_one_this_test_follows() -> None:
    assert doc_blocks(README, "## Install")[0] == ("sh", INSTALL)
    assert doc_blocks(DOCS / "index.md", "## Install")[0] == ("sh", INSTALL)


# Each page, its "Run it" heading, and how many curl lines it gives.
PAGES = [(README, "### Run it", 2), (DOCS / "getting-started.md", "## Run it", 6)]


@pytest.mark.parametrize(("page", "heading", "curls"), PAGES, ids=["README", "getting-started"])
def test_the_quick_start_runs_as_pasted(
    built: Built, tmp_path: Path, page: Path, heading: str, curls: int
) -> None:
    python, _ = install_wheel(built.wheel, tmp_path / "venv")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "main.py").write_text(doc_file(page, "main.py"))

    (_, server_commands), (_, curl_lines) = doc_blocks(page, heading)
    migrate, start = server_commands.splitlines()
    program, *arguments = shlex.split(migrate)
    assert program == "fastapi-prisma-session"  # the console script the wheel installs
    run_checked([str(python.parent / program), *arguments], folder, timeout=60)
    with sqlite3.connect(folder / "sessions.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "Session" in tables

    program, app = shlex.split(start)
    assert program == "uvicorn"
    calls = [line.split("  # ") for line in curl_lines.splitlines()]
    assert len(calls) == curls
    with serve(app, {}, python=python, cwd=folder) as base:
        for command, expected in calls:
            argv = [word.replace(f"http://{README_PORT}", base) for word in shlex.split(command)]
            assert argv[0] == "curl"
            done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            assert (done.stdout, command) == (expected.strip(), command)
    with sqlite3.connect(folder / "sessions.db") as conn:
        # README: the visitor's row. Getting started: the log-in replaced it, the log-out deleted it, and
        # the last request only read a new, empty session, which is not stored.
        assert conn.execute('SELECT count(*) FROM "Session"').fetchone() == ((1,) if page == README else (0,))
    conn.close()
