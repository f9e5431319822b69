"""The scale benchmark's own test: it runs end to end on a tiny table, so that it cannot rot (not timing)."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.scale import main, percentile
from tests.helpers import admin_sql, mariadb_sql, missing


def test_percentile_reads_the_sorted_samples() -> None:
    samples = [n / 1000 for n in range(100, 0, -1)]
    assert percentile(samples, 0.5) == pytest.approx(51.0)
    assert percentile(samples, 0.99) == pytest.approx(100.0)


def test_the_scale_benchmark_runs_on_a_tiny_table() -> None:
    try:
        asyncio.run(admin_sql("SELECT 1"))
    except OSError as error:
        missing(f"PostgreSQL not reachable: {error}")
    text = main(["--rows", "2000", "--writes", "2000"])
    for measure in ("load p50 / p99", "destroy_all(user_id=…) with user_key", "prune, idle database"):
        assert measure in text
    assert "| expired rows left after the prunes | 0 |" in text
    assert "| 2,000 | 90 |" in text  # the write-amplification table, at fillfactor 90


def test_the_scale_benchmark_runs_on_a_tiny_mariadb_table() -> None:
    try:
        asyncio.run(mariadb_sql("SELECT 1"))
    except OSError as error:
        missing(f"MariaDB not reachable: {error}")
    text = main(["--database", "mariadb", "--rows", "2000"])
    for measure in ("load p50 / p99", "destroy_all(user_id=…) with user_key", "prune, idle database"):
        assert measure in text
    assert "| expired rows left after the prunes | 0 |" in text
    [index_size] = [line for line in text.splitlines() if line.startswith("| user-key index size (MB) |")]
    assert index_size != "| user-key index size (MB) | 0.0 |"  # the index is there, and measured


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "mariadb"])
def test_the_mass_expiry_case_runs_on_a_tiny_table(database: str) -> None:
    check = {"postgresql": admin_sql, "mariadb": mariadb_sql}.get(database)
    if check is not None:
        try:
            asyncio.run(check("SELECT 1"))
        except OSError as error:
            missing(f"{database} not reachable: {error}")
    text = main(["--case", "mass-expiry", "--database", database, "--rows", "3000", "--expired", "2000"])
    assert "| table | 3,000 rows, 2,000 expired by one UPDATE, no vacuum |" in text
    # Each prune removed every expired row, idle and with the readers running.
    assert text.count("(2,000 in ") == 2
    assert "stopped" not in text
