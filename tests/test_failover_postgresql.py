"""A PostgreSQL primary failing over to its standby while clients write, through the real middleware.

Each test starts a primary and a streaming standby of its own (tests/clusters/postgres.py), lists both
hosts in one URL with `target_session_attrs=read-write`, the primary first, and runs CLIENTS clients that
each write a new key into their session as fast as they are answered. Then the primary is killed or
frozen, the standby promoted, and the test checks that every write answered 200 is on the new primary,
that nothing answered but 200 or 503, and how soon every client was served again. The figures are
printed (`-s`); docs/deploying/postgresql-failover.md quotes them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import make_url

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, StoreUnavailableError
from tests.clusters.postgres import PostgresPair
from tests.faultproxy import FaultProxy
from tests.helpers import DOCS, client_for, free_port, make_app, run_module, wait_until

OPERATION_TIMEOUT = 2.0
CLIENTS = 8
PAGE = DOCS / "deploying" / "postgresql-failover.md"


@pytest.fixture
async def pair() -> AsyncIterator[PostgresPair]:
    """A primary with a synchronous standby (a commit waits for the standby), and the session table."""
    with PostgresPair(synchronous=True) as started:
        await create_table(started)
        yield started


@pytest.fixture
async def async_pair() -> AsyncIterator[PostgresPair]:
    with PostgresPair(synchronous=False) as started:
        await create_table(started)
        yield started


async def create_table(pair: PostgresPair) -> None:
    # The standby listed first: the engine (SQLAlchemy's asyncpg dialect) must find the primary.
    store = PrismaSessionStore(pair.url(first=pair.standby))
    try:
        await store.create_table()
    finally:
        await store.shutdown()


@dataclass
class Client:
    sid: str | None = None
    acknowledged: list[str] = field(default_factory=list)
    # (when it was answered, its status), in order
    answers: list[tuple[float, int]] = field(default_factory=list)

    def served_again(self, since: float) -> float | None:
        """When this client's first 200 after `since` came, or None."""
        return next((at for at, status in self.answers if at > since and status == 200), None)


@dataclass
class Load:
    """CLIENTS clients writing a new key each, until `stop` is set."""

    store: PrismaSessionStore
    clients: list[Client] = field(default_factory=lambda: [Client() for _ in range(CLIENTS)])
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        app = make_app(self.store)
        await asyncio.gather(*(self._write(app, client) for client in self.clients))

    async def _write(self, app: object, client: Client) -> None:
        async with client_for(app) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                response = await http.post("/write", params={"key": f"k{n}", "value": str(n)})
                client.answers.append((time.monotonic(), response.status_code))
                if response.status_code == 200:
                    client.sid = response.json()["id"]
                    client.acknowledged.append(f"k{n}")
                await asyncio.sleep(0.005)

    @property
    def acknowledged(self) -> int:
        return sum(len(client.acknowledged) for client in self.clients)

    def statuses(self) -> set[int]:
        return {status for client in self.clients for _, status in client.answers}

    async def until_all_served_after(self, moment: float, within: float) -> float:
        """Wait until every client had a 200 after `moment`; the seconds from `moment` to the last of
        those (`within` plus a little if some client never was)."""
        ends = time.monotonic() + within + 1
        while time.monotonic() < ends:
            served = [client.served_again(moment) for client in self.clients]
            if all(at is not None for at in served):
                return max(at for at in served if at is not None) - moment
            await asyncio.sleep(0.05)
        return within + 1

    async def lost_on(self, url: str) -> int:
        """How many acknowledged writes the database of `url` does not hold."""
        reader = PrismaSessionStore(url)
        try:
            lost = 0
            for client in self.clients:
                assert client.sid is not None
                data = await reader.get(client.sid) or {}
                lost += sum(key not in data for key in client.acknowledged)
            return lost
        finally:
            await reader.shutdown()


async def fail_over(pair: PostgresPair, load: Load, fault: str, lag: float) -> tuple[float, float]:
    """With the load running, `fault` ("kill" or "freeze") the primary, promote the standby; the seconds
    from the fault to the promotion, and from the promotion until every client was served again. With
    `lag`, the standby stops receiving WAL that many seconds before the fault."""
    await wait_until(lambda: all(client.acknowledged for client in load.clients), within=10)
    await asyncio.sleep(0.5)
    if lag:
        await asyncio.to_thread(pair.detach, pair.standby)
        await asyncio.sleep(lag)
    faulted = time.monotonic()
    if fault == "kill":
        pair.kill(pair.primary)
    else:
        pair.freeze(pair.primary)
    await asyncio.sleep(0.3)  # the clients notice: the dead connections fail, the frozen ones hang
    await asyncio.to_thread(pair.promote, pair.standby)
    promoted = time.monotonic()
    back = await load.until_all_served_after(promoted, within=OPERATION_TIMEOUT + 5)
    await asyncio.sleep(0.5)  # writes on the new primary
    return promoted - faulted, back


async def run_fault(pair: PostgresPair, fault: str, lag: float = 0) -> tuple[Load, float, int]:
    store = PrismaSessionStore(pair.url(), operation_timeout=OPERATION_TIMEOUT)
    load = Load(store)
    running = asyncio.create_task(load.run())
    try:
        _, back = await fail_over(pair, load, fault, lag)
    finally:
        load.stop.set()
        await running
        await store.shutdown()
    lost = await load.lost_on(pair.dsn(pair.standby))
    return load, back, lost


async def test_a_killed_primary_listed_first_loses_no_acknowledged_write(pair: PostgresPair) -> None:
    load, back, lost = await run_fault(pair, "kill")
    print(f"\nkill: {load.acknowledged} writes acknowledged, {lost} lost, every client served {back:.2f} s "
          f"after the promotion")  # fmt: skip
    assert lost == 0
    assert load.statuses() <= {200, 503}
    assert back <= OPERATION_TIMEOUT + 3


async def test_a_frozen_primary_listed_first_is_left_for_the_promoted_standby(pair: PostgresPair) -> None:
    load, back, lost = await run_fault(pair, "freeze")
    print(f"\nfreeze: {load.acknowledged} writes acknowledged, {lost} lost, every client served {back:.2f} s "
          f"after the promotion")  # fmt: skip
    assert back <= OPERATION_TIMEOUT + 5
    assert lost == 0
    assert load.statuses() <= {200, 503}


async def test_asynchronous_replication_loses_what_the_standby_had_not_received(
    async_pair: PostgresPair,
) -> None:
    # The standby stops receiving a second before the kill, as one that lags behind would: the writes of
    # that second were acknowledged by the primary alone, and are gone with it.
    load, back, lost = await run_fault(async_pair, "kill", lag=1.0)
    print(f"\nasync kill, standby 1 s behind: {load.acknowledged} writes acknowledged, {lost} lost, every "
          f"client served {back:.2f} s after the promotion")  # fmt: skip
    assert 0 < lost < load.acknowledged
    assert back <= OPERATION_TIMEOUT + 3
    assert load.statuses() <= {200, 503}


async def test_a_standby_is_never_written_to() -> None:
    with PostgresPair() as pair:
        # The standby listed first: `migrate` (Alembic, through SQLAlchemy) must find the primary.
        done = run_module("fastapi_prisma_session", "migrate", "--database-url", pair.url(first=pair.standby))
        assert done.returncode == 0, done.stderr
        await a_standby_is_never_written_to(pair)
        done = run_module("fastapi_prisma_session", "prune", "--database-url", pair.url(first=pair.standby))
        assert done.returncode == 0, done.stderr


async def a_standby_is_never_written_to(pair: PostgresPair) -> None:
    # read-write: asyncpg looks at each host it reaches, and the store goes on to the primary.
    listed_first = PrismaSessionStore(pair.url(first=pair.standby), operation_timeout=OPERATION_TIMEOUT)
    # any: the store is handed the standby; its write is a 503, and the connection is dropped, so that
    # the next one is opened on whichever host takes writes by then.
    anywhere = PrismaSessionStore(
        pair.url(first=pair.standby, attrs="any"), operation_timeout=OPERATION_TIMEOUT
    )
    try:
        await listed_first.set("s1", {"cookie": {"originalMaxAge": None}, "n": 1})
        assert (await listed_first.get("s1") or {}).get("n") == 1

        async def replicated() -> bool:  # a read from the standby is fine, once the row got there
            return (await anywhere.get("s1") or {}).get("n") == 1

        await wait_until(replicated)
        with pytest.raises(StoreUnavailableError):
            await anywhere.set("s2", {"cookie": {"originalMaxAge": None}, "n": 2})
        assert anywhere.executor.pool.open_connections == 0
    finally:
        await listed_first.shutdown()
        await anywhere.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write",
        "postgres://u:secret@h1,h2:5433/db",
        "postgresql+asyncpg://u@10.0.0.1:5432,10.0.0.2:5432/db?target_session_attrs=primary&pgbouncer=true",
    ],
)
def test_a_host_list_is_accepted(url: str) -> None:
    store = PrismaSessionStore(url)
    assert len(store.engine.url.query["host"]) == 2


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://u@h1:5432,,h2:5432/db", "empty entry"),
        ("postgresql://u@h1:x,h2:5432/db", "a port number"),
        ("postgresql://u@h1:5432,h2:99999/db", "a port number"),
        ("postgresql://u@[::1]:5432,h2:5432/db", "IPv6"),
        ("postgresql://u@h1,h2/db?host=h3", "keep one list"),
        ("postgresql://u@h1,h2/db?target_session_attrs=master", "read-write to reach the primary"),
        ("postgresql://u@h1/db?target_session_attrs=readwrite", "read-write to reach the primary"),
        ("postgresql://u@h1:abc/db", "not a database URL"),
    ],
)
def test_a_malformed_host_list_is_refused_clearly(url: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match=said):
        PrismaSessionStore(url)


def test_every_url_of_the_failover_page_lists_two_hosts_the_store_accepts() -> None:
    # tests/test_docs.py runs the page's Python sample; here, every URL of the page.
    urls = re.findall(r"postgres(?:ql)?(?:\+asyncpg)?://[^\s`\"]+", PAGE.read_text())
    assert len(urls) >= 3
    for url in urls:
        assert len(PrismaSessionStore(url).engine.url.query["host"]) == 2, url


def host_list(*ports: int, database: str) -> str:
    return f"postgresql://postgres@{','.join(f'127.0.0.1:{port}' for port in ports)}/{database}"


async def test_a_silent_host_listed_first_costs_its_share_then_is_tried_last(
    postgres_url: str, proxy: FaultProxy
) -> None:
    # asyncpg alone would spend the whole connect timeout on the silent host, and fail.
    direct = PrismaSessionStore(postgres_url, table_name="host_list_sessions")
    await direct.create_table()
    server = make_url(postgres_url)
    proxy.blackhole()
    url = host_list(proxy.port, server.port or 5432, database=server.database or "")
    store = PrismaSessionStore(url, table_name="host_list_sessions", operation_timeout=OPERATION_TIMEOUT)
    try:
        await store.set("s1", {"cookie": {"originalMaxAge": None}, "n": 1})
        tried = proxy.accepted
        await store.executor.pool.close()  # the next statement opens a new connection
        assert (await store.get("s1") or {}).get("n") == 1
        assert proxy.accepted == tried  # the host that served last was tried first, and served
    finally:
        await store.shutdown()
        async with direct.engine.begin() as conn:
            await conn.exec_driver_sql('DROP TABLE "host_list_sessions"')
        await direct.shutdown()


async def test_every_host_down_is_a_503_and_a_refused_login_says_so(postgres_url: str) -> None:
    server = make_url(postgres_url)
    down = PrismaSessionStore(host_list(free_port(), free_port(), database="x"), operation_timeout=1)
    with pytest.raises(StoreUnavailableError):
        await down.get("s1")
    await down.shutdown()
    # One host down, the other refusing the login (no such database): the refusal is what is told.
    refused = host_list(free_port(), server.port or 5432, database="fps_no_such_database")
    store = PrismaSessionStore(refused, operation_timeout=1)
    with pytest.raises(ConfigurationError, match="fps_no_such_database"):
        await store.get("s1")
    await store.shutdown()
