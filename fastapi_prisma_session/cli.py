"""`python -m fastapi_prisma_session prune`: prune expired sessions from cron or a Kubernetes CronJob."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence

from .exceptions import SessionError
from .models import DEFAULT_TABLE_NAME
from .pruning import PRUNE_BATCH_SIZE, PRUNE_PAUSE
from .store import PrismaSessionStore

# How often a long run reports how far it has got.
PROGRESS_EVERY_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastapi_prisma_session", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prune = commands.add_parser("prune", help="delete expired sessions, in batches")
    prune.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="the database (default: $DATABASE_URL); postgresql://, postgres:// and sqlite:// work",
    )
    prune.add_argument("--table-name", default=DEFAULT_TABLE_NAME)
    prune.add_argument(
        "--batch-size",
        type=int,
        default=PRUNE_BATCH_SIZE,
        help=f"rows per DELETE (default {PRUNE_BATCH_SIZE})",
    )
    prune.add_argument(
        "--pause",
        type=float,
        default=PRUNE_PAUSE,
        help=f"seconds to rest between batches (default {PRUNE_PAUSE}; 0 for full speed)",
    )
    prune.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


async def prune(url: str, table_name: str, batch_size: int, pause: float, quiet: bool) -> int:
    started = last_report = time.monotonic()

    def report(total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if not quiet and now - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = now
            print(f"… {total} removed ({total / (now - started):.0f} rows/s)", flush=True)

    store = PrismaSessionStore(url, table_name=table_name, prune_batch_size=batch_size, prune_pause=pause)
    async with store:
        total = await store.prune(progress=report)
        skipped = store.last_prune_skipped
    if not quiet:
        if skipped:
            print(f'another process is pruning "{table_name}"; nothing done')
        else:
            elapsed = time.monotonic() - started
            print(f'removed {total} expired sessions from "{table_name}" in {elapsed:.1f} s')
    return total


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.database_url:
        print("error: give --database-url or set DATABASE_URL", file=sys.stderr)
        return 2
    try:
        asyncio.run(prune(args.database_url, args.table_name, args.batch_size, args.pause, args.quiet))
    except (SessionError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
