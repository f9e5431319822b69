"""The fault-injection proxy itself, in front of the real PostgreSQL: each mode does what it says.

Most tests go through asyncpg; the socket-level ones speak the first step of PostgreSQL's protocol by
hand (an SSLRequest, which the server answers with one byte), so they see exactly what the proxy lets
through, and whether a connection ends with a FIN or a RST.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.faultproxy import FaultProxy
from tests.helpers import ADMIN_URL, missing, wait_until, wait_until_sync

SERVER = make_url(ADMIN_URL)
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# What asyncpg raises when the connection under a query goes away.
CONNECTION_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)

Connect = Callable[..., Awaitable[Any]]


@pytest.fixture(scope="module")
def upstream() -> tuple[str, int]:
    address = (SERVER.host or "127.0.0.1", SERVER.port or 5432)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as error:
        missing(f"PostgreSQL not reachable at {address}: {error}")
    return address


@pytest.fixture
def proxy(upstream: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*upstream) as proxy:
        yield proxy
    assert proxy.errors == []


async def pg_connect(port: int, within: float = 5) -> Any:
    """An asyncpg connection to the server through 127.0.0.1:`port`, giving up after `within` seconds."""
    return await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=SERVER.username,
        password=SERVER.password,
        database=SERVER.database,
        timeout=within,
    )


@pytest.fixture
async def connect(proxy: FaultProxy) -> AsyncIterator[Connect]:
    """Opens asyncpg connections through the proxy; whatever is left open is dropped afterwards."""
    opened: list[Any] = []

    async def connect(within: float = 5) -> Any:
        conn = await pg_connect(proxy.port, within)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.terminate()


def raw(proxy: FaultProxy) -> socket.socket:
    """A plain socket to the proxy, that gives up waiting after one second."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask_ssl(sock: socket.socket, wait: float = 2) -> bytes:
    """Send an SSLRequest: through to the server, it is answered with b"N" or b"S"."""
    sock.sendall(SSL_REQUEST)
    sock.settimeout(wait)
    return sock.recv(1)


def proxy_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("faultproxy")]


async def test_pass_forwards_and_counts_connections(proxy: FaultProxy, connect: Connect) -> None:
    assert proxy.mode == "pass"
    first = await connect()
    second = await connect()
    assert await first.fetchval("SELECT 1") == 1
    assert await second.fetchval("SELECT $1::int + 1", 41) == 42
    assert (proxy.accepted, proxy.open_connections) == (2, 2)
    await first.close()
    await wait_until(lambda: proxy.open_connections == 1)
    assert proxy.accepted == 2


async def test_refuse_fails_new_connections_fast_and_cuts_open_ones(
    proxy: FaultProxy, connect: Connect
) -> None:
    conn = await connect()
    proxy.refuse()
    with pytest.raises(CONNECTION_LOST):
        await conn.fetchval("SELECT 1")

    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await connect()
    assert time.monotonic() - started < 2
    assert proxy.accepted == 1  # the refused attempt never reached the proxy

    proxy.forward()
    assert await (await connect()).fetchval("SELECT 1") == 1  # on the same port again
    assert proxy.accepted == 2


def test_refuse_at_the_socket_level(proxy: FaultProxy) -> None:
    sock = raw(proxy)
    wait_until_sync(lambda: proxy.open_connections == 1)
    proxy.refuse()
    with sock:
        sock.settimeout(2)
        assert sock.recv(1) == b""  # cut with a FIN, as when the server process exits
    with pytest.raises(ConnectionRefusedError):
        raw(proxy)
    proxy.forward()
    with raw(proxy) as sock:
        assert ask_ssl(sock) in (b"N", b"S")


async def test_blackhole_lets_a_connect_time_out(proxy: FaultProxy, connect: Connect) -> None:
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await connect(within=1)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3
    assert proxy.accepted == 1  # accepted, then never answered

    proxy.forward()
    assert await (await connect()).fetchval("SELECT 1") == 1


async def test_blackhole_silences_an_open_connection(proxy: FaultProxy, connect: Connect) -> None:
    conn = await connect()
    proxy.blackhole()
    query = asyncio.create_task(conn.fetchval("SELECT 1"))
    await asyncio.sleep(0.5)
    assert not query.done()
    conn.terminate()
    with pytest.raises(CONNECTION_LOST):
        await query


def test_blackhole_swallows_bytes_then_forwarding_resumes(proxy: FaultProxy) -> None:
    with raw(proxy) as sock:
        wait_until_sync(lambda: proxy.open_connections == 1)
        proxy.blackhole()
        with pytest.raises(TimeoutError):
            ask_ssl(sock, wait=0.5)
        proxy.forward()
        with pytest.raises(TimeoutError):
            sock.recv(1)  # the swallowed request is gone for good: nothing comes late
        assert ask_ssl(sock) in (b"N", b"S")  # the same connection forwards again


def test_blackhole_holds_back_the_end_of_a_connection(proxy: FaultProxy) -> None:
    with raw(proxy) as sock:
        wait_until_sync(lambda: proxy.open_connections == 1)
        proxy.blackhole()
        sock.shutdown(socket.SHUT_WR)  # the client's FIN goes nowhere...
        time.sleep(0.3)
        assert proxy.open_connections == 1  # ...so both sides stay open
        proxy.forward()
        wait_until_sync(lambda: proxy.open_connections == 0)
        sock.settimeout(2)
        assert sock.recv(1) == b""


async def test_reset_breaks_open_and_new_connections(proxy: FaultProxy, connect: Connect) -> None:
    conn = await connect()
    proxy.reset()
    with pytest.raises(CONNECTION_LOST):
        await conn.fetchval("SELECT 1")
    await wait_until(lambda: proxy.open_connections == 0)

    started = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await connect()
    assert time.monotonic() - started < 2

    proxy.forward()
    assert await (await connect()).fetchval("SELECT 1") == 1


def test_reset_sends_a_rst(proxy: FaultProxy) -> None:
    with raw(proxy) as sock:
        assert ask_ssl(sock) in (b"N", b"S")
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    # Accepted, then reset at once: the RST may even beat the client's connect() to returning.
    with pytest.raises(ConnectionResetError), raw(proxy) as sock:
        ask_ssl(sock)


async def test_pause_holds_a_query_until_resumed(proxy: FaultProxy, connect: Connect) -> None:
    conn = await connect()
    proxy.pause()
    assert proxy.mode == "paused"
    query = asyncio.create_task(conn.fetchval("SELECT 1"))
    await asyncio.sleep(0.5)
    assert not query.done()
    await asyncio.to_thread(proxy.resume)  # from another thread, as a sync test would
    assert await asyncio.wait_for(query, 5) == 1


async def test_pause_for_some_seconds_resumes_by_itself(proxy: FaultProxy, connect: Connect) -> None:
    conn = await connect()
    started = time.monotonic()
    proxy.pause(0.5)
    assert await asyncio.wait_for(conn.fetchval("SELECT 1"), 5) == 1
    assert time.monotonic() - started > 0.4
    assert proxy.mode == "pass"


def test_pause_holds_bytes_rather_than_dropping_them(proxy: FaultProxy) -> None:
    with raw(proxy) as sock:
        wait_until_sync(lambda: proxy.open_connections == 1)
        proxy.pause()
        with pytest.raises(TimeoutError):
            ask_ssl(sock, wait=0.5)
        proxy.resume()
        sock.settimeout(2)
        assert sock.recv(1) in (b"N", b"S")  # the held request went through


def test_an_unknown_mode_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.set_mode("drop")  # type: ignore[arg-type]
    assert proxy.mode == "pass"


async def test_close_stops_everything(upstream: tuple[str, int]) -> None:
    before = proxy_threads()
    proxy = FaultProxy(*upstream)
    assert len(proxy_threads()) == len(before) + 1
    conn = await pg_connect(proxy.port)
    try:
        proxy.pause()  # a task waits on the mode: close() must end it too
        query = asyncio.create_task(conn.fetchval("SELECT 1"))
        await asyncio.sleep(0.1)
        proxy.close()
        assert proxy_threads() == before
        with pytest.raises(CONNECTION_LOST):
            await asyncio.wait_for(query, 5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        proxy.close()  # twice is harmless
        assert proxy.errors == []
    finally:
        conn.terminate()
