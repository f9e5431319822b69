"""A PostgreSQL primary and its streaming standby, of the test's own, to fail over.

    with PostgresPair(synchronous=True) as pair:
        url = pair.url("sessions")  # postgresql://postgres@127.0.0.1:<primary>,127.0.0.1:<standby>/…
        pair.kill(pair.primary)     # SIGKILL, the postmaster and every backend
        pair.promote(pair.standby)  # pg_ctl promote: the standby takes writes

Both servers use the installed binaries (`/usr/lib/postgresql/<version>/bin`), run as the `postgres` user
when started by root (initdb refuses root), keep their data and sockets in one temporary directory and
listen on 127.0.0.1 ports picked free. The standby is a `pg_basebackup -R` copy that streams from the
primary, asynchronously unless `synchronous=True` (then a commit on the primary waits for the standby).
Every server is stopped by its postmaster's pid (SIGINT, then SIGKILL), frozen ones woken first.

For trying things by hand, `python -m tests.clusters.postgres up [--synchronous]` starts a pair and
prints its URL and directory; `python -m tests.clusters.postgres down <directory>` stops it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.helpers import free_port, missing

# Settings that keep a throwaway server small and quick; fsync is off because only processes die here,
# never the machine (what a killed server wrote is in the page cache all the same).
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'32MB'",
    "wal_keep_size": "'64MB'",
    "fsync": "off",
    "max_connections": "50",
    # In the data directory, not /dev/shm: a killed server's segments go with its directory.
    "dynamic_shared_memory_type": "mmap",
}
RUN_AS = "postgres"
# Data directories in memory where the machine has a tmpfs: copying and starting servers is then quick.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def binaries() -> Path | None:
    """The newest installed PostgreSQL's server binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    return Path(found[-1]).parent if found else None


@dataclass
class Node:
    name: str
    data: Path
    port: int

    def pid(self) -> int | None:
        """The postmaster's pid, from `postmaster.pid`, while the server runs."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if first.isdigit() and _started(int(first)) is not None else None


class PostgresPair:
    """A primary and a standby streaming from it, each a server of its own (see the module)."""

    def __init__(self, *, synchronous: bool = False, root: Path | None = None) -> None:
        found = binaries()
        if found is None or (shutil.which("runuser") is None and os.geteuid() == 0):
            missing("PostgreSQL's server binaries (initdb, pg_basebackup) or runuser are not installed")
        self.bin: Path = found  # type: ignore[assignment]  # missing() does not return
        self.synchronous = synchronous
        self.root = root or Path(tempfile.mkdtemp(prefix="fps-pg-pair-", dir=SCRATCH))
        self.primary = Node("primary", self.root / "primary", free_port())
        self.standby = Node("standby", self.root / "standby", free_port())
        # Every postmaster started (pid → its start time, so that a pid the system reuses once the server
        # is gone is never signalled), for stop().
        self._pids: dict[int, str] = {}

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.primary, self.standby

    def url(self, database: str = "postgres", *, first: Node | None = None, attrs: str = "read-write") -> str:
        """A multi-host URL of both servers, `first` (the primary by default) listed first."""
        first = first or self.primary
        hosts = ",".join(
            f"127.0.0.1:{node.port}" for node in sorted(self.nodes, key=lambda n: n is not first)
        )
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs={attrs}"

    def dsn(self, node: Node, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}"

    def start(self) -> None:
        """Copy the process's template pair (`template`) into this pair's directory, give the copies
        this pair's ports and replication mode, and start both."""
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS, RUN_AS)
        template = _template(self.bin)
        for node in self.nodes:
            self._run("cp", "-a", str(template / node.name), str(node.data))
        self._configure(self.primary, synchronous_standby_names="'*'" if self.synchronous else "''")
        # Promoted, the standby must not wait for a standby of its own.
        self._configure(self.standby, synchronous_standby_names="''")
        # pg_basebackup -R wrote where to stream from into postgresql.auto.conf, read last: said there.
        conninfo = f"'host=127.0.0.1 port={self.primary.port} user=postgres application_name=standby'"
        self._configure(self.standby, "postgresql.auto.conf", primary_conninfo=conninfo)
        self._start(self.primary)
        self._start(self.standby)
        self.wait_streaming()

    def build(self) -> None:
        """initdb the primary, start it, copy it into the standby with pg_basebackup -R, start that, and
        stop both: the template pairs are copied from."""
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS, RUN_AS)
        self._run("initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self._configure(self.primary, **SETTINGS)
        self._start(self.primary)
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        self._configure(self.standby)
        self._start(self.standby)
        self.wait_streaming()
        self.stop(remove=False)

    def wait_streaming(self, within: float = 10) -> None:
        """Until the primary sees its standby streaming (and, if synchronous, as its synchronous one)."""
        wanted = "sync" if self.synchronous else "async"
        query = "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
        ends = time.monotonic() + within
        while self.sql(self.primary, query) != wanted:
            if time.monotonic() > ends:
                raise RuntimeError(f"the standby is not streaming ({wanted}) after {within} s")
            time.sleep(0.05)

    def sql(self, node: Node, query: str, database: str = "postgres") -> str:
        """One query through psql on `node`, its output unaligned (tests read a value or two)."""
        psql = [str(self.bin / "psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(node.port)]
        command = [*psql, "-U", "postgres", "-d", database, "-c", query]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=10)
        return done.stdout.strip()

    def promote(self, node: Node) -> None:
        """Make `node` a primary (pg_ctl promote, waiting until it takes writes)."""
        self._run("pg_ctl", "promote", "-w", "-D", str(node.data))

    def detach(self, node: Node) -> None:
        """Make the standby `node` stop receiving WAL, as one that falls behind: what the primary commits
        from now on never reaches it (and, with synchronous replication, waits)."""
        self.sql(node, "ALTER SYSTEM SET primary_conninfo = ''")
        self.sql(node, "SELECT pg_reload_conf()")
        ends = time.monotonic() + 10
        while self.sql(node, "SELECT count(*) FROM pg_stat_wal_receiver") != "0":
            if time.monotonic() > ends:
                raise RuntimeError(f"the {node.name} still receives WAL after 10 s")
            time.sleep(0.02)

    def kill(self, node: Node) -> None:
        """SIGKILL the postmaster and every process of its server: a host that died."""
        self._signal(node, signal.SIGKILL)

    def freeze(self, node: Node) -> None:
        """SIGSTOP the server's processes: a host that hangs (TCP still accepts; nothing answers)."""
        self._signal(node, signal.SIGSTOP)

    def thaw(self, node: Node) -> None:
        self._signal(node, signal.SIGCONT)

    def stop(self, *, remove: bool = True) -> None:
        """Stop every server this pair started, by pid, and remove its directory."""
        running = [pid for pid, started in self._pids.items() if _started(pid) == started]
        for pid in running:
            _signal_tree(pid, signal.SIGCONT)  # a frozen server cannot shut down
            _signal_tree(pid, signal.SIGINT)  # fast shutdown
        ends = time.monotonic() + 10
        while any(_started(pid) == self._pids[pid] for pid in running) and time.monotonic() < ends:
            time.sleep(0.05)
        for pid in running:
            if _started(pid) == self._pids[pid]:
                _signal_tree(pid, signal.SIGKILL)
        self._pids.clear()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def adopt(self) -> None:
        """Take the servers running in this pair's directory as its own (`down`, from another process)."""
        for node in self.nodes:
            pid = node.pid()
            started = None if pid is None else _started(pid)
            if pid is not None and started is not None:
                self._pids[pid] = started

    def _signal(self, node: Node, sent: signal.Signals) -> None:
        pid = node.pid()
        if pid is None or _started(pid) != self._pids.get(pid):
            raise RuntimeError(f"the {node.name} is not running")
        _signal_tree(pid, sent)

    def _configure(self, node: Node, file: str = "postgresql.conf", **settings: str) -> None:
        """Append `settings` to the node's `file` (the last value of a setting is the one taken), with
        its port and socket directory."""
        settings = dict(settings, port=str(node.port), unix_socket_directories=f"'{self.root}'")
        with (node.data / file).open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _start(self, node: Node) -> None:
        log = str(self.root / f"{node.name}.log")
        self._run("pg_ctl", "start", "-w", "-t", "30", "-D", str(node.data), "-l", log)
        pid = node.pid()
        started = None if pid is None else _started(pid)
        if pid is None or started is None:
            raise RuntimeError(f"the {node.name} did not start: see {log}")
        self._pids[pid] = started

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program) if (self.bin / program).exists() else program, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr or done.stdout}")


_TEMPLATES: dict[Path, Path] = {}


def _template(bin: Path) -> Path:
    """A directory with a stopped primary and standby (`PostgresPair.build`), made once per process and
    removed as it exits: copying it takes a fraction of what initdb and pg_basebackup take."""
    if bin not in _TEMPLATES:
        pair = PostgresPair()
        pair.build()
        atexit.register(shutil.rmtree, pair.root, ignore_errors=True)
        _TEMPLATES[bin] = pair.root
    return _TEMPLATES[bin]


def _started(pid: int) -> str | None:
    """When `pid` started (in clock ticks since boot) while it runs; None when it does not (a zombie, dead
    but not yet reaped by whoever adopted it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rpartition(")")[2].split()[1])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def _signal_tree(pid: int, sent: signal.Signals) -> None:
    """`sent` to a postmaster and its children (the backends, the WAL sender and writer…): the postmaster
    first, so that it starts no new one meanwhile."""
    for target in [pid, *_children(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.clusters.postgres", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a primary and a standby; print the URL and the directory")
    up.add_argument("--synchronous", action="store_true", help="synchronous replication")
    down = commands.add_parser("down", help="stop the pair started in DIRECTORY, by pid, and remove it")
    down.add_argument("directory", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "up":
        pair = PostgresPair(synchronous=arguments.synchronous)
        pair.start()
        print(f"url:       {pair.url()}\ndirectory: {pair.root}")
        print(f"primary:   pid {pair.primary.pid()} port {pair.primary.port}")
        print(f"standby:   pid {pair.standby.pid()} port {pair.standby.port}")
        return
    pair = PostgresPair(root=arguments.directory)
    pair.adopt()
    pair.stop()
    print(f"stopped and removed {arguments.directory}")


if __name__ == "__main__":
    main(sys.argv[1:])
