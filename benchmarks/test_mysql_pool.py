"""The MySQL pool benchmark's own test: it runs end to end for a moment, so that it cannot rot."""

from __future__ import annotations

import asyncio

from benchmarks.mysql_pool import VARIANTS, main
from tests.helpers import mariadb_sql, missing


def test_the_pool_benchmark_measures_every_variant_on_both_statements() -> None:
    try:
        asyncio.run(mariadb_sql("SELECT 1"))
    except OSError as error:
        missing(f"MariaDB not reachable: {error}")
    text = main(["--rounds", "2", "--seconds", "0.1", "--tasks", "4", "--connections", "2"])
    rows = [
        line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| SELECT") or line.startswith("| UPDATE")
    ]
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (f"| {kind}", variant) for kind in ("SELECT by sid", "UPDATE by sid") for variant in VARIANTS
    )
    for row in rows:
        per_second, cpu = float(row[2].replace(",", "")), float(row[3])
        assert per_second > 0
        assert cpu > 0
