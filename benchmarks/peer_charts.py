"""The peer benchmark's section of the benchmark page, and its charts: req/s and p99 per app and route,
ours' ratios against the floor and the other apps, and, where the run measured them, statements per
1,000 requests and garbage-collector pauses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmarks import page
from benchmarks.charts import Bars, bar_chart

if TYPE_CHECKING:
    from benchmarks.run import Result


def _per_route(best: dict[str, dict[str, Result]], value: Callable[[Result], float | None]) -> Bars:
    """Groups of bars, one group per route, one bar per app that has a value there."""
    routes = list(dict.fromkeys(route for results in best.values() for route in results))
    groups = []
    for route in routes:
        bars = [
            (app, found)
            for app, results in best.items()
            if route in results and (found := value(results[route])) is not None
        ]
        if bars:
            groups.append((f"/{route}", bars))
    return groups


def charts(
    best: dict[str, dict[str, Result]], ratios: list[tuple[str, float, float, bool]]
) -> dict[str, tuple[str, str]]:
    """Each chart's file stem, and its (alt text, SVG); the optional measures only where measured."""
    drawn = {
        "requests": ("Requests a second per app and route", _per_route(best, lambda r: r.rps), "req/s"),
        "p99": ("p99 latency per app and route", _per_route(best, lambda r: r.p99_ms), "ms"),
        "statements": (
            "Database statements per 1,000 requests",
            _per_route(best, lambda r: r.statements_per_1000),
            "statements",
        ),
        "gc": (
            "Longest garbage-collector pause per app and route",
            _per_route(best, lambda r: r.gc_max_pause_ms),
            "ms",
        ),
    }
    found = {
        stem: (title, bar_chart(title, groups, unit))
        for stem, (title, groups, unit) in drawn.items()
        if groups
    }
    if ratios:
        groups = [(label, [("value", value)]) for label, value, _, _ in ratios]
        title = "Ours' ratios, same run (1.0: level)"
        found["ratios"] = (title, bar_chart(title, groups, "ratio", reference=1.0))
    return found


SECTIONS = {
    "Peer benchmark": "peer",
    "Peer benchmark on MariaDB": "peer-mariadb",
    "Through PgBouncer": "pgbouncer",
}


def record(
    title: str,
    command: str,
    text: str,
    best: dict[str, dict[str, Result]],
    ratios: list[tuple[str, float, float, bool]],
) -> None:
    """Replace the run's section of the benchmark page with `text` and the charts of `best`."""
    drawn = charts(best, ratios)
    links = "\n".join(f"![{name}]({{chart:{stem}}})" for stem, (name, _) in drawn.items())
    body = page.heading(title, command) + text + "\n\n" + links + "\n"
    page.record(SECTIONS[title], body, {stem: svg for stem, (_, svg) in drawn.items()})
