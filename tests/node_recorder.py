"""The Node system in tests/interop/recorder: installing it once, and reading sessions with it.

The recorder is express 5 + express-session 1.19 + prisma-session-store 3.1.21 on Prisma 7 with its
driver adapters (its README says more). Its `node_modules` is not in the repository: `install()` runs
`npm ci` there when it is missing or was installed from another package-lock.json, and generates the
Prisma clients (offline); a stamp file in `node_modules` remembers the install, so it happens once.
`.ci/run` installs up front, so that the tests do not spend the three minutes it takes:

    python -m tests.node_recorder

`read_sessions()` runs `read.mjs` as a child process, by pid: one process reads several cookies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import IN_CI, ROOT

RECORDER = ROOT / "tests" / "interop" / "recorder"
FIXTURES = ROOT / "tests" / "interop" / "fixtures"
STAMP = RECORDER / "node_modules" / ".fastapi-prisma-session-install"
# Held while installing: a second installer (a test beside `.ci/run`'s) waits, then finds it done.
LOCK = RECORDER / ".install.lock"
# read.mjs's --database for a SQLAlchemy backend name.
READER_DATABASES = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mariadb"}
# npm ci compiles better-sqlite3 (about 3 minutes on 2 cores); a read takes a second or two.
INSTALL_TIMEOUT = 900.0
READ_TIMEOUT = 120.0
# Where node-gyp finds Node's headers without downloading them (Debian's nodejs-dev / libnode-dev).
LOCAL_NODE_HEADERS = Path("/usr/include/node/node.h")


def tools() -> tuple[str, str] | None:
    """The `node` and `npm` programs, or None when either is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def _wanted_stamp(node: str) -> str:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    lock = hashlib.sha256((RECORDER / "package-lock.json").read_bytes()).hexdigest()
    return f"{version.strip()} {lock}\n"


def _run(command: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `command` in the recorder as a child process: its exit status, stdout and stderr. One that
    outlives `timeout` is killed, by its pid, and raises RuntimeError."""
    process = subprocess.Popen(
        command, cwd=RECORDER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError(f"{' '.join(command[:2])} did not finish within {timeout:g} s") from None
    return process.returncode, stdout, stderr


def _checked(command: Sequence[str], timeout: float, env: dict[str, str]) -> None:
    status, stdout, stderr = _run(command, timeout, env)
    if status:
        raise RuntimeError(f"{' '.join(command)} failed ({status}):\n{stdout}{stderr}")


def install() -> bool:
    """`npm ci` and the Prisma clients in the recorder, unless this package-lock.json is installed
    already. Returns whether it installed. Raises RuntimeError when node or npm is missing or fails."""
    found = tools()
    if found is None:
        raise RuntimeError("node and npm are needed for the interop tests (Node 20.19+, 22.12+ or 24+)")
    node, npm = found
    wanted = _wanted_stamp(node)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.is_file() and STAMP.read_text() == wanted:
            return False
        env = dict(os.environ)
        if "npm_config_nodedir" not in env and LOCAL_NODE_HEADERS.is_file():
            env["npm_config_nodedir"] = str(LOCAL_NODE_HEADERS.parents[2])
        _checked([npm, "ci", "--no-audit", "--no-fund"], INSTALL_TIMEOUT, env)
        _checked([node, "generate.mjs"], READ_TIMEOUT, env)
        STAMP.write_text(wanted)
        return True


def require_node() -> None:
    """Install the recorder if need be; without node and npm, skip the test (fail it under CI=true)."""
    if tools() is None:
        message = "node and npm are not installed; the interop tests need them"
        if IN_CI:
            pytest.fail(f"{message} (CI=true)")
        pytest.skip(message)
    install()


def reader_database(url: str) -> str:
    """read.mjs's --database for a SQLAlchemy URL: sqlite, postgresql or mariadb."""
    return READER_DATABASES[make_url(url).get_backend_name()]


def recordings(database: str) -> dict[str, dict[str, Any]]:
    """The fixtures record.mjs wrote for `database` (read.mjs's name), by file name: on SQLite one per
    DateTime encoding of the adapter."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(FIXTURES.glob(f"node-{database}*.json"))
    }


def read_sessions(
    url: str, cookies: Sequence[str], *options: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Run read.mjs once against the database at `url` for each `Cookie` header in `cookies`: its exit
    status (0 all found, 3 one was not) and what it printed for each cookie, in order. `env` adds to
    the environment it runs in."""
    node = shutil.which("node") or "node"
    command = [node, "read.mjs", "--database", reader_database(url), "--url", url, *options]
    for cookie in cookies:
        command += ["--cookie", cookie]
    status, stdout, stderr = _run(command, READ_TIMEOUT, {**os.environ, **env} if env else None)
    if status not in (0, 3):
        raise AssertionError(f"read.mjs failed ({status}):\n{stderr}")
    return status, [json.loads(line) for line in stdout.splitlines()]


if __name__ == "__main__":
    try:
        did = install()
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print("installed the Node recorder" if did else "the Node recorder is installed already")
