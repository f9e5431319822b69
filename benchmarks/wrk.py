"""Driving wrk against one app, and reading what wrk and the app measured during the run."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The database's statements per 1,000 requests, and the longest garbage-collector pause in the app's
    #: process (ms), where the run measured them (optional columns and charts of the report).
    statements_per_1000: float | None = None
    gc_max_pause_ms: float | None = None
    requests: int = 0


LUA = """
local cookies = {%s}
local i = 0
request = function()
  i = i + 1
  if #cookies == 0 then return wrk.format("%s", "%s") end
  return wrk.format("%s", "%s", {["Cookie"] = cookies[(i %% #cookies) + 1]})
end
"""


def run_wrk(
    base: str, method: str, path: str, cookies: list[str], duration: float, connections: int
) -> Result:
    quoted = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in cookies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % (quoted, method, path, method, path))
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", script.name, base]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    count = int(errors.group(1)) if errors else 0
    if socket_errors:
        count += sum(int(n) for n in socket_errors.groups())
    if p50 is None or p99 is None:
        raise SystemExit(f"could not read wrk's latency distribution:\n{output}")
    done = re.search(r"(\d+) requests in", output)
    return Result(
        rps, _ms(*p50.groups()), _ms(*p99.groups()), count, requests=int(done.group(1)) if done else 0
    )


def measurements(base: str) -> dict[str, Any]:
    """The app's statement counters (ours only) and its collector's longest pause since the last call."""
    return httpx.get(base + "/_measurements", timeout=10).json()  # type: ignore[no-any-return]


def measured_run(
    base: str, method: str, path: str, cookies: list[str], duration: float, connections: int
) -> Result:
    """One wrk run, with the statements the app sent per 1,000 requests and its longest GC pause."""
    before = measurements(base)
    result = run_wrk(base, method, path, cookies, duration, connections)
    after = measurements(base)
    result.gc_max_pause_ms = after["gc_max_pause_ms"]
    if after["statements"] is not None and result.requests:
        sent = after["statements"]["statements"] - before["statements"]["statements"]
        result.statements_per_1000 = sent * 1000 / result.requests
    return result
