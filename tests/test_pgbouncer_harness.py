"""The PgBouncer test helper (tests/pgbouncer.py) against the real programs, and what PgBouncer 1.18 does
to an asyncpg client: the startup parameters it refuses, and asyncpg's prepared-statement cache breaking in
transaction mode, which is the problem the library will have to solve."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import missing
from tests.pgbouncer import PoolMode, in_front_of_test_server, pgbouncer_binary, require_programs


@pytest.fixture
def database(postgres_url: str) -> str:
    """This run's database. postgres_url skips without PostgreSQL, or fails under CI; so do these programs."""
    require_programs()
    name = make_url(postgres_url).database
    assert name is not None
    return name


bouncer = in_front_of_test_server


async def connect(dsn: str, **options: Any) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=10, **options)


@pytest.fixture
def closing() -> Iterator[list[asyncpg.Connection]]:
    """Connections put here are dropped at the end even if the test fails (terminate(): no round trip, as
    the PgBouncer they went through may be gone by then)."""
    connections: list[asyncpg.Connection] = []
    yield connections
    for conn in connections:
        conn.terminate()


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
async def test_queries_go_through_and_it_is_gone_afterwards(database: str, pool_mode: PoolMode) -> None:
    with bouncer(pool_mode, pool_size=2) as running:
        assert running.url(database) == f"postgresql+asyncpg://postgres@127.0.0.1:{running.port}/{database}"
        conn = await connect(running.dsn(database), statement_cache_size=0)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        pools = {row["database"]: row for row in running.admin("SHOW POOLS;")}
        assert pools[database]["pool_mode"] == pool_mode
        assert any(row["database"] == database for row in running.admin("SHOW SERVERS;"))
        pid, port, directory = running.pid, running.port, running.directory
        assert directory is not None
        assert (directory / "pgbouncer.pid").read_text().strip() == str(pid)

    assert running.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert not directory.exists()


def test_a_pgbouncer_that_cannot_start_fails_with_its_log() -> None:
    if pgbouncer_binary() is None:
        missing("pgbouncer not installed")
    broken = bouncer(settings={"max_db_connections": "lots"})
    with pytest.raises(RuntimeError, match=r"(?s)pgbouncer exited.*invalid value \"lots\""):
        broken.start()
    assert broken.process.returncode is not None
    assert broken.directory is None


@pytest.mark.parametrize(
    "setting",
    [{"statement_timeout": "1000"}, {"options": "-c statement_timeout=1000"}, {"search_path": "public"}],
    ids=["statement_timeout", "options", "search_path"],
)
async def test_pgbouncer_refuses_other_startup_parameters(database: str, setting: dict[str, str]) -> None:
    with bouncer() as running:
        (name,) = setting
        with pytest.raises(asyncpg.ProtocolViolationError, match=f"unsupported startup parameter: {name}"):
            await connect(running.dsn(database), statement_cache_size=0, server_settings=setting)


async def test_the_startup_parameters_it_tracks_are_applied(
    database: str, closing: list[asyncpg.Connection]
) -> None:
    setting = {"application_name": "fps-harness", "TimeZone": "Asia/Tokyo"}
    with bouncer() as running:
        conn = await connect(running.dsn(database), statement_cache_size=0, server_settings=setting)
        closing.append(conn)
        assert await conn.fetchval("SHOW application_name") == "fps-harness"
        assert await conn.fetchval("SHOW TimeZone") == "Asia/Tokyo"
        await conn.close()


async def test_an_ignored_startup_parameter_is_dropped_not_applied(
    database: str, closing: list[asyncpg.Connection]
) -> None:
    with bouncer(ignore_startup_parameters=["statement_timeout"]) as running:
        conn = await connect(
            running.dsn(database), statement_cache_size=0, server_settings={"statement_timeout": "1234"}
        )
        closing.append(conn)
        assert await conn.fetchval("SHOW statement_timeout") == "0"
        await conn.close()


@pytest.mark.parametrize(("cache", "breaks"), [(None, True), (0, False)], ids=["default-cache", "no-cache"])
async def test_asyncpg_statement_cache_breaks_in_transaction_mode(
    database: str, closing: list[asyncpg.Connection], cache: int | None, breaks: bool
) -> None:
    """Deterministically, with two server connections S1 and S2: `b` holds S1 in a transaction, so `a`'s
    query is prepared on S2; `c` then holds S2 and `b` gives S1 back, so `a`'s next run of the same query can
    only go to S1, which never saw the statement asyncpg's cache says is prepared."""
    options = {} if cache is None else {"statement_cache_size": cache}
    query = "SELECT $1::int AS value, pg_backend_pid() AS pid"
    with bouncer("transaction", pool_size=2) as running:
        a, b, c = [await connect(running.dsn(database), **options) for _ in range(3)]
        closing.extend((a, b, c))

        held_by_b = b.transaction()
        await held_by_b.start()
        s1 = await b.fetchval("SELECT pg_backend_pid()")
        first = await a.fetchrow(query, 1)
        assert first is not None
        assert first["value"] == 1
        s2 = first["pid"]
        held_by_c = c.transaction()
        await held_by_c.start()
        assert await c.fetchval("SELECT pg_backend_pid()") == s2 != s1
        await held_by_b.commit()

        if breaks:
            with pytest.raises(
                asyncpg.InvalidSQLStatementNameError,
                match=r'prepared statement "__asyncpg_stmt_\w+__" does not exist',
            ):
                await a.fetchrow(query, 2)
        else:
            second = await a.fetchrow(query, 2)
            assert second is not None
            assert (second["value"], second["pid"]) == (2, s1)
        await held_by_c.commit()
        for conn in (a, b, c):
            await conn.close()
