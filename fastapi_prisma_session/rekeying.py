"""Re-encrypting a whole session table with the newest key: `fastapi-prisma-session reencrypt`.

Rows are read in batches in the order of their ids, and each one not sealed with the store's newest key
(a plain row, or one sealed with an older key) is rewritten with it, only if it still holds what was read
(compare-and-set): a request that wrote the row meanwhile sealed it with the newest key already. Rows
that cannot be decrypted are left as they are, and counted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update

from .cookies import MOVED_KEY
from .encryption import KEYS_ENV, keys_from_environment
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .store import PrismaSessionStore

#: Rows read per batch, by default.
BATCH_SIZE = 500
PROGRESS_EVERY_SECONDS = 2.0


@dataclass
class Rekeyed:
    """What a re-encryption did, so far or in all."""

    read: int = 0
    rewritten: int = 0
    unreadable: int = 0


async def reencrypt(
    store: PrismaSessionStore,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[Rekeyed], None] | None = None,
) -> Rekeyed:
    """Seal every row of `store`'s table with its newest key; `progress` is called after each batch."""
    encryption = store.rows.encryption
    if encryption is None:
        raise ConfigurationError("re-encrypting needs a store with encryption_keys")
    if batch_size < 1:
        raise ConfigurationError("the batch size must be a positive whole number")
    await store.check_table()  # its columns looked at first, as every store operation does
    sql = store.executor.sql
    c = sql.table.c
    batch = select(c.id, c.sid, c.data).where(c.id > bindparam("after")).order_by(c.id).limit(batch_size)
    rewrite = update(sql.table).where(c.id == bindparam("record_id"), sql.unchanged())
    rewrite = rewrite.values(data=bindparam("payload"))
    done, after = Rekeyed(), ""
    while True:
        rows = await store.executor.fetch(batch, {"after": after})
        if not rows:
            return done
        for record_id, sid, text in rows:
            done.read += 1
            payload = _resealed(store, encryption.current, sid, text)
            if payload is None:
                continue
            if payload == "":
                done.unreadable += 1
                continue
            params: dict[str, Any] = {"record_id": record_id, "payload": payload}
            params["expected"] = sql.expected_data(text)
            done.rewritten += await store.executor.execute(rewrite, params)
        after = rows[-1][0]
        if progress is not None:
            progress(done)


def _resealed(store: PrismaSessionStore, current: str, sid: str, text: str | None) -> str | None:
    """The row's data sealed with the newest key; None when it needs nothing, "" when it is unreadable."""
    if not text:
        return None
    rows = store.rows
    assert rows.encryption is not None
    try:
        stored = rows.serializer.loads(text)
    except ValueError:
        return ""
    if not isinstance(stored, dict) or MOVED_KEY in stored or rows.encryption.sealed_with(stored) == current:
        return None if isinstance(stored, dict) else ""
    data = rows.parse(sid, text)
    return "" if data is None else rows.payload(sid, data)


# -- the command line ------------------------------------------------------------------------------


def add_command(commands: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `reencrypt` subcommand; `add_common` adds --database-url, --table-name and --quiet."""
    command = commands.add_parser(
        "reencrypt",
        help="seal every session with the newest encryption key, in batches",
        description="Rewrite each session not encrypted with the newest key (written before encryption "
        "was turned on, or with an older key) with the newest one, in batches. A row a request rewrites "
        "meanwhile is left to that request. Rows that cannot be decrypted are left alone and counted. "
        "The keys come from an environment variable (never the command line, where `ps` shows them): "
        "urlsafe base64 keys separated by commas, newest first.",
    )
    add_common(command)
    command.add_argument(
        "--key-env",
        default=KEYS_ENV,
        metavar="NAME",
        help=f"the environment variable holding the keys (default {KEYS_ENV})",
    )
    command.add_argument("--user-key", help="the store's user_key, which stays readable in the rows")
    command.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help=f"rows per batch (default {BATCH_SIZE})"
    )
    command.add_argument(
        "--progress-every",
        type=float,
        default=PROGRESS_EVERY_SECONDS,
        metavar="SECONDS",
        help=f"how often to report progress on stderr (default {PROGRESS_EVERY_SECONDS:g}; 0 after every "
        "batch)",
    )


def store_for(args: argparse.Namespace) -> PrismaSessionStore:
    """The store the command's arguments describe. Raises ConfigurationError."""
    from .store import PrismaSessionStore

    keys = keys_from_environment(args.key_env)
    if not keys:
        raise ConfigurationError(f"set ${args.key_env} to the encryption keys, newest first")
    return PrismaSessionStore(
        args.database_url, table_name=args.table_name, user_key=args.user_key, encryption_keys=keys
    )


async def run(
    store: PrismaSessionStore, args: argparse.Namespace, say: Callable[[str, bool], None]
) -> Rekeyed:
    """The command: re-encrypts the table, and tells `say(line, progress)` how it goes (the command line
    prints progress lines on stderr, the total on stdout)."""
    started = last_report = time.monotonic()

    def report(done: Rekeyed) -> None:
        nonlocal last_report
        now = time.monotonic()
        if not args.quiet and now - last_report >= args.progress_every:
            last_report = now
            rate = done.read / (now - started) if now > started else 0.0
            say(f"… {done.read} read, {done.rewritten} re-encrypted so far ({rate:.0f} rows/s)", True)

    async with store:
        done = await reencrypt(store, batch_size=args.batch_size, progress=report)
    if not args.quiet:
        elapsed = time.monotonic() - started
        say(
            f're-encrypted {done.rewritten} of {done.read} sessions in "{store.table_name}" in '
            f"{elapsed:.1f} s; {done.unreadable} could not be decrypted",
            False,
        )
    return done
