"""`fastapi-prisma-session` (or `python -m fastapi_prisma_session`): `migrate` creates the session table,
`prune` deletes expired sessions, `reencrypt` seals every session with the newest encryption key.

`migrate` runs the package's own Alembic revisions (shipped in the wheel), from any folder; `prune` suits
cron or a Kubernetes CronJob. What was done goes to stdout; how far a long step has got, to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from . import migration, rekeying
from .dialects import unsupported as unsupported_database
from .exceptions import ConfigurationError, SessionError
from .sqltext import DEFAULT_TABLE_NAME, EXPIRES, EXPIRES_AT
from .store import PrismaSessionStore
from .urls import driver_url

# The console script's name ([project.scripts] in pyproject.toml), and the other way to run it.
PROG = "fastapi-prisma-session"
MODULE_PROG = "python -m fastapi_prisma_session"
# How often, by default, a long prune reports how far it has got.
PROGRESS_EVERY_SECONDS = 2.0


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="the database (default: $DATABASE_URL); postgresql://, postgres://, sqlite://, mysql:// and "
        "mariadb:// work",
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet", action="store_true", help="print nothing but errors: no report, and no progress"
    )


def add_table_name(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--table-name",
        default=DEFAULT_TABLE_NAME,
        help=f"the session table (default {DEFAULT_TABLE_NAME}){more}",
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        epilog=f"{prog} COMMAND --help describes a command and its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    migrate = commands.add_parser(
        "migrate",
        help="create the session table: the package's Alembic revisions, up to head",
        description="Bring the session table up to date with the package's own Alembic revisions. They "
        "record their progress in a version table of their own, alembic_version_fastapi_prisma_session, "
        "never in your project's alembic_version. A table that already exists (made by Prisma) is "
        "left as it is and recorded as adopted, if it has the session table's columns; any other table "
        "of that name is refused.",
    )
    add_database_url(migrate)
    add_table_name(migrate, f"; each name has its own version table, {migration.VERSION_TABLE}_<name>")
    migrate.add_argument(
        "--expires-column",
        default=EXPIRES_AT,
        help=f"the expiry column's name: {EXPIRES_AT} (prisma-session-store 3.x's model, the default) or "
        f"{EXPIRES} (2.x's)",
    )
    migrate.add_argument("--revision", help="the revision to go to (default: head, or base with --downgrade)")
    migrate.add_argument(
        "--downgrade",
        action="store_true",
        help="go back instead, to --revision or base: this DROPS the table and every session in it, "
        "unless migrate found the table already there (made by Prisma) and adopted it: that one stays",
    )
    migrate.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL for a DBA to run instead of running it (Alembic's offline mode); "
        "the database is not contacted",
    )
    migrate.add_argument(
        "--user-key",
        metavar="KEY",
        help="also add the index that the store's user_key=KEY option looks users up in (such as "
        "user_id), so that destroy_all(KEY=...) and matching(KEY=...) need not read every row; it "
        "reads the whole table once, and says so on stderr before it starts; running it again does "
        "nothing",
    )
    migrate.add_argument(
        "--drop-user-key", metavar="KEY", help="remove the index --user-key KEY added, and nothing else"
    )
    add_quiet(migrate)

    prune = commands.add_parser(
        "prune",
        help="delete expired sessions, in batches",
        description="Delete the expired sessions, in batches of one short transaction each, resting "
        "between them so that the app's own statements go first. One process prunes a table at a "
        "time: a run that finds another pruning does nothing. While it runs, the rows deleted so far "
        "and the rate go to stderr; the total goes to stdout at the end. Suits cron or a Kubernetes "
        "CronJob; the app itself prunes too when its store has check_period.",
    )
    add_database_url(prune)
    add_table_name(prune)
    prune.add_argument(
        "--batch-size",
        type=int,
        help="rows per DELETE (default: each batch sized to take about 50 ms)",
    )
    prune.add_argument(
        "--pause",
        type=float,
        help="seconds to rest between batches (default: a rest that grows when the database slows "
        "down and shrinks when it is idle; 0 for full speed)",
    )
    prune.add_argument(
        "--progress-every",
        type=float,
        default=PROGRESS_EVERY_SECONDS,
        metavar="SECONDS",
        help=f"how often to report the rows deleted so far on stderr (default {PROGRESS_EVERY_SECONDS:g}; "
        "0 after every batch)",
    )
    add_quiet(prune)

    def add_common(command: argparse.ArgumentParser) -> None:
        add_database_url(command)
        add_table_name(command)
        add_quiet(command)

    rekeying.add_command(commands, add_common)
    return parser


async def prune(store: PrismaSessionStore, quiet: bool, every: float = PROGRESS_EVERY_SECONDS) -> int:
    started = last_report = time.monotonic()

    def report(total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if not quiet and now - last_report >= every:
            last_report = now
            rate = total / (now - started) if now > started else 0.0
            print(f"… {total} removed so far ({rate:.0f} rows/s)", file=sys.stderr, flush=True)

    async with store:
        total = await store.prune(progress=report)
        skipped = store.last_prune_skipped
    if not quiet:
        if skipped:
            print(f'another process is pruning "{store.table_name}"; nothing done')
        else:
            elapsed = time.monotonic() - started
            print(f'removed {total} expired sessions from "{store.table_name}" in {elapsed:.1f} s')
    return total


@dataclass
class Steps:
    """What a migrate run did: the revisions Alembic ran ("Running upgrade  -> 0001_session_table, ...",
    each with what the revisions report in its place, such as a downgrade that left an adopted table in
    place), and what became of the user-key index."""

    revisions: list[str] = field(default_factory=list)
    index: list[str] = field(default_factory=list)


@contextmanager
def alembic_steps(quiet: bool = False) -> Iterator[Steps]:
    """Collect the `Steps` that Alembic and the package's migration log at INFO while the run lasts;
    progress records (a long index build about to start) go to stderr at once, unless `quiet`."""
    steps = Steps()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            step = getattr(record, "migration_step", None)
            if step == "progress":
                if not quiet:
                    print(message, file=sys.stderr, flush=True)
            elif step == "index":
                steps.index.append(message)
            elif message.startswith("Running ") or record.name == migration.logger.name:
                steps.revisions.append(message)

    loggers = [logging.getLogger("alembic.runtime.migration"), migration.logger]
    handler, levels = Collect(), [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield steps
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def migrate(
    url: str,
    table_name: str,
    revision: str | None,
    downgrade: bool,
    sql: bool,
    quiet: bool,
    expires_column: str = EXPIRES_AT,
    *,
    user_key: str | None = None,
    drop_user_key: str | None = None,
) -> None:
    """Run the package's revisions on `url`, and add or drop the user-key index if asked; with `sql`,
    print their SQL instead."""
    from alembic import command

    if downgrade and (user_key or drop_user_key):
        raise ConfigurationError(
            "--downgrade drops the table with its indexes: leave out the user key options"
        )
    config = migration.config(url, table_name, expires_column, user_key=user_key, drop_user_key=drop_user_key)
    target = revision or ("base" if downgrade else "head")
    with alembic_steps(quiet or sql) as steps:
        if downgrade:
            # Offline, Alembic cannot read where the database is, so the SQL starts from head.
            command.downgrade(config, f"head:{target}" if sql and ":" not in target else target, sql=sql)
        else:
            command.upgrade(config, target, sql=sql)
    if quiet or sql:
        return
    for step in steps.revisions:
        print(step.replace("  ", " "))
    where = f'the session table "{table_name}" is at {target}'
    if steps.revisions:
        print(f"done: {where}")
    else:
        print(f"{where} already" if user_key or drop_user_key else f"nothing to do: {where} already")
    for step in steps.index:
        print(step)
    if user_key:
        print(
            f'the index of user key "{user_key}" is there: use PrismaSessionStore(..., user_key="{user_key}")'
        )


def unreachable(error: Exception) -> str:
    """What went wrong, in one line: the driver's message rather than SQLAlchemy's wrapping."""
    return one_line(error.orig if isinstance(error, DBAPIError) and error.orig is not None else error)


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ConfigurationError is a ValueError
        return "the database URL"


def unsupported(url: str) -> str | None:
    """Why `url` cannot be migrated, before anything is tried; None when it can."""
    try:
        backend = make_url(driver_url(url)).get_backend_name()
    except (ArgumentError, ValueError) as error:  # a malformed URL, host list or port
        return one_line(error) if not isinstance(error, ConfigurationError) else str(error)
    problem = unsupported_database(backend)
    if problem:
        return problem.replace(f"the {backend!r} database", backend)
    return None


def run_migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    try:
        migrate(
            args.database_url,
            args.table_name,
            args.revision,
            args.downgrade,
            args.sql,
            args.quiet,
            args.expires_column,
            user_key=args.user_key,
            drop_user_key=args.drop_user_key,
        )
    except (ConfigurationError, ArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # a driver named in the URL and not installed
        print(
            f"error: {error}; plain postgresql:// and sqlite:// URLs use asyncpg and aiosqlite, and "
            "mysql:// URLs asyncmy: pip install 'fastapi-prisma-session[mysql]'",
            file=sys.stderr,
        )
        return 2
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # the database's refusal, an outage, or a bug: one line all the same
        print(f"error: cannot migrate {safe_url(args.database_url)}: {unreachable(error)}", file=sys.stderr)
        return 1
    return 0


def run_prune(args: argparse.Namespace) -> int:
    try:
        store = PrismaSessionStore(
            args.database_url,
            table_name=args.table_name,
            prune_batch_size=args.batch_size,
            prune_pause=args.pause,
        )
    except (ConfigurationError, ArgumentError, ImportError) as error:  # ImportError: the URL's driver
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    try:
        asyncio.run(prune(store, args.quiet, args.progress_every))
    except Exception as error:  # the database's refusal, an outage, or a bug: one line all the same
        print(f"error: cannot prune {safe_url(args.database_url)}: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


def run_reencrypt(args: argparse.Namespace) -> int:
    try:
        store = rekeying.store_for(args)
        if args.batch_size < 1:
            raise ConfigurationError("--batch-size must be a positive whole number")
    except (ConfigurationError, ArgumentError, ImportError) as error:  # ImportError: the URL's driver
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    try:
        asyncio.run(rekeying.run(store, args, say))
    except Exception as error:  # the database's refusal, an outage, or a bug: one line all the same
        print(f"error: cannot re-encrypt {safe_url(args.database_url)}: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


def say(line: str, progress: bool) -> None:
    """A command's report: progress on stderr, the result on stdout."""
    print(line, file=sys.stderr if progress else sys.stdout, flush=True)


def one_line(error: BaseException) -> str:
    """`error` in one line: the package's message as it is, anything else with its type's name."""
    text = str(error) if isinstance(error, SessionError) else f"{type(error).__name__}: {error}"
    return (text.splitlines() or [type(error).__name__])[0]


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if not args.database_url:
        print("error: give --database-url or set DATABASE_URL", file=sys.stderr)
        return 2
    problem = unsupported(args.database_url)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        return run_migrate(args)
    if args.command == "reencrypt":
        return run_reencrypt(args)
    return run_prune(args)
