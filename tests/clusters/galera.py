"""A MariaDB Galera cluster of the test's own: three `mariadbd` nodes on this machine.

    with Galera() as cluster:                 # about 10 s: node 1 bootstraps, 2 and 3 join by rsync SST
        cluster.url("db")                     # mysql://root@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/db
        cluster.url("db", node=2)             # node 2 alone
        cluster.sql(1, "CREATE DATABASE db")  # through node 1's socket, as root
        cluster.kill(2)                       # SIGKILL
        cluster.restart(2)                    # its position recovered, then rejoined by IST

    python -m tests.clusters.galera up [DIR]   # starts one, prints its URL; its state stays in DIR
    python -m tests.clusters.galera down DIR   # stops it, by the pids written there

Every node listens on free ports of its own (client, group communication, IST, SST) on 127.0.0.1, keeps
its data, socket, pid and log under one temporary folder, runs as `mysql`, and is started with
`--defaults-file` only, so the system's my.cnf and the servers on 3306 are never touched. Nodes are
stopped by their pids. `wsrep_retry_autocommit=0`: the server does not retry a statement that lost a
certification conflict itself, so the package's own handling is what the tests see.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.helpers import free_port, missing

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = "/usr/sbin/mariadbd"
NODES = 3
RUN_AS = "mysql"
READY_WITHIN = 60.0


def require_programs() -> None:
    """Skip the calling test without MariaDB's server, Galera and rsync (fail it under CI=true)."""
    absent = [
        name
        for name, found in (
            ("mariadbd", os.access(MARIADBD, os.X_OK)),
            ("mariadb-install-db", shutil.which("mariadb-install-db")),
            ("galera-4", PROVIDER.exists()),
            ("rsync", shutil.which("rsync")),
        )
        if not found
    ]
    if absent:
        missing(f"{', '.join(absent)} not installed (Debian: apt-get install mariadb-server galera-4 rsync)")


class Node:
    """One node: its ports, its folder and its process."""

    def __init__(self, number: int, folder: Path) -> None:
        self.number = number
        self.folder = folder
        self.port, self.gcomm, self.ist, self.sst = (free_port() for _ in range(4))
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @property
    def config(self) -> Path:
        return self.folder / "node.cnf"

    @property
    def socket(self) -> Path:
        return self.folder / "mysqld.sock"

    @property
    def log(self) -> Path:
        return self.folder / "error.log"

    def write_config(self, cluster_name: str, members: str, extra: dict[str, str]) -> None:
        settings = {
            "user": RUN_AS,
            "datadir": str(self.folder / "data"),
            "socket": str(self.socket),
            "pid-file": str(self.folder / "mysqld.pid"),
            "log-error": str(self.log),
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "skip-name-resolve": "ON",
            "innodb_buffer_pool_size": "64M",
            "innodb_log_file_size": "48M",
            "innodb_flush_log_at_trx_commit": "2",
            "performance_schema": "OFF",
            "binlog_format": "ROW",
            "innodb_autoinc_lock_mode": "2",
            "wsrep_on": "ON",
            "wsrep_provider": str(PROVIDER),
            "wsrep_cluster_name": cluster_name,
            "wsrep_cluster_address": f"gcomm://{members}",
            "wsrep_node_address": f"127.0.0.1:{self.gcomm}",
            "wsrep_provider_options": f'"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm};'
            f'ist.recv_addr=127.0.0.1:{self.ist};gcache.size=64M"',
            "wsrep_sst_receive_address": f"127.0.0.1:{self.sst}",
            "wsrep_sst_method": "rsync",
            "wsrep_retry_autocommit": "0",
            **extra,
        }
        lines = ["[mysqld]", *(f"{name}={value}" for name, value in settings.items())]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o644)

    def start(self, *options: str) -> None:
        (self.folder / "data").mkdir(exist_ok=True)
        shutil.chown(self.folder / "data", RUN_AS, RUN_AS)
        self.process = subprocess.Popen(
            [MARIADBD, f"--defaults-file={self.config}", *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.process.pid

    def signal(self, number: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def wait_exit(self, within: float) -> bool:
        """Whether the process is gone within `within` seconds (reaped, when it is our child)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    return True
            elif self.pid is None or not _alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def stop(self, *, hard: bool = False) -> None:
        """Stop the process by its pid: SIGTERM (a clean leave), SIGKILL if it lingers or if `hard`."""
        if self.pid is None:
            return
        if not hard:
            self.signal(signal.SIGTERM)
        if hard or not self.wait_exit(20):
            self.signal(signal.SIGCONT)  # a frozen node dies of SIGKILL only once it runs again
            self.signal(signal.SIGKILL)
            self.wait_exit(10)
        self.process = self.pid = None

    def sql(self, statement: str) -> list[list[str]]:
        """`statement` through the node's socket as root; rows of tab-separated text."""
        done = subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                f"--socket={self.socket}",
                "--user=root",
                "-N",
                "-B",
                "-e",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"node {self.number}: {statement}: {done.stderr.strip()}")
        return [line.split("\t") for line in done.stdout.splitlines()]

    def status(self, name: str) -> str | None:
        try:
            rows = self.sql(f"SHOW STATUS LIKE '{name}'")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        return rows[0][1] if rows else None

    def synced(self) -> bool:
        return self.status("wsrep_local_state_comment") == "Synced" and self.status("wsrep_ready") == "ON"

    def recovered_position(self) -> str:
        """The position a killed node's data stands at (`mariadbd --wsrep-recover`)."""
        before = self.log.read_text(errors="replace") if self.log.exists() else ""
        subprocess.run(
            [MARIADBD, f"--defaults-file={self.config}", "--wsrep-recover"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        added = self.log.read_text(errors="replace")[len(before) :]
        for line in reversed(added.splitlines()):
            if "Recovered position:" in line:
                return line.rsplit("Recovered position:", 1)[1].strip()
        raise RuntimeError(f"node {self.number}: no recovered position in {self.log}")


class Galera:
    """A cluster of `nodes` nodes; `extra` settings go into every node's [mysqld]."""

    def __init__(self, nodes: int = NODES, *, folder: Path | None = None, **extra: str) -> None:
        self.folder = Path(folder or tempfile.mkdtemp(prefix="fps-galera-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        self.name = f"fps_{uuid.uuid4().hex[:8]}"
        self.nodes = [Node(n, self.folder / f"g{n}") for n in range(1, nodes + 1)]
        members = ",".join(f"127.0.0.1:{node.gcomm}" for node in self.nodes)
        for node in self.nodes:
            node.folder.mkdir(exist_ok=True)
            node.folder.chmod(0o755)
            node.write_config(self.name, members, extra)
            shutil.chown(node.folder, RUN_AS, RUN_AS)  # its log, socket and pid file are the server's

    def node(self, number: int) -> Node:
        return self.nodes[number - 1]

    def url(self, database: str, *, node: int | None = None) -> str:
        """A `mysql://` URL for `database`: node `node` alone, or every node's as a host list."""
        chosen = self.nodes if node is None else [self.node(node)]
        return f"mysql://root@{','.join(f'127.0.0.1:{n.port}' for n in chosen)}/{database}"

    def sql(self, node: int, statement: str) -> list[list[str]]:
        return self.node(node).sql(statement)

    def start(self) -> None:
        """Bootstrap node 1 on fresh data, let the others join it, and open root to TCP logins."""
        try:
            first = self.nodes[0]
            (first.folder / "data").mkdir(exist_ok=True)
            shutil.chown(first.folder / "data", RUN_AS, RUN_AS)
            subprocess.run(
                [
                    "mariadb-install-db",
                    f"--defaults-file={first.config}",
                    f"--user={RUN_AS}",
                    "--skip-test-db",
                    "--auth-root-authentication-method=normal",
                ],
                capture_output=True,
                timeout=120,
                check=True,
            )
            first.start("--wsrep-new-cluster")
            self.wait_synced(first)
            first.sql(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"
            )
            for node in self.nodes[1:]:
                node.start()
                self.wait_synced(node)
            self.wait_size(len(self.nodes))
        except BaseException:
            self.stop(hard=True)
            raise

    def wait_synced(self, node: Node, within: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + within
        while not node.synced():
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"node {node.number} exited; see {node.log}:\n{_tail(node.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node.number} not synced after {within} s; see {node.log}")
            time.sleep(0.1)

    def wait_size(self, size: int, within: float = READY_WITHIN) -> None:
        """Wait until every running node sees a cluster of `size` nodes."""
        deadline = time.monotonic() + within
        running = [node for node in self.nodes if node.pid is not None]
        while not all(node.status("wsrep_cluster_size") == str(size) for node in running):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not {size} nodes after {within} s")
            time.sleep(0.1)

    def kill(self, number: int) -> None:
        """SIGKILL node `number`, as a crash or a power cut would end it."""
        self.node(number).stop(hard=True)

    def freeze(self, number: int) -> None:
        self.node(number).signal(signal.SIGSTOP)

    def thaw(self, number: int) -> None:
        self.node(number).signal(signal.SIGCONT)

    def restart(self, number: int) -> float:
        """Start node `number` again from its position (it rejoins by IST); seconds until it is synced."""
        node = self.node(number)
        started = time.monotonic()
        position = node.recovered_position()
        node.start(f"--wsrep_start_position={position}")
        self.wait_synced(node)
        return time.monotonic() - started

    def stop(self, *, hard: bool = False) -> None:
        """Stop every node by its pid (the last one to leave last), then remove the folder."""
        for node in reversed(self.nodes):
            node.stop(hard=hard)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(hard=True)

    # -- the command line: a cluster that outlives the command --------------------------------------------

    def save(self) -> None:
        state = {"nodes": [{"pid": node.pid, "port": node.port} for node in self.nodes]}
        (self.folder / "cluster.json").write_text(json.dumps(state))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def down(folder: Path) -> None:
    """Stop the nodes that `up` started in `folder`, by the pids it wrote there, and remove it."""
    state = json.loads((folder / "cluster.json").read_text())
    for entry in reversed(state["nodes"]):
        pid = entry["pid"]
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "up":
        folder = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="fps-galera-"))
        cluster = Galera(folder=folder)
        started = time.monotonic()
        cluster.start()
        cluster.save()
        cluster.sql(1, "CREATE DATABASE IF NOT EXISTS test")
        print(f"{cluster.url('test')}  ({time.monotonic() - started:.1f} s; stop: down {folder})")
        return 0
    if len(argv) == 2 and argv[0] == "down":
        down(Path(argv[1]))
        return 0
    print("usage: python -m tests.clusters.galera up [DIR] | down DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
