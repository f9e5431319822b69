"""The Alembic environment of the package's own revisions, for every way they are run.

- `python -m fastapi_prisma_session migrate` (and `migration.config()`): the URL and the table name come
  from the `Config`'s attributes.
- `alembic upgrade head` in a clone of the repository (its alembic.ini points here): the URL comes from
  `DATABASE_URL` (or a `sqlalchemy.url` option), the table name from `-x table_name=...` and the expiry
  column's from `-x expires_column=...`.

Plain `postgresql://`, `postgres://`, `sqlite://`, `mysql://` and `mariadb://` URLs are given their
async drivers. Both ways record
the revision in the same version table, `migration.version_table(table_name)`, so that a database
migrated one way is at head for the other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_prisma_session import migration
from fastapi_prisma_session.urls import driver_url, engine_options

# asyncpg waits 60 s for an unreachable server by default.
CONNECT_TIMEOUT = 10.0

config = context.config


class PrimaryKeyNameNote(logging.Filter):
    """MySQL names every primary key PRIMARY, and asyncmy logs its note that the name of Alembic's
    version table's key was ignored: a harmless line that would look like a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ignored for PRIMARY key" not in record.getMessage()


logging.getLogger("asyncmy").addFilter(PrimaryKeyNameNote())
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# A mark the first revision asks for is set within its own run, never carried into another run of a
# `Config` that is used twice.
config.attributes.pop(migration.ADOPTED_ATTRIBUTE, None)
table_name = migration.current_table_name()
target_metadata = migration.session_metadata(table_name, migration.current_expires_column())
version_table = migration.version_table(table_name)


def database_url() -> str:
    url = (
        config.attributes.get(migration.URL_ATTRIBUTE)
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise SystemExit(
            "Set DATABASE_URL, e.g. DATABASE_URL=postgresql://postgres@127.0.0.1/app alembic upgrade head"
        )
    return driver_url(str(url))


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        version_table=version_table,
        include_object=migration.include_object,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        migration.user_key_steps()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table,
        include_object=migration.include_object,
        on_version_apply=migration.record_adoption,
    )
    with context.begin_transaction():
        context.run_migrations()
        migration.user_key_steps()


async def run_async_migrations() -> None:
    url = database_url()
    options: dict[str, Any] = {"poolclass": pool.NullPool}
    if make_url(url).get_driver_name() == "asyncpg":
        options["connect_args"] = {"timeout": CONNECT_TIMEOUT}
    elif "host" in make_url(url).query:
        options = engine_options(url, options, CONNECT_TIMEOUT)  # MySQL's list of hosts (hosts.py)
    engine = create_async_engine(url, **options)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()
        await aiosqlite_workers_stopped()


async def aiosqlite_workers_stopped() -> None:
    """Wait for aiosqlite's worker threads to end while the event loop still runs.

    When opening the file fails, aiosqlite stops its thread without waiting for it, and the thread then
    reports to the loop: were the loop closed by then, "Exception in thread ... Event loop is closed"
    would follow the CLI's one-line error (aiosqlite issue 241). The join runs off the loop."""
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, CONNECT_TIMEOUT)


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
