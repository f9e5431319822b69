"""The benchmark harness's own test: reading wrk's output and computing the ratios (not timing)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.run import SCENARIOS, VARIANTS, Result, parse_wrk, report, report_pooled

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
    assert result == Result(rps=11983.21, p50_ms=1.28, p99_ms=0.85, errors=7)


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
    assert "| /read, ours ÷ floor | 0.90 | ≥ 0.85 | yes |" in text
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
