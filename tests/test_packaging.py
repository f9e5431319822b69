"""The package as it ships: `python -m build` makes an sdist and a wheel, and the wheel works once installed.

How, and what that leaves out:

- The build runs on a copy of the repository's files (tracked ones, plus untracked ones git does not
  ignore) in a temporary folder, so setuptools' `build/` and `*.egg-info` never land in the work tree; the
  fixture (`built`, in conftest.py, shared with the Quick start's test) also checks that `git status` is
  the same before and after. `python -m build` makes the sdist,
  then the wheel from the unpacked sdist, so the wheel also shows that the sdist is complete. Its isolated
  build environment installs `build-system.requires` (setuptools) from the package index or pip's cache,
  as any install from source does.
- The wheel goes into a fresh venv with `pip install --no-deps --no-index`: nothing is downloaded. The
  dependencies come from the running interpreter's site-packages, through a `.pth` file in the new venv
  that holds that folder's path. A path line puts the folder on `sys.path` after the venv's own
  site-packages, and the `.pth` files inside it are not run, so the project's editable install there (an
  import hook installed by a `.pth` file) stays inert. The smoke test checks through `__file__` that the
  wheel's copy is the one imported, and `__version__` comes from the wheel's own metadata, found first.
  Then `python -I -m fastapi_prisma_session migrate` in an empty folder creates the table from the
  revisions the wheel ships, as a pip user's first command.
- The trade-off: the dependencies are the versions this environment has, not the ones pip would resolve
  from the wheel's metadata. A clean install with its dependencies from the index is a slower check, by
  hand: `python -m venv v && v/bin/pip install <the wheel> httpx` (httpx for the script), then SMOKE.
"""

from __future__ import annotations

import json
import sqlite3
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

from tests.helpers import Built, install_wheel, run_checked

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION: str = PYPROJECT["version"]
PACKAGE = "fastapi_prisma_session"
DIST_NAME = f"{PACKAGE}-{VERSION}"
MIGRATIONS = [
    f"{PACKAGE}/migrations/env.py",
    f"{PACKAGE}/migrations/script.py.mako",
    f"{PACKAGE}/migrations/versions/0001_create_session_table.py",
]


def test_the_build_makes_an_sdist_and_a_wheel_without_warnings(built: Built) -> None:
    assert built.sdist.is_file(), built.log
    assert built.wheel.is_file(), built.log
    # Problems in pyproject.toml or MANIFEST.in show as "WARNING ..." (build relays setuptools' warnings),
    # "...Warning:" or "warning: ...". Only the note that byte-compiling is off (PYTHONDONTWRITEBYTECODE
    # set by the caller) is about the environment rather than the project.
    warnings = [
        line
        for line in built.log.splitlines()
        if "warning" in line.lower() and "byte-compiling is disabled" not in line
    ]
    assert not warnings, "\n".join(warnings)


def test_the_wheel_holds_the_package_and_its_metadata_only(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"{DIST_NAME}.dist-info/METADATA").decode()
    assert f"{PACKAGE}/py.typed" in names
    assert f"{PACKAGE}/__init__.py" in names
    assert set(MIGRATIONS) <= set(names)  # the revisions `migrate` runs from an installed copy
    assert f"{DIST_NAME}.dist-info/licenses/LICENSE" in names
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {PACKAGE, f"{DIST_NAME}.dist-info"}  # no tests/, benchmarks/, demo/, alembic/
    assert f"Version: {VERSION}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
    assert "Classifier: Typing :: Typed\n" in metadata


def test_the_sdist_holds_the_docs_and_the_license(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.removeprefix(f"{DIST_NAME}/") for name in sdist.getnames()}
    assert {
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "pyproject.toml",
        f"{PACKAGE}/py.typed",
        *MIGRATIONS,
    } <= names
    assert not any(name.startswith(("tests/", "benchmarks/", "demo/")) for name in names)


SMOKE = """
    import asyncio
    import json
    import sys
    from pathlib import Path

    import httpx
    from fastapi import FastAPI

    import fastapi_prisma_session
    from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware


    async def main(folder: Path) -> None:
        store = PrismaSessionStore(f"sqlite+aiosqlite:///{folder / 's.db'}")
        await store.create_table()
        await store.set("abc", {"cookie": {"originalMaxAge": 1000, "expires": None}, "n": 1})
        stored = await store.get("abc")
        assert stored is not None and stored["n"] == 1, stored

        app = FastAPI()
        app.add_middleware(SessionMiddleware, store=store, secret="a santa at nasa")

        @app.get("/")
        async def index(session: SessionDep) -> dict[str, int]:
            session["views"] = session.get("views", 0) + 1
            return {"views": session["views"]}

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            views = [(await client.get("/")).json()["views"] for _ in range(2)]
            assert views == [1, 2], views
            assert "connect.sid" in client.cookies
        assert await store.length() == 2  # "abc" and the client's session
        await store.shutdown()
        print(json.dumps({"version": fastapi_prisma_session.__version__,
                          "file": fastapi_prisma_session.__file__}))


    asyncio.run(main(Path(sys.argv[1])))
"""


def test_the_installed_wheel_works(built: Built, tmp_path: Path) -> None:
    python, site_packages = install_wheel(built.wheel, tmp_path / "venv")
    script = tmp_path / "smoke.py"
    script.write_text(textwrap.dedent(SMOKE))

    # -I: no PYTHON* variables, no user site, and neither this folder nor the repository on sys.path.
    smoke = run_checked([str(python), "-I", str(script), str(tmp_path)], tmp_path, timeout=60)
    found = json.loads(smoke.stdout.strip().splitlines()[-1])
    assert found["version"] == VERSION
    assert Path(found["file"]).is_relative_to(site_packages), found["file"]

    # A pip user's first command, in a folder of their own: the wheel's revisions make the table.
    project = tmp_path / "project"
    project.mkdir()
    command = [str(python), "-I", "-m", PACKAGE, "migrate", "--database-url", f"sqlite:///{project / 'x.db'}"]
    migrated = run_checked(command, project, timeout=60)
    assert 'done: the session table "Session" is at head' in migrated.stdout
    with sqlite3.connect(project / "x.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"Session", "alembic_version_fastapi_prisma_session"}
