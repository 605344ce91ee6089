"""Start real Redis, Redis Cluster and PostgreSQL servers on loopback, because the backends must be tested
against the servers that make them atomic, not against fakes."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import psycopg
import redis

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerProcess:
    """One server subprocess logging to a file, so a failed start can say why and a stop can be forced."""

    def __init__(
        self,
        argv: Sequence[str],
        directory: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        account: pwd.struct_passwd | None = None,
    ) -> None:
        self.argv = list(argv)
        self.directory = directory
        self.log_path = directory / f"{Path(argv[0]).name}.log"
        self.stop_signal = stop_signal
        self.account = account
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.stop()  # reap a process that died on its own
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **_as_account(self.account),
            )

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            popen.send_signal(self.stop_signal)
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until it holds; fail early if the process dies, late with its log if it hangs."""
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{what} exited during startup\n--- {self.log_path} ---\n{self.log()}")
            try:
                if ready():
                    return
            except Exception as exc:  # the server is still coming up
                last_error = exc
            time.sleep(0.05)
        raise RuntimeError(
            f"{what} did not become ready within {START_TIMEOUT:.0f} s (last error: {last_error!r})\n"
            f"--- {self.log_path} ---\n{self.log()}"
        )


class RedisServer:
    """A redis-server that tests can stop and start again on the same port (it comes back empty)."""

    def __init__(self, directory: Path, port: int, *, cluster_bus_port: int | None = None) -> None:
        self.host = HOST
        self.port = port
        argv = [_find_binary("redis-server", "redis-server"), "--port", str(port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(directory), "--daemonize", "no"]
        argv += ["--enable-debug-command", "local"]  # DEBUG SLEEP: the fault tests' lost replies
        if cluster_bus_port is not None:
            # An explicit bus port: the default (port + 10000) overflows for high ephemeral ports.
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-port", str(cluster_bus_port)]
        self.process = ServerProcess(argv, directory)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        self.process.start()
        self.process.wait_until(self.ping, f"redis-server on port {self.port}")

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ping(self) -> bool:
        # Compare pids: whoever else holds the port would answer PING too.
        with redis.Redis(host=self.host, port=self.port, socket_timeout=1) as client:
            info: dict[str, object] = client.info("server")
        return info["process_id"] == self.process.pid


@dataclass(frozen=True)
class RedisClusterHandle:
    """Where a running three-master Redis Cluster listens; ``nodes`` are its startup nodes."""

    nodes: list[tuple[str, int]]
    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return self.servers[0].url


class PostgresServer:
    """A PostgreSQL server that tests can stop and start again on the same port and data directory."""

    def __init__(self, directory: Path, port: int) -> None:
        self.port = port
        self.directory = directory
        self.data = directory / "data"
        self.bindir = _postgres_bindir()
        # PostgreSQL refuses to run as root, so root hands the server to the "postgres" account.
        self.account = _postgres_account() if os.geteuid() == 0 else None
        if self.account is not None:
            os.chown(directory, self.account.pw_uid, self.account.pw_gid)
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(port), "-k", str(directory)]
        argv += ["-h", HOST, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        # SIGINT is a fast shutdown; SIGTERM would wait for every pooled client to disconnect.
        self.process = ServerProcess(argv, directory, stop_signal=signal.SIGINT, account=self.account)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def initdb(self) -> None:
        argv = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        _run([*argv, "-E", "UTF8", "--locale=C", "--no-sync"], self.directory, self.account)

    def start(self) -> None:
        self.process.start()
        self.process.wait_until(self.connects, f"postgres on port {self.port}")

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def connects(self) -> bool:
        # Compare data directories: whoever else holds the port would accept connections too.
        with psycopg.connect(self.dsn, connect_timeout=2) as conn:
            return conn.execute("SHOW data_directory").fetchone() == (str(self.data),)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Run a standalone redis-server on a free loopback port for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="pyrate-redis-") as tmp:
        server = RedisServer(Path(tmp).resolve(), free_ports(1)[0])
        try:
            server.start()
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisClusterHandle]:
    """Run a three-master Redis Cluster (no replicas) on free loopback ports for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="pyrate-redis-cluster-") as tmp:
        ports = free_ports(6)
        servers: list[RedisServer] = []
        try:
            for port, bus_port in zip(ports[:3], ports[3:], strict=True):
                node_dir = Path(tmp) / f"node-{port}"
                node_dir.mkdir()
                servers.append(RedisServer(node_dir, port, cluster_bus_port=bus_port))
                servers[-1].start()
            create = [_find_binary("redis-cli", "redis-server"), "--cluster", "create"]
            create += [f"{HOST}:{port}" for port in ports[:3]]
            _run([*create, "--cluster-replicas", "0", "--cluster-yes"], Path(tmp))
            for server in servers:
                ready = functools.partial(_cluster_ok, server)
                server.process.wait_until(ready, f"cluster node on port {server.port}")
            yield RedisClusterHandle([(HOST, port) for port in ports[:3]], servers)
        finally:
            for server in servers:
                server.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL cluster on a free loopback port for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="pyrate-postgres-") as tmp:
        server = PostgresServer(Path(tmp).resolve(), free_ports(1)[0])
        try:
            server.initdb()
            server.start()
            yield server
        finally:
            server.stop()


def free_ports(count: int) -> list[int]:
    """Ports the kernel considers free, held open together so that the ``count`` ports differ."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _cluster_ok(server: RedisServer) -> bool:
    # Every node must see all slots served and know all three masters before a client can rely on it.
    with redis.Redis(host=server.host, port=server.port, socket_timeout=1, decode_responses=True) as client:
        info: dict[str, str] = client.execute_command("CLUSTER INFO")
    return info["cluster_state"] == "ok" and info["cluster_known_nodes"] == "3"


def _find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: install the Debian package {package!r}")
    return found


def _postgres_bindir() -> Path:
    # Debian keeps the server binaries in a versioned directory that is not on PATH.
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise RuntimeError("initdb and postgres are not installed: install the Debian package 'postgresql'")


def _version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())


def _postgres_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "PostgreSQL will not run as root and there is no 'postgres' user to run it as: install the "
            "Debian package 'postgresql' (it creates that user) or run the tests as an ordinary user"
        ) from None


class _Credentials(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _as_account(account: pwd.struct_passwd | None) -> _Credentials:
    # subprocess switches user after fork, so the server never runs as root, not even briefly.
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _run(argv: Sequence[str], cwd: Path, account: pwd.struct_passwd | None = None) -> None:
    result = subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
        **_as_account(account),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
