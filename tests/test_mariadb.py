"""What is MySQL's and MariaDB's own: Prisma's MySQL table from `migrate` and `alembic`, plain mysql://
URLs, comparisons that the table's case-insensitive collation must not blur, the GET_LOCK that lets one
process prune at a time, and prune batches through the expiry index.

The store contract and HTTP suites run on MariaDB too, through the `database_url` fixture.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_prisma_session import (
    PrismaSessionStore,
    SessionTooLargeError,
    StoreUnavailableError,
    TableMissingError,
)
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.urls import driver_url
from tests.faultproxy import FaultProxy
from tests.helpers import (
    PRISMA_MYSQL_DDL,
    ROOT,
    a_fresh_store_prunes,
    alembic,
    free_port,
    mariadb_database,
    mariadb_sql,
    prune_in_processes,
    run_module,
    wait_until,
)

VERSION_TABLE = "alembic_version_fastapi_prisma_session"
HEAD = "0001_session_table"


@pytest.fixture
def empty_mariadb(mariadb_url: str) -> Iterator[str]:
    """A brand-new MariaDB database, as the plain mysql:// URL a Prisma project has."""
    with mariadb_database("fps_mysql") as url:
        yield url


@pytest.fixture
def migrated(empty_mariadb: str) -> str:
    done = migrate("--database-url", empty_mariadb, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return empty_mariadb


@pytest.fixture
async def store(migrated: str) -> AsyncIterator[PrismaSessionStore]:
    async with PrismaSessionStore(migrated) as store:
        yield store


def migrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_module("fastapi_prisma_session", "migrate", *args, cwd=cwd)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    return asyncio.run(mariadb_sql(sql, url))


async def aquery(url: str, sql: str) -> list[tuple[object, ...]]:
    return await mariadb_sql(sql, url)


def show_create(url: str, table: str = "Session") -> str:
    return str(query(url, f"SHOW CREATE TABLE `{table}`")[0][1])


async def seed(url: str, expired: int, live: int) -> None:
    """`expired` rows expired an hour ago and `live` rows live for a day, named expired1… and live1…"""
    table = session_table()
    engine = create_async_engine(driver_url(url))
    now, data = utcnow(), json.dumps({"cookie": {"originalMaxAge": None, "expires": None}, "n": 1})
    try:
        async with engine.begin() as conn:
            for prefix, count, offset in (("expired", expired, -1), ("live", live, 24)):
                values = [
                    {"id": f"{prefix}{n}", "sid": f"{prefix}{n}", "data": data, "expiresAt": now}
                    for n in range(1, count + 1)
                ]
                for row in values:
                    row["expiresAt"] = now + timedelta(hours=offset)
                if values:
                    await conn.execute(insert(table), values)
    finally:
        await engine.dispose()


async def counts(url: str) -> tuple[int, int]:
    rows = await aquery(url, "SELECT SUM(sid LIKE 'expired%'), SUM(sid LIKE 'live%') FROM `Session`")
    expired, live = rows[0]
    return int(expired or 0), int(live or 0)


# -- the table ------------------------------------------------------------------------------------------


def test_migrate_creates_prismas_table_from_a_plain_mysql_url(empty_mariadb: str, tmp_path: Path) -> None:
    assert empty_mariadb.startswith("mysql://")
    result = migrate("--database-url", empty_mariadb, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Running upgrade -> {HEAD}" in result.stdout
    assert result.stderr == ""  # no "name ignored for PRIMARY key" warnings
    with mariadb_database("fps_prisma") as prisma:
        query(prisma, PRISMA_MYSQL_DDL)
        assert show_create(empty_mariadb) == show_create(prisma)
    created = show_create(empty_mariadb)
    assert "`id` varchar(191) NOT NULL" in created
    assert "`data` mediumtext NOT NULL" in created
    assert "`expiresAt` datetime(3) NOT NULL" in created
    assert "UNIQUE KEY `Session_sid_key` (`sid`)" in created
    assert "KEY `Session_expiresAt_idx` (`expiresAt`)" in created
    assert "COLLATE=utf8mb4_unicode_ci" in created
    assert query(empty_mariadb, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]

    again = migrate("--database-url", empty_mariadb, cwd=tmp_path)
    assert again.stdout.startswith("nothing to do"), again.stdout + again.stderr
    down = migrate("--database-url", empty_mariadb, "--downgrade", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert query(empty_mariadb, "SHOW TABLES") == [(VERSION_TABLE,)]


def test_the_repositorys_alembic_creates_the_same_table(empty_mariadb: str) -> None:
    result = alembic(empty_mariadb, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    with mariadb_database("fps_prisma") as prisma:
        query(prisma, PRISMA_MYSQL_DDL)
        assert show_create(empty_mariadb) == show_create(prisma)
    check = alembic(empty_mariadb, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_table_prisma_made_is_left_as_it_is_and_recorded(empty_mariadb: str, tmp_path: Path) -> None:
    query(empty_mariadb, PRISMA_MYSQL_DDL)
    query(empty_mariadb, "INSERT INTO `Session` VALUES ('a', 'a', '{}', '2030-01-01 00:00:00.000')")
    result = migrate("--database-url", empty_mariadb, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert query(empty_mariadb, "SELECT id FROM `Session`") == [("a",)]
    assert query(empty_mariadb, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]


def test_sql_prints_mysqls_ddl_without_a_server(tmp_path: Path) -> None:
    url = f"mysql://root@127.0.0.1:{free_port()}/nowhere"
    result = migrate("--database-url", url, "--sql", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ddl = result.stdout
    assert "CREATE TABLE `Session` (" in ddl
    assert "id VARCHAR(191) NOT NULL" in ddl
    assert "data MEDIUMTEXT NOT NULL" in ddl
    assert "`expiresAt` DATETIME(3) NOT NULL" in ddl
    assert "PRIMARY KEY (id)" in ddl
    assert "Session_pkey" not in ddl
    assert "CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci" in ddl
    assert "CREATE UNIQUE INDEX `Session_sid_key` ON `Session` (sid);" in ddl
    assert "CREATE INDEX `Session_expiresAt_idx` ON `Session` (`expiresAt`);" in ddl


def test_the_ddl_for_a_dba_makes_prismas_table(empty_mariadb: str, tmp_path: Path) -> None:
    ddl = migrate("--database-url", empty_mariadb, "--sql", cwd=tmp_path).stdout
    assert query(empty_mariadb, "SHOW TABLES") == []  # nothing was run
    for chunk in ddl.split(";"):
        statement = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        if statement:
            query(empty_mariadb, statement)
    with mariadb_database("fps_prisma") as prisma:
        query(prisma, PRISMA_MYSQL_DDL)
        assert show_create(empty_mariadb) == show_create(prisma)
    assert migrate("--database-url", empty_mariadb, cwd=tmp_path).stdout.startswith("nothing to do")


# -- URLs and errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
async def test_a_plain_url_picks_asyncmy(migrated: str, scheme: str) -> None:
    url = make_url(migrated).set(drivername=scheme).render_as_string(hide_password=False)
    async with PrismaSessionStore(url) as store:
        assert store.engine.dialect.driver == "asyncmy"
        await store.set("abc", {"cookie": {"originalMaxAge": None}, "n": 1})
        assert await store.get("abc") == {"cookie": {"originalMaxAge": None}, "n": 1}


async def test_a_missing_table_and_an_unreachable_server_are_named(empty_mariadb: str) -> None:
    async with PrismaSessionStore(empty_mariadb) as store:
        with pytest.raises(TableMissingError):
            await store.get("abc")
    nowhere = f"mysql://root@127.0.0.1:{free_port()}/nowhere"
    async with PrismaSessionStore(nowhere, operation_timeout=2) as store:
        with pytest.raises(StoreUnavailableError):
            await store.get("abc")


async def test_stored_expiry_is_utc_to_the_millisecond(store: PrismaSessionStore, migrated: str) -> None:
    expires = utcnow().replace(microsecond=123456) + timedelta(hours=1)
    await store.create("abc", {"cookie": {}}, expires_at=expires)
    [(stored,)] = await aquery(migrated, "SELECT `expiresAt` FROM `Session`")
    assert stored == expires.replace(microsecond=123000)  # DATETIME(3), no zone: UTC as written


# -- comparisons under utf8mb4_unicode_ci ---------------------------------------------------------------


async def test_a_change_of_case_is_not_lost_to_a_concurrent_write(store: PrismaSessionStore) -> None:
    await store.set("abc", {"cookie": {}, "name": "Bob", "visits": 1})
    loaded = await store.load("abc")
    assert loaded is not None
    await store.set("abc", {"cookie": {}, "name": "bob", "visits": 1})  # another request, meanwhile
    # The collation says 'Bob' = 'bob': a compare-and-set by it would overwrite the change.
    assert await store.update("abc", {**loaded.data, "visits": 2}, changed=["visits"], expected=loaded.text)
    assert await store.get("abc") == {"cookie": {}, "name": "bob", "visits": 2}


async def test_session_ids_are_compared_exactly(store: PrismaSessionStore) -> None:
    await store.set("AbC", {"cookie": {}, "n": 1})
    assert await store.get("abc") is None
    assert await store.touch("abc", {"cookie": {}}) is False
    await store.destroy("ABC")
    assert await store.get("AbC") == {"cookie": {}, "n": 1}
    assert await store.rename("abc", "other") is False
    assert await store.ids() == ["AbC"]


async def test_a_set_of_a_sid_that_differs_only_in_case_overwrites_nothing(store: PrismaSessionStore) -> None:
    # The unique index compares under the collation: 'ABC' is a duplicate of 'abc' to ON DUPLICATE KEY.
    await store.set("abc", {"cookie": {}, "who": "abc"})
    with pytest.raises(ValueError, match="differs only in case"):  # and nothing is written
        await store.set("ABC", {"cookie": {}, "who": "ABC"})
    assert await store.get("abc") == {"cookie": {}, "who": "abc"}
    assert await store.get("ABC") is None
    await store.set("abc", {"cookie": {}, "who": "abc again"})  # the sid itself still upserts
    assert await store.get("abc") == {"cookie": {}, "who": "abc again"}


async def test_a_set_whose_row_id_another_sid_has_overwrites_nothing(migrated: str) -> None:
    # ON DUPLICATE KEY fires on the primary key too: with a db_record_id_function that repeats itself
    # the second sid's set found the first one's row, and overwrote its data.
    async with PrismaSessionStore(migrated, db_record_id_function=lambda sid: "same") as store:
        await store.set("one", {"cookie": {}, "who": 1})
        with pytest.raises(ValueError, match="whose id is the same"):
            await store.set("two", {"cookie": {}, "who": 2})
        assert await store.get("one") == {"cookie": {}, "who": 1}
        assert await store.get("two") is None


async def test_a_sid_longer_than_the_column_is_refused_first(store: PrismaSessionStore) -> None:
    long = "s" * 192  # VARCHAR(191): MySQL's strict mode would answer with a DataError
    with pytest.raises(ValueError, match="at most 191 characters"):
        await store.set(long, {"cookie": {}})
    await store.set("short", {"cookie": {}})
    with pytest.raises(ValueError, match="at most 191 characters"):
        await store.rename("short", long)
    assert await store.get(long) is None  # a read of such a sid finds nothing, and is no error
    assert await store.ids() == ["short"]


async def test_a_date_mysql_cannot_hand_to_python_is_no_session_and_no_error(
    store: PrismaSessionStore, migrated: str
) -> None:
    # Without NO_ZERO_DATE / NO_ZERO_IN_DATE (MariaDB's default sql_mode has neither) a DATETIME holds
    # '0000-00-00' and '2099-00-15', which the driver hands over as text, not as a datetime.
    data = json.dumps({"cookie": {}, "user": 1})
    await aquery(
        migrated,
        "SET SESSION sql_mode = ''; INSERT INTO `Session` VALUES "
        f"('z1', 'zero', '{data}', '0000-00-00 00:00:00'), "
        f"('z2', 'no-month', '{data}', '2099-00-15 00:00:00')",
    )
    assert await store.load("zero") is None
    assert await store.get("no-month") is None
    assert await store.matching(user=1) == {}
    await store.set("fine", {"cookie": {}, "user": 1})
    assert list(await store.matching(user=1)) == ["fine"]


async def test_a_session_too_large_for_mysql_is_refused_before_any_statement(
    store: PrismaSessionStore,
) -> None:
    # MEDIUMTEXT holds 16 MiB, and MariaDB's default max_allowed_packet is 16 MiB for the whole statement:
    # the server closed the connection, which read as an outage (StoreUnavailableError, a 503).
    await store.set("big", {"cookie": {}, "n": 1})
    for method in (store.set, store.create):
        with pytest.raises(SessionTooLargeError):
            await method("big", {"cookie": {}, "x": "a" * 16_777_000})
    assert await store.get("big") == {"cookie": {}, "n": 1}
    await store.set("big", {"cookie": {}, "x": "a" * 10_000_000})  # what fits is stored as before
    stored = await store.get("big")
    assert stored is not None
    assert len(stored["x"]) == 10_000_000


# -- pruning --------------------------------------------------------------------------------------------


async def test_a_prune_run_skips_while_another_process_holds_the_lock(
    store: PrismaSessionStore, migrated: str
) -> None:
    await seed(migrated, expired=10, live=2)
    sql, key = store.executor.sql.full, {"key": store._pruner.lock_key}
    other = create_async_engine(driver_url(migrated))
    try:
        async with other.connect() as conn:
            assert (await conn.execute(sql.prune_lock(), key)).scalar() == 1  # type: ignore[arg-type]
            assert await store.prune() == 0
            assert store.last_prune_skipped
            assert await counts(migrated) == (10, 2)
        # The other connection is closed: its lock goes with it, once the server has ended its session.
    finally:
        await other.dispose()

    async def lock_released() -> bool:
        async with store.engine.connect() as conn:
            held = await conn.execute(select(func.is_used_lock(sql.lock_name())), key)  # type: ignore[attr-defined]
            return held.scalar() is None

    await wait_until(lock_released)
    assert await store.prune() == 10
    assert not store.last_prune_skipped
    assert await counts(migrated) == (0, 2)


@pytest.fixture
def other_database(mariadb_url: str) -> Iterator[str]:
    with mariadb_database("fps_other") as url:
        yield url


async def test_the_lock_is_per_database(
    store: PrismaSessionStore, migrated: str, other_database: str
) -> None:
    """GET_LOCK's names are server-wide: a pruner of another database on the same server is no reason
    to skip."""
    await seed(migrated, expired=3, live=0)
    other = create_async_engine(driver_url(other_database))
    try:
        async with other.connect() as conn:
            sql, key = store.executor.sql.full, {"key": store._pruner.lock_key}
            assert (await conn.execute(sql.prune_lock(), key)).scalar() == 1  # type: ignore[arg-type]
            assert await store.prune() == 3
    finally:
        await other.dispose()


async def test_no_prune_lock_outlives_a_prune_run(migrated: str) -> None:
    await seed(migrated, expired=3000, live=5)
    stores = [PrismaSessionStore(migrated, prune_batch_size=100, prune_pause=0) for _ in range(3)]
    try:
        removed = await asyncio.gather(*(store.prune() for store in stores))
        assert sum(removed) <= 3000
        lock_name = stores[0].executor.sql.lock_name()  # type: ignore[attr-defined]
        async with stores[0].engine.connect() as conn:
            held = await conn.execute(
                select(func.is_used_lock(lock_name)), {"key": stores[0]._pruner.lock_key}
            )
            assert held.scalar() is None  # no connection holds it, the pooled ones included
        await seed(migrated, expired=0, live=0)
        await a_fresh_store_prunes(migrated)
        assert await counts(migrated) == (0, 5)
    finally:
        for store in stores:
            await store.shutdown()


async def test_prune_batches_are_bounded_and_go_through_the_expiry_index(migrated: str) -> None:
    await seed(migrated, expired=2500, live=10)
    seen: list[int] = []
    async with PrismaSessionStore(migrated, prune_batch_size=1000) as store:
        assert await store.prune(progress=seen.append) == 2500
        assert "LIMIT" in store.executor.sql.prune_batch.sql
    assert seen == [1000, 2000, 2500]
    assert await counts(migrated) == (0, 10)


@pytest.mark.parametrize("disposes", [False, True])
async def test_a_prune_batch_walks_the_expiry_index_after_a_mass_expiry(
    migrated: str, disposes: bool
) -> None:
    """After one UPDATE expired two thirds of the rows (as benchmarks/mass_expiry.py does), and before any
    ANALYZE (statistics that say none is expired), each batch (its DELETE, or with a `dispose` its SELECT
    ... FOR UPDATE) reads a range of the expiresAt index in its order and stops at its LIMIT: a scan of
    the table, or a sort of every expired row, per batch would prune a backlog in quadratic time."""
    await seed(migrated, expired=0, live=3000)
    await aquery(migrated, "ANALYZE TABLE `Session`")
    await aquery(
        migrated,
        "UPDATE `Session` SET `expiresAt` = UTC_TIMESTAMP(3) - INTERVAL 1 HOUR "
        "WHERE CAST(SUBSTRING(id, 5) AS UNSIGNED) <= 2000",
    )
    async with PrismaSessionStore(migrated) as store:
        sql = store.executor.sql
        statement = (sql.prune_batch_returning if disposes else sql.prune_batch).sql
    assert statement.count("%s") == 2  # now, then the batch's size
    plan = await aquery(
        migrated, "EXPLAIN " + statement.replace("%s", "UTC_TIMESTAMP(3)", 1).replace("%s", "500")
    )
    [row] = plan
    assert row[5] == "Session_expiresAt_idx", plan  # the `key` column
    assert row[3] == "range", plan  # the `type` column
    assert "filesort" not in str(row[9]), plan  # `Extra`: read in the index's order, no sort


async def test_a_prune_with_dispose_selects_then_deletes(migrated: str) -> None:
    await seed(migrated, expired=5, live=1)
    disposed: list[str] = []
    async with PrismaSessionStore(
        migrated, prune_batch_size=2, dispose=lambda sid, data: disposed.append(sid)
    ) as store:
        assert await store.prune() == 5
    assert sorted(disposed) == [f"expired{n}" for n in range(1, 6)]
    assert await counts(migrated) == (0, 1)


async def test_several_processes_prune_at_once_without_errors_or_touching_live_rows(migrated: str) -> None:
    await seed(migrated, expired=20_000, live=2_000)
    removed = await prune_in_processes(migrated, 4)
    assert removed == 20_000  # each expired row removed once, by whichever process held the lock
    assert await counts(migrated) == (0, 2_000)


async def test_a_write_stuck_behind_a_row_lock_is_unavailable_not_hung(migrated: str) -> None:
    """innodb_lock_wait_timeout is set from operation_timeout: the server gives up first, with error 1205,
    which is an outage (a 503), not a bug."""
    async with PrismaSessionStore(migrated, operation_timeout=3) as store:
        await store.set("abc", {"cookie": {}, "n": 1})
        loaded = await store.load("abc")
        assert loaded is not None
        holder = create_async_engine(driver_url(migrated))
        try:
            async with holder.begin() as conn:
                table = session_table()
                await conn.execute(select(table.c.id).where(table.c.sid == "abc").with_for_update())
                with pytest.raises(StoreUnavailableError, match="1205"):
                    await store.update("abc", {"cookie": {}, "n": 2}, changed=["n"], expected=loaded.text)
        finally:
            await holder.dispose()
        assert await store.get("abc") == {"cookie": {}, "n": 1}


async def test_a_statement_mysql_refuses_is_a_bug_not_an_outage(migrated: str) -> None:
    """asyncmy raises OperationalError for every error number it does not classify, an unknown column
    among them: that is not the database being unavailable."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from fastapi_prisma_session.dialects.driver import Fault
    from fastapi_prisma_session.dialects.mysql.driver import Driver

    engine = create_async_engine(driver_url(migrated))
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT no_such_column FROM `Session`"))
    finally:
        await engine.dispose()
    assert Driver().classify(caught.value.orig) is not Fault.UNAVAILABLE


async def test_statements_run_in_autocommit_and_transactions_are_real(store: PrismaSessionStore) -> None:
    """The store's connections stay in autocommit mode (no SET AUTOCOMMIT round trips around each
    statement); prune batches and deletes that hand back their rows still get a transaction, which
    reads what is committed."""
    from sqlalchemy import text

    from fastapi_prisma_session.executor import Transaction

    executor = store.executor
    state = text("SELECT @@autocommit, @@in_transaction")
    isolation = text(
        "SELECT trx_isolation_level FROM information_schema.innodb_trx "
        "WHERE trx_mysql_thread_id = CONNECTION_ID()"
    )

    async def inside(transaction: Transaction) -> tuple[list[object], object]:
        await transaction.fetch(store.executor.sql.live_count, {"now": utcnow()})  # the transaction starts
        return list((await transaction.fetch(state, {}))[0]), (await transaction.fetch(isolation, {}))[0][0]

    assert list((await executor.fetch(state, {}))[0]) == [1, 0]
    assert await executor.transaction(inside) == ([1, 1], "READ COMMITTED")
    assert list((await executor.fetch(state, {}))[0]) == [1, 0]


async def test_reads_survive_connections_the_server_killed(store: PrismaSessionStore, migrated: str) -> None:
    """The request path's own connections: one round trip a statement, and a read whose idle connection
    the server closed (a restart, wait_timeout, a KILL) runs again on a new one."""
    await store.set("abc", {"cookie": {}, "n": 1})
    assert await store.get("abc") == {"cookie": {}, "n": 1}
    requests = store.executor.pool
    assert requests is not None
    assert requests.open_connections >= 1
    database = make_url(migrated).database
    ids = await mariadb_sql(f"SELECT id FROM information_schema.processlist WHERE db = '{database}'")
    for (connection_id,) in ids:
        await mariadb_sql(f"KILL {connection_id}")
    assert await store.get("abc") == {"cookie": {}, "n": 1}
    assert await store.update("abc", {"cookie": {}, "n": 2}) is True
    assert await store.get("abc") == {"cookie": {}, "n": 2}


async def test_statements_outside_the_request_path_end_when_the_server_goes_silent(migrated: str) -> None:
    """set(), destroy() (a logout), prune() and the rest ran through SQLAlchemy's pool, whose asyncmy
    connections had no read timeout: against a silent server they waited forever. Every statement now
    runs on the store's own connections, within operation_timeout."""
    server = make_url(migrated)
    with FaultProxy(server.host or "127.0.0.1", server.port or 3306) as proxy:
        through = server.set(port=proxy.port).render_as_string(hide_password=False)
        async with PrismaSessionStore(through, operation_timeout=1) as store:
            await store.set("abc", {"cookie": {}, "n": 1})  # the table looked at, a pooled connection
            proxy.blackhole()
            started = asyncio.get_running_loop().time()
            with pytest.raises(StoreUnavailableError):
                # A bound far past the deadline, so that a hang fails the test instead of hanging it.
                await asyncio.wait_for(store.destroy("abc"), 60)
            assert asyncio.get_running_loop().time() - started < 2.5
            proxy.forward()
        assert proxy.errors == []


async def test_the_request_path_connects_with_the_engine_options_connect_args(migrated: str) -> None:
    """engine_options' connect_args (an ssl dict, say) reached only SQLAlchemy's connections."""
    store = PrismaSessionStore(migrated, engine_options={"connect_args": {"sql_mode": "ANSI_QUOTES"}})
    try:
        requests = store.executor.pool
        assert requests is not None
        row = await requests.run(
            "fetchrow", "SELECT @@SESSION.sql_mode, @@SESSION.innodb_lock_wait_timeout", []
        )
        assert row == ("ANSI_QUOTES", 3)  # and the store's own defaults are kept
    finally:
        await store.shutdown()


async def test_a_write_on_a_connection_the_server_closed_while_idle_is_not_lost(migrated: str) -> None:
    """A server whose wait_timeout is shorter than the pool's idle time (managed MySQL often has one)
    closes idle connections; a write was then sent to one and failed as an outage (a 503), though the
    connection was known to be gone before anything was sent."""
    short_wait = {"connect_args": {"init_command": "SET SESSION wait_timeout = 1"}}
    async with PrismaSessionStore(migrated, engine_options=short_wait) as store:
        await store.set("abc", {"cookie": {}, "n": 1})
        assert await store.load("abc") is not None  # a request-path connection, now idle in the pool
        await asyncio.sleep(2.5)  # past wait_timeout: the server has closed it
        assert await store.update("abc", {"cookie": {}, "n": 2})
        assert await store.get("abc") == {"cookie": {}, "n": 2}


async def test_the_callers_init_command_cannot_undo_the_servers_time_limits(migrated: str) -> None:
    """A caller's `init_command` (connect_args) runs first; the store's settings run after it on each
    new connection, so the server still ends a statement, or a wait for a row lock, before the deadline,
    and reads committed data."""
    own = {"connect_args": {"init_command": "SET SESSION innodb_lock_wait_timeout = 50"}}
    async with PrismaSessionStore(migrated, engine_options=own, operation_timeout=2) as store:
        row = await store.executor.pool.run(
            "fetchrow",
            "SELECT @@SESSION.max_statement_time, @@SESSION.innodb_lock_wait_timeout, @@SESSION.tx_isolation",
            [],
        )
    assert row == (1.4, 1, "READ-COMMITTED")
