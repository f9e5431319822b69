"""The README's Quick start, run top to bottom as a newcomer pastes it, in an empty folder.

- Install: the README's `pip install` line names the GitHub repository, which a test cannot reach
  offline. The test installs what that line would: the wheel `python -m build` makes of this checkout
  (the `built` fixture), into a fresh venv, with this environment's packages (uvicorn among them) as its
  dependencies (`install_wheel`; tests/test_packaging.py says what that leaves out).
- `main.py` is the README's blocks that start with `# main.py`.
- The commands of "Run it" run as given, with the venv's python: `python -m fastapi_prisma_session
  migrate ...` as it is, and `uvicorn main:app` as `python -m uvicorn main:app` on a free port instead
  of 8000, stopped by its pid at the end.
- Each curl line runs as given, with that port, and prints what its comment says.
"""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
from pathlib import Path

from tests.helpers import Built, install_wheel, readme_blocks, readme_file, run_checked, serve

INSTALL = (
    'pip install "fastapi-prisma-session @ git+https://github.com/fastapi-prisma-session/fastapi-prisma-session"'
    " uvicorn\n"
)
README_PORT = "127.0.0.1:8000"


def test_the_quick_start_runs_as_pasted(built: Built, tmp_path: Path) -> None:
    assert readme_blocks("## Quick start")[0] == ("sh", INSTALL)
    python, _ = install_wheel(built.wheel, tmp_path / "venv")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "main.py").write_text(readme_file("main.py"))

    (_, server_commands), (_, curl_lines) = readme_blocks("### Run it")
    migrate, start = server_commands.splitlines()
    program, *arguments = shlex.split(migrate)
    assert program == "python"
    run_checked([str(python), *arguments], folder, timeout=60)
    with sqlite3.connect(folder / "sessions.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "Session" in tables

    program, app = shlex.split(start)
    assert program == "uvicorn"
    calls = [line.split("  # ") for line in curl_lines.splitlines()]
    assert len(calls) == 6
    with serve(app, {}, python=python, cwd=folder) as base:
        for command, expected in calls:
            argv = [word.replace(f"http://{README_PORT}", base) for word in shlex.split(command)]
            assert argv[0] == "curl"
            done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            assert (done.stdout, command) == (expected.strip(), command)
    with sqlite3.connect(folder / "sessions.db") as conn:
        # The log-in replaced the visitor's row, the log-out deleted it, and the last request only read
        # a new, empty session, which is not stored.
        assert conn.execute('SELECT count(*) FROM "Session"').fetchone() == (0,)
    conn.close()
