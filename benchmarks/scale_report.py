"""The scale benchmark's report: its tables as markdown and the prune rate against table size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.charts import line_chart
from benchmarks.scale_tables import INDEXES


def percentile(samples: Sequence[float], share: float) -> float:
    """The `share` percentile of `samples` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


def report(results: list[dict[str, Any]], writes: int) -> str:
    def ms(samples: Sequence[float], share: float) -> str:
        return f"{percentile(samples, share):,.2f}"

    def rate(r: dict[str, Any], kind: str) -> str:
        error = r.get(f"prune_{kind}_error")
        return f"{r[f'prune_{kind}_rate']:,.0f}" + (f" (the CLI failed: {error})" if error else "")

    head = "| measure | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]

    def row(name: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in results) + " |")

    row("table size (MB)", lambda r: f"{r['table_mb']:,.0f}")
    row("fill (INSERT … SELECT, s)", lambda r: f"{r['fill_s']:.1f}")
    row("load p50 / p99 (ms)", lambda r: f"{ms(r['load'], 0.5)} / {ms(r['load'], 0.99)}")
    row("write p50 / p99 (ms)", lambda r: f"{ms(r['write'], 0.5)} / {ms(r['write'], 0.99)}")
    row("matching(user_id=…) without user_key (ms)", lambda r: f"{min(r['matching_scan']) * 1000:,.0f}")
    row("destroy_all(user_id=…) without user_key (ms)", lambda r: f"{min(r['destroy_all_scan']) * 1000:,.0f}")
    row("`migrate --user-key user_id` (index build, s)", lambda r: f"{r['index_build_s']:.1f}")
    row("user-key index size (MB)", lambda r: f"{r['sizes'].get('Session_data_user_id_idx', 0) / 2**20:,.1f}")
    row(
        "matching(user_id=…) with user_key p50 / max (ms, 50 users; 5 below 100k rows)",
        lambda r: f"{ms(r['matching_indexed'], 0.5)} / {max(r['matching_indexed']) * 1000:,.2f}",
    )
    row(
        "destroy_all(user_id=…) with user_key p50 / max (ms, 50 users; 5 below 100k rows)",
        lambda r: f"{ms(r['destroy_all_indexed'], 0.5)} / {max(r['destroy_all_indexed']) * 1000:,.2f}",
    )
    row(
        "load p50 / p99 with the index (ms)",
        lambda r: f"{ms(r['load_indexed'], 0.5)} / {ms(r['load_indexed'], 0.99)}",
    )
    row(
        "write p50 / p99 with the index (ms)",
        lambda r: f"{ms(r['write_indexed'], 0.5)} / {ms(r['write_indexed'], 0.99)}",
    )
    row("prune, idle database (rows/s)", lambda r: rate(r, "idle"))
    row("prune, 2,000 reads/s running (rows/s)", lambda r: rate(r, "busy"))
    row(
        "read p99 without / during the prune (ms)",
        lambda r: f"{r['reads_quiet_p99']:.2f} / {r['reads_prune_p99']:.2f}",
    )
    row(
        "read p99 during ÷ without (target ≤ 2)",
        lambda r: f"{r['reads_prune_p99'] / r['reads_quiet_p99']:.2f}",
    )
    row("expired rows left after the prunes", lambda r: f"{r['expired_left']:,}")
    row("load average (1 min) before / after", lambda r: f"{r['load_before']:.1f} / {r['load_after']:.1f}")
    text = "\n".join(lines)
    amplified = [r for r in results if "amplification" in r]
    if amplified:
        text += "\n\n" + amplification_report(amplified, writes)
    return text


def amplification_report(results: list[dict[str, Any]], writes: int) -> str:
    lines = [
        f"| rows | fillfactor | writes/s | HOT share | table MB before → after | "
        f"indexes MB before → after ({writes:,} writes) |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        for a in r["amplification"]:
            b, f = a["before"], a["after"]
            indexes = ", ".join(
                f"{name.removeprefix('Session_')} {b[name] / 2**20:,.0f} → {f[name] / 2**20:,.0f}"
                for name in INDEXES
                if name in b
            )
            lines.append(
                f"| {r['rows']:,} | {a['fillfactor']} | {a['rate']:,.0f} | {a['hot_share']:.0%} | "
                f"{b['table'] / 2**20:,.0f} → {f['table'] / 2**20:,.0f} | {indexes} |"
            )
    return "\n".join(lines)


def prune_chart(results: list[dict[str, Any]]) -> str:
    """Prune rate against table size, idle and with readers running."""
    lines = {
        "idle": [(float(r["rows"]), float(r["prune_idle_rate"])) for r in results],
        "2,000 reads/s": [(float(r["rows"]), float(r["prune_busy_rate"])) for r in results],
    }
    return line_chart("Prune rate against table size", lines, "live rows", "rows/s", log_x=True)
