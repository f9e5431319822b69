"""The benchmark page, docs/benchmarks.md: the latest run of each benchmark, one section each, with the
charts the run drew in docs/benchmarks/. A new run of a benchmark replaces its section (and its charts)
and leaves the others alone; earlier runs are in git's history."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import ROOT

PAGE = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

The latest run of each of the repository's benchmarks, written by the benchmark scripts themselves
(`--record`); each run replaces its own section, and earlier runs are in git's history. The machine is
shared: compare figures within one section (one run), not across sections.

- `python -m benchmarks.run`: the peer benchmark, ours against the hand-written floor and other
  session middleware, under wrk.
- `python -m benchmarks.scale`: the store on tables of 100,000 rows and up; with `--case mass-expiry`,
  the prune after one UPDATE expired most of the table.
"""
# The order sections take on the page, whichever ran first; others go after these, in the order they came.
ORDER = (
    "peer",
    "peer-mariadb",
    "pgbouncer",
    "mass-expiry-postgresql",
    "mass-expiry-mariadb",
    "mass-expiry-sqlite",
    "scale",
    "scale-mariadb",
)


def heading(title: str, command: str) -> str:
    """A section's heading and the line that says when, where and how it ran."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"## {title}\n\n{stamp}. Machine: {machine()}. Command: `{command}`.\n\n"


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def _marks(key: str) -> tuple[str, str]:
    return f"<!-- benchmark:{key} -->", f"<!-- /benchmark:{key} -->"


def sections(text: str) -> dict[str, str]:
    """The page's sections by key, each with its markers."""
    found = re.finditer(r"<!-- benchmark:([\w.-]+) -->.*?<!-- /benchmark:\1 -->", text, re.S)
    return {match.group(1): match.group(0) for match in found}


def render(existing: str, key: str, body: str) -> str:
    """The page `existing` with the section `key` holding `body` (replaced, or added in its place)."""
    start, end = _marks(key)
    kept = sections(existing)
    kept[key] = f"{start}\n{body.strip()}\n{end}"
    known = [name for name in ORDER if name in kept] + [name for name in kept if name not in ORDER]
    return HEADER + "\n" + "\n\n".join(kept[name] for name in known) + "\n"


def record(
    key: str, body: str, charts: Mapping[str, str], page: Path | None = None, *, folder: Path | None = None
) -> Path:
    """Write the section `key` of `page` (docs/benchmarks.md unless given) and its `charts` (file stem ->
    SVG text), in `folder` (the page's own `benchmarks/` folder unless given), removing the section's
    charts of an earlier run first. `body` refers to each chart as `{chart:stem}`, which becomes its
    relative link."""
    page = page or PAGE
    folder = folder or page.parent / page.stem
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{key}--*.svg"):
        old.unlink()
    for stem, svg in charts.items():
        (folder / f"{key}--{stem}.svg").write_text(svg)
    relative = folder.relative_to(page.parent).as_posix()
    body = re.sub(r"\{chart:([\w.-]+)\}", lambda m: f"{relative}/{key}--{m.group(1)}.svg", body)
    existing = page.read_text() if page.exists() else ""
    page.write_text(render(existing, key, body))
    return page
