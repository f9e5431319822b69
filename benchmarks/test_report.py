"""The benchmark harness's own test: reading wrk's output, computing the ratios, and writing the benchmark
page and its charts (not timing)."""

from __future__ import annotations

import argparse
from pathlib import Path
from xml.etree import ElementTree

import pytest

from benchmarks import mass_expiry, page, peer_charts
from benchmarks.charts import bar_chart, line_chart
from benchmarks.run import SCENARIOS, VARIANTS, ratios, report, report_pooled
from benchmarks.scale import prune_chart
from benchmarks.wrk import Result, parse_wrk

SVG = "{http://www.w3.org/2000/svg}"

WRK_OUTPUT = """Running 4s test @ http://127.0.0.1:40000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.30ms  310.00us   9.00ms   90.00%
    Req/Sec    12.00k   300.00     12.50k    80.00%
  Latency Distribution
     50%    1.28ms
     75%    1.40ms
     90%    1.60ms
     99%  850.00us
  47932 requests in 4.00s, 7.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  11983.21
Transfer/sec:      1.75MB
"""


def test_parse_wrk_reads_throughput_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result == Result(rps=11983.21, p50_ms=1.28, p99_ms=0.85, errors=7, requests=47932)


def test_parse_wrk_without_a_latency_distribution_says_so() -> None:
    with pytest.raises(SystemExit, match="latency distribution"):
        parse_wrk("Requests/sec:  10.0\n")


ARGS = argparse.Namespace(connections=16, duration=4.0, rounds=2, sessions=300)
RPS = {"none": 1000.0, "starlette": 800.0, "starsessions": 300.0, "floor": 500.0, "floor+imports": 500.0}


def every_route() -> dict[str, dict[str, Result]]:
    """Every app on every route, at RPS (ours at 450 a second), each p50 1 ms and p99 2 ms."""
    rps = {**RPS, "ours": 450.0}
    return {v: {label: Result(rps[v], 1.0, 2.0, 0) for label, *_ in SCENARIOS} for v in VARIANTS}


def test_report_computes_ratios_from_one_run() -> None:
    best = every_route()
    text = report(best, ARGS)
    assert "| /read, ours ÷ floor | 0.90 | ≥ 1.40 | no |" in text
    assert "| /noop with a session cookie, ours ÷ floor | 0.90 | ≥ 0.90 | yes |" in text
    assert "| /noop without cookie, ours ÷ no middleware | 0.45 | ≥ 0.90 | no |" in text
    assert "| /read, ours ÷ starsessions+Redis | 1.50 | ≥ 1.50 | yes |" in text
    assert "| /read p99, ours ÷ floor | 1.00 | ≤ 1.50 | yes |" in text


def test_report_pooled_gives_ours_over_the_floor_through_pgbouncer() -> None:
    best = {
        "floor": {"read": Result(1000.0, 1.0, 4.0, 0), "write": Result(500.0, 2.0, 8.0, 0)},
        "ours": {"read": Result(900.0, 1.0, 2.0, 0), "write": Result(600.0, 2.0, 12.0, 0)},
    }
    text = report_pooled(best, ARGS)
    assert "| ours via PgBouncer | /read | 900 | 1.00 | 2.00 | 0 |" in text
    assert "| /read, ours ÷ floor | 0.90 |" in text
    assert "| /write, ours ÷ floor | 1.20 |" in text
    assert "| /write p99, ours ÷ floor | 1.50 |" in text


def test_a_report_of_the_floor_and_ours_alone_has_only_their_ratios() -> None:
    """On MariaDB only the floor and ours run: the other apps' rows and ratios are left out."""
    best = {v: {label: Result(500.0, 1.0, 2.0, 0) for label, *_ in SCENARIOS} for v in ("floor", "ours")}
    best["ours"]["write"] = Result(400.0, 1.0, 3.0, 0)
    text = report(best, argparse.Namespace(connections=16, duration=4.0, rounds=1, sessions=300))
    assert "| /write, ours ÷ floor | 0.80 | ≥ 0.85 | no |" in text
    assert "| /write p99, ours ÷ floor | 1.50 | ≤ 1.50 | yes |" in text
    assert "starsessions" not in text
    assert "| none |" not in text


def test_report_sets_ours_tail_against_the_floor_holding_the_same_imports() -> None:
    best = every_route()
    best["ours"]["read"] = Result(450.0, 1.0, 6.0, 0)
    best["floor+imports"] = {"read": Result(480.0, 1.0, 5.0, 0), "write": Result(300.0, 1.0, 4.0, 0)}
    text = report(best, ARGS)
    assert "| floor+imports | /read | 480 | 1.00 | 5.00 | 0 |" in text
    assert "| floor+imports | /noop |" not in text  # only /read and /write are run for it
    assert "| /read p99, ours ÷ floor with ours' imports | 1.20 |" in text
    assert "| /write p99, floor with ours' imports ÷ floor | 2.00 |" in text


# -- the benchmark page and its charts ---------------------------------------------------------------


def parsed(svg: str) -> ElementTree.Element:
    """The chart as XML: parsing fails on a chart that is not well-formed."""
    return ElementTree.fromstring(svg)


def count(svg: str, tag: str, kind: str) -> int:
    return sum(1 for node in parsed(svg).iter(f"{SVG}{tag}") if node.get("class") == kind)


def test_a_bar_chart_is_well_formed_with_one_bar_per_value() -> None:
    groups = [("/read <&>", [("ours", 450.0), ("floor", 500.0)]), ("/write", [("ours", 300.0)])]
    svg = bar_chart('req/s & "quotes"', groups, "req/s", reference=400.0)
    assert count(svg, "rect", "bar") == 3
    widths = [float(node.get("width", "0")) for node in parsed(svg).iter(f"{SVG}rect") if node.get("class")]
    assert widths[1] == max(widths)  # drawn to one scale: the largest value is the longest bar
    assert "/read &lt;&amp;&gt;" in svg


def test_a_line_chart_has_one_point_per_input() -> None:
    lines = {"idle": [(1e5, 40_000.0), (1e6, 38_000.0), (1e7, 30_000.0)], "busy": [(1e5, 9_000.0)]}
    svg = line_chart("Prune rate against table size", lines, "live rows", "rows/s", log_x=True)
    assert count(svg, "circle", "point") == 4
    assert len(list(parsed(svg).iter(f"{SVG}polyline"))) == 1  # a single point draws no line


def test_the_peer_charts_cover_each_app_and_route_and_skip_what_was_not_measured() -> None:
    best = every_route()
    drawn = peer_charts.charts(best, ratios(best))
    assert set(drawn) == {"requests", "p99", "ratios"}  # no statement counts, no GC pauses measured
    assert count(drawn["requests"][1], "rect", "bar") == len(VARIANTS) * len(SCENARIOS)
    best["ours"]["read"] = Result(450.0, 1.0, 2.0, 0, statements_per_1000=250.0, gc_max_pause_ms=3.5)
    drawn = peer_charts.charts(best, ratios(best))
    assert count(drawn["statements"][1], "rect", "bar") == 1
    assert count(drawn["gc"][1], "rect", "bar") == 1
    text = report(best, ARGS)
    assert "| ours | /read | 450 | 1.00 | 2.00 | 0 | 250 | 3.50 |" in text
    assert "| floor | /read | 500 | 1.00 | 2.00 | 0 | n/a | n/a |" in text


def test_a_run_replaces_its_own_section_and_charts_and_keeps_the_others(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "benchmarks.md"
    target.parent.mkdir()
    target.write_text("# a stub from before\n")
    chart = bar_chart("x", [("a", [("s", 1.0)])])
    page.record("scale", "## Scale\n\nfirst run\n\n![rate]({chart:rate})", {"rate": chart}, target)
    page.record("peer", "## Peer\n\npeer run", {"old": chart}, target)
    page.record("peer", "## Peer\n\nsecond peer run", {"new": chart}, target)
    text = target.read_text()
    assert "first run" in text
    assert "second peer run" in text
    assert "peer run\n" not in text.replace("second peer run", "")  # replaced, not appended
    assert text.count("<!-- benchmark:peer -->") == 1
    assert text.index("<!-- benchmark:peer -->") < text.index("<!-- benchmark:scale -->")  # page order
    assert "a stub from before" not in text
    assert "![rate](benchmarks/scale--rate.svg)" in text
    assert sorted(p.name for p in (tmp_path / "docs" / "benchmarks").iterdir()) == [
        "peer--new.svg",
        "scale--rate.svg",
    ]


def test_the_peer_record_writes_a_section_with_its_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "benchmarks.md"
    monkeypatch.setattr(page, "PAGE", target)
    best = every_route()
    command = "python -m benchmarks.run --rounds 1 --record"
    peer_charts.record("Peer benchmark", command, report(best, ARGS), best, ratios(best))
    text = target.read_text()
    assert "## Peer benchmark" in text
    assert "| /read, ours ÷ floor | 0.90 | ≥ 1.40 | no |" in text
    for stem in ("requests", "p99", "ratios"):
        assert f"(benchmarks/peer--{stem}.svg)" in text
        parsed((tmp_path / "benchmarks" / f"peer--{stem}.svg").read_text())


def test_the_mass_expiry_report_and_chart() -> None:
    result = {
        "database": "postgresql",
        "rows": 250_000,
        "expired": 172_000,
        "idle": (172_000, 3.44, True),
        "busy": (86_000, 300.0, False),
        "quiet_p99": 2.0,
        "prune_p99": 3.0,
    }
    text = mass_expiry.report(result)
    assert "| prune rate, idle database (rows/s, target ≥ 50,000) | 50,000 (172,000 in 3.4 s) |" in text
    assert "| prune rate, 2,000 reads/s running (rows/s) | 287 (86,000 in 300.0 s, stopped) |" in text
    assert "| readers' p99 during ÷ without (target ≤ 2) | 1.50 |" in text
    drawn = mass_expiry.charts(result)
    assert count(drawn["rate"], "rect", "bar") == 2
    assert count(drawn["p99"], "rect", "bar") == 2


def test_the_scale_chart_has_a_point_per_size_idle_and_busy() -> None:
    results = [
        {"rows": rows, "prune_idle_rate": 40_000.0 / n, "prune_busy_rate": 3_000.0 / n}
        for n, rows in enumerate((100_000, 1_000_000, 10_000_000), start=1)
    ]
    svg = prune_chart(results)
    assert count(svg, "circle", "point") == 6
    assert "10,000,000" in svg
