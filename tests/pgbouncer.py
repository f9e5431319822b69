"""A real PgBouncer of the test's own, in front of the test PostgreSQL server.

Deployments often put PgBouncer between the application and PostgreSQL, and in transaction mode it hands
each transaction (or each statement outside a transaction) to whichever server connection is free. What
works on a direct connection can then fail: a prepared statement lives on one server connection and the
client's next message may reach another. Tests of that need the real program, so this module runs Debian's
`pgbouncer` (1.18 on Debian 12) as a child process:

    with PgBouncer(pool_mode="transaction", pool_size=2) as bouncer:
        conn = await asyncpg.connect(bouncer.dsn("test"), statement_cache_size=0)
        engine = create_async_engine(bouncer.url("test"), connect_args={"statement_cache_size": 0})
        bouncer.admin("SHOW POOLS")  # [{"database": "test", "pool_mode": "transaction", ...}, ...]

Each instance writes its own configuration, user list, log file and pid file into a fresh temporary
directory, listens on a port of 127.0.0.1 that the kernel picked as free (from its ephemeral range, so not
6432, where Debian's packaged service may be running: that service is neither used nor disturbed), and is
stopped by its own pid.

Startup parameters: PgBouncer 1.18 passes on only the parameters it tracks per server connection,
`client_encoding`, `DateStyle`, `TimeZone`, `standard_conforming_strings` and `application_name`, and
closes the connection of a client that sends any other one (``ProtocolViolationError: unsupported startup
parameter: statement_timeout``); `options`, `search_path`, `statement_timeout`, `lock_timeout`, `jit` and
`extra_float_digits` are all refused. asyncpg sends `client_encoding`, `user` and `database` and nothing
else unless given `server_settings`, so `ignore_startup_parameters` stays at its default (empty) here.
Listing a parameter there does not apply it either: PgBouncer drops it. The library must therefore not
rely on settings passed at connect time; whatever it needs has to be said in SQL inside its transactions.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy.engine import make_url

from tests.helpers import ADMIN_URL, free_port, missing

PoolMode = Literal["session", "transaction", "statement"]

# PgBouncer refuses to run as root. The tests run as root, so the child is started as this user; it is
# also the PostgreSQL role the test server trusts, and the one allowed on PgBouncer's admin console.
RUN_AS = "postgres"


def pgbouncer_binary() -> str | None:
    """The `pgbouncer` program, or None. Debian installs it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


def require_programs() -> None:
    """Skip the calling test without `pgbouncer` and `psql` (fail it under CI=true, where they must be)."""
    absent = [
        name
        for name, found in (("pgbouncer", pgbouncer_binary()), ("psql", shutil.which("psql")))
        if not found
    ]
    if absent:
        missing(f"{' and '.join(absent)} not installed (Debian: apt-get install pgbouncer postgresql-client)")


def in_front_of_test_server(
    pool_mode: PoolMode = "transaction", pool_size: int = 4, **options: Any
) -> PgBouncer:
    """A PgBouncer (not started yet) in front of the test server (TEST_POSTGRES_URL's host and port)."""
    server = make_url(ADMIN_URL)
    host, port = server.host or "127.0.0.1", server.port or 5432
    return PgBouncer(pool_mode, pool_size, server_host=host, server_port=port, **options)


class PgBouncer:
    """One PgBouncer process, from `start()` (or entering the `with` block) to `stop()` (or leaving it).

    `database`: forward only that database name; by default every name (`*`) is forwarded to the server
    database of the same name. `settings`: further `[pgbouncer]` settings, written as given.
    """

    def __init__(
        self,
        pool_mode: PoolMode = "transaction",
        pool_size: int = 4,
        *,
        database: str | None = None,
        server_host: str = "127.0.0.1",
        server_port: int = 5432,
        user: str = RUN_AS,
        max_client_conn: int = 100,
        ignore_startup_parameters: Sequence[str] = (),
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.database = database
        self.server_host = server_host
        self.server_port = server_port
        self.user = user
        self.max_client_conn = max_client_conn
        self.ignore_startup_parameters = tuple(ignore_startup_parameters)
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.directory: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- what the tests use -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PgBouncer has not been started")
        return self._port

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The PgBouncer process itself (not a wrapper such as runuser): its pid is PgBouncer's."""
        if self._process is None:
            raise RuntimeError("PgBouncer has not been started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, database: str) -> str:
        """A SQLAlchemy URL through this PgBouncer."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """The same address for `asyncpg.connect`."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> list[dict[str, str]]:
        """Run one command (`SHOW POOLS`, `SHOW SERVERS`, ...) on PgBouncer's admin console, rows as dicts.

        The console (database `pgbouncer`) speaks only the simple query protocol: asyncpg's `fetch` is
        refused there ("extended query protocol not supported by admin console") and its `execute`
        returns no rows, so this goes through `psql`, which ships with PostgreSQL.
        """
        psql = shutil.which("psql")
        if psql is None:
            raise RuntimeError("psql is not installed; PgBouncer's admin console is read with it")
        conninfo = f"host=127.0.0.1 port={self.port} user={self.user} dbname=pgbouncer connect_timeout=5"
        done = subprocess.run(
            [psql, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"PgBouncer admin command {sql!r} failed: {done.stderr.strip()}")
        return list(csv.DictReader(io.StringIO(done.stdout)))

    def log(self) -> str:
        """PgBouncer's log so far (its log file; or what it printed, if it stopped before opening that)."""
        if self.directory is None:
            return ""
        for name in ("pgbouncer.log", "output.log"):
            path = self.directory / name
            if path.exists() and path.stat().st_size:
                return path.read_text(errors="replace")
        return ""

    # -- start and stop -----------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("this PgBouncer was already started; make another one")
        binary = pgbouncer_binary()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.directory = Path(tempfile.mkdtemp(prefix="fps-pgbouncer-"))
        try:
            self._port = free_port()
            ini = self._write_files()
            # Config errors are printed before PgBouncer opens its log file: keep what it prints, too.
            # The child holds its own copy of the descriptor, so ours can be closed at once.
            with open(self.directory / "output.log", "wb") as output:
                self._process = subprocess.Popen(
                    [binary, str(ini)],  # no -d: it stays our child, so we keep its pid and exit status
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    **self._as_unprivileged_user(),
                )
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process by its pid (SIGTERM, then SIGKILL after `stop_timeout`); remove the directory.

        In PgBouncer 1.18 SIGTERM is the immediate shutdown: it closes client and server connections and
        exits. (SIGINT would wait for clients to finish, which a test that leaks a connection would hang on.)
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- details ------------------------------------------------------------------------------------------

    def _write_files(self) -> Path:
        assert self.directory is not None
        server = f"host={self.server_host} port={self.server_port}"
        forward = (
            f"* = {server}" if self.database is None else f"{self.database} = {server} dbname={self.database}"
        )
        lines = [
            "[databases]",
            forward,
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self._port}",
            # No Unix socket: its default path (/tmp/.s.PGSQL.<port>) could clash with another server's.
            "unix_socket_dir =",
            # No passwords anywhere: PgBouncer's `trust` lets a client in without one, as long as its name is
            # in the auth file, and logs in to PostgreSQL (trust auth as well) under the same name.
            "auth_type = trust",
            f"auth_file = {self.directory / 'userlist.txt'}",
            # The admin console (database `pgbouncer`) takes only these users.
            f"admin_users = {self.user}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            f"logfile = {self.directory / 'pgbouncer.log'}",
            f"pidfile = {self.directory / 'pgbouncer.pid'}",
        ]
        if self.ignore_startup_parameters:
            lines.append(f"ignore_startup_parameters = {','.join(self.ignore_startup_parameters)}")
        lines += [f"{key} = {value}" for key, value in self.settings.items()]
        ini = self.directory / "pgbouncer.ini"
        ini.write_text("\n".join(lines) + "\n")
        (self.directory / "userlist.txt").write_text(f'"{self.user}" ""\n')
        if os.geteuid() == 0:
            # PgBouncer, running as RUN_AS, writes its log and pid files here.
            for path in (self.directory, *self.directory.iterdir()):
                shutil.chown(path, RUN_AS, RUN_AS)
        return ini

    @staticmethod
    def _as_unprivileged_user() -> dict[str, Any]:
        """Popen options that start PgBouncer as RUN_AS when we are root (it refuses to run as root).

        This does what `runuser -u postgres -- pgbouncer ...` does (set the groups, the gid and the uid
        before exec) without putting runuser between us and PgBouncer: runuser would be the pid we hold,
        a SIGKILL to it would leave PgBouncer running, and on SIGTERM it waits 2 s before it exits.
        """
        if os.geteuid() != 0:
            return {}
        return {"user": RUN_AS, "group": RUN_AS, "extra_groups": []}

    def _wait_until_accepting(self) -> None:
        process = self.process
        deadline = time.monotonic() + self.start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with status {process.returncode}:\n{self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"pgbouncer did not accept connections within {self.start_timeout} s:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(it logged nothing)"
