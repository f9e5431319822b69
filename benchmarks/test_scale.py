"""The scale benchmark's own test: it runs end to end on a tiny table, so that it cannot rot (not timing)."""

from __future__ import annotations

import pytest

from benchmarks.scale import main, percentile
from tests.helpers import IN_CI, admin_sql, mariadb_sql


def test_percentile_reads_the_sorted_samples() -> None:
    samples = [n / 1000 for n in range(100, 0, -1)]
    assert percentile(samples, 0.5) == pytest.approx(51.0)
    assert percentile(samples, 0.99) == pytest.approx(100.0)


async def _postgres_reachable() -> bool:
    try:
        await admin_sql("SELECT 1")
    except OSError:
        return False
    return True


def test_the_scale_benchmark_runs_on_a_tiny_table() -> None:
    import asyncio

    if not asyncio.run(_postgres_reachable()):
        if IN_CI:
            pytest.fail("PostgreSQL is required under CI=true")
        pytest.skip("PostgreSQL not reachable")
    text = main(["--rows", "2000", "--writes", "2000"])
    for measure in ("load p50 / p99", "destroy_all(user_id=…) with user_key", "prune, idle database"):
        assert measure in text
    assert "| expired rows left after the prunes | 0 |" in text
    assert "| 2,000 | 90 |" in text  # the write-amplification table, at fillfactor 90


async def _mariadb_reachable() -> bool:
    try:
        await mariadb_sql("SELECT 1")
    except OSError:
        return False
    return True


def test_the_scale_benchmark_runs_on_a_tiny_mariadb_table() -> None:
    import asyncio

    if not asyncio.run(_mariadb_reachable()):
        if IN_CI:
            pytest.fail("MariaDB is required under CI=true")
        pytest.skip("MariaDB not reachable")
    text = main(["--database", "mariadb", "--rows", "2000"])
    for measure in ("load p50 / p99", "destroy_all(user_id=…) with user_key", "prune, idle database"):
        assert measure in text
    assert "| expired rows left after the prunes | 0 |" in text
    [index_size] = [line for line in text.splitlines() if line.startswith("| user-key index size (MB) |")]
    assert index_size != "| user-key index size (MB) | 0.0 |"  # the index is there, and measured
