"""A TCP proxy that injects network faults, for tests that need the database to misbehave on demand.

`FaultProxy` listens on a free 127.0.0.1 port and forwards every connection to an upstream server (the
test PostgreSQL). Point the code under test at `proxy.port` and switch modes at any moment, from any
thread or event loop; a switch has taken effect when the call returns.

    with FaultProxy("127.0.0.1", 5432) as proxy:
        ...                       # connect to 127.0.0.1:proxy.port
        proxy.blackhole()         # the server goes silent
        proxy.forward()           # and comes back

Modes, at the socket level:

- ``pass``: bytes are forwarded both ways.
- ``refuse``: the listening socket is closed, so a new connect() fails at once with ECONNREFUSED (the
  kernel answers the SYN with a RST). Open connections are cut on both sides as when a server process
  exits: a FIN, or a RST where unread bytes are waiting. Leaving the mode listens again on the same port
  (an OSError if something else has taken it meanwhile, unlikely on 127.0.0.1).
- ``blackhole``: new connections are accepted (the kernel completes the handshake) and never answered,
  and no upstream connection is opened for them: they stay silent for their whole life. On open
  connections, bytes in either direction are read and dropped, until the mode changes; end-of-stream is
  held back too.
- ``reset``: every open connection is reset (SO_LINGER 0, then close: a RST on both sides), and new
  connections are accepted and reset at once: the client's first read fails with ECONNRESET (or even
  its connect(), if the RST arrives before the connect call has returned).
- ``paused``: bytes are held, not dropped: what the proxy has read waits in its buffers, the rest in the
  kernel's, and all of it flows on when the mode goes back to ``pass`` (by `forward()`, or by itself
  after `pause(seconds)`). New connections are accepted and connected upstream meanwhile.

The proxy runs its own asyncio event loop in a daemon thread, never on the caller's loop, so it serves
sync tests (TestClient, subprocesses) and async tests alike. `close()` stops the listener, every
connection, every task, the loop and the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "refuse", "blackhole", "reset", "paused"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "blackhole", "reset", "paused")
_Closing = Literal["fin", "cut", "rst"]

_T = TypeVar("_T")
_CHUNK = 64 * 1024
_SWITCH_TIMEOUT = 10.0


def _close(writer: asyncio.StreamWriter | None, how: _Closing) -> None:
    """Close one side: "fin" after the buffered bytes; "cut" at once, dropping them, as when a process
    exits (the kernel still sends a FIN); "rst" at once with SO_LINGER 0, so the kernel sends a RST."""
    if writer is None:
        return
    if how == "fin":
        writer.close()
        return
    if how == "rst":
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One client connection, and its upstream connection once it is open."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None

    def close(self, how: _Closing) -> None:
        _close(self.client, how)
        _close(self.upstream, how)

    async def wait_closed(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`; see the module docstring for modes."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432, *, port: int = 0) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = port
        self._mode: Mode = "pass"
        self._accepted = 0
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()  # set, and replaced, at each mode switch; bound to the loop on use
        self._resume: asyncio.Task[None] | None = None
        self.errors: list[str] = []  # what the proxy's loop reported: a test may assert there is none
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._record_error)
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self._stop_thread()
            raise
        self._thread.name = f"faultproxy-{self.port}"

    # -- the API, callable from any thread but the proxy's own --------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def accepted(self) -> int:
        """Connections accepted since the start, in any mode."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Client connections the proxy holds open now."""
        return len(self._connections)

    def set_mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self._call(self._switch(mode))

    def forward(self) -> None:
        """Back to `pass`: forward bytes (held ones first), listen again if refusing."""
        self.set_mode("pass")

    def refuse(self) -> None:
        self.set_mode("refuse")

    def blackhole(self) -> None:
        self.set_mode("blackhole")

    def reset(self) -> None:
        self.set_mode("reset")

    def pause(self, seconds: float | None = None) -> None:
        """Hold every byte; with `seconds`, go back to `pass` after that long (unless switched before)."""
        self._call(self._switch("paused", resume_after=seconds))

    def resume(self) -> None:
        self.set_mode("pass")

    def close(self) -> None:
        """Stop listening, cut every connection (as `refuse` does), and stop the loop and the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._stop_thread()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy :{self.port} -> {self.upstream_host}:{self.upstream_port} mode={self._mode}"
            f" open={self.open_connections} accepted={self._accepted}>"
        )

    # -- inside the proxy's thread -----------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("FaultProxy's methods are for the tests, not for its own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_SWITCH_TIMEOUT)

    def _record_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return  # a task the proxy cancelled while stopping, not a fault of the proxy
        self.errors.append(str(context.get("exception") or context["message"]))
        loop.default_exception_handler(context)

    def _stop_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()  # closes the listening socket now; open connections are ours to close
            self._server = None

    async def _switch(self, mode: Mode, resume_after: float | None = None) -> None:
        if self._resume is not None and self._resume is not asyncio.current_task():
            self._resume.cancel()
        self._resume = None
        if mode == "refuse":
            self._stop_listening()
        elif self._server is None:
            await self._listen()
        self._mode = mode
        if mode in ("refuse", "reset"):
            for connection in list(self._connections):
                connection.close("rst" if mode == "reset" else "cut")
        self._changed.set()
        self._changed = asyncio.Event()
        if resume_after is not None:
            self._resume = asyncio.create_task(self._resume_later(resume_after))

    async def _resume_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._switch("pass")

    async def _while_mode(self, *modes: Mode) -> None:
        """Wait until the mode is none of `modes`."""
        while self._mode in modes:
            await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._accepted += 1
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            if self._mode in ("reset", "refuse"):  # refuse: accepted just before the listener closed
                return
            if self._mode == "blackhole":
                await self._pump(reader, None)
                return
            up_reader, connection.upstream = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
            if writer.is_closing():  # cut while connecting upstream
                return
            pumps = [
                asyncio.create_task(self._pump(reader, connection.upstream)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except OSError:
            pass  # upstream unreachable, or a side went away: the connection ends
        except asyncio.CancelledError:
            pass  # by close(); ending normally keeps asyncio.streams from logging the task as failed
        finally:
            try:
                connection.close("rst" if self._mode == "reset" else "fin")
                await connection.wait_closed()  # until the buffered bytes are out, or close() cuts them
            finally:
                self._connections.discard(connection)
                self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter | None) -> None:
        """Copy `source` to `target` (None: a sink) while the mode allows, until end of stream."""
        while data := await source.read(_CHUNK):
            await self._while_mode("paused")
            if self._mode == "pass" and target is not None:
                target.write(data)
                await target.drain()
        # End of stream: a silent or paused proxy does not pass it on either.
        await self._while_mode("paused", "blackhole")

    async def _shutdown(self) -> None:
        self._stop_listening()
        if self._resume is not None:
            self._resume.cancel()
        for connection in list(self._connections):
            connection.close("cut")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._resume] if self._resume else []), return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()
