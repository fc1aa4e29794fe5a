"""Redis deployments for the store-contract suite: Sentinel, a 3-master Cluster and TLS, on loopback ports.

Each is started from the ``redis-server`` binary (Debian ships no separate ``redis-sentinel``:
``redis-server <conf> --sentinel`` runs one) in a pytest temp dir, bound to 127.0.0.1 only, and every
process it started is stopped by PID when the context exits. Every wait is bounded and fails with the
logs of the processes involved, so a broken start-up says why instead of hanging the suite.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.sessions.redis_url import TlsFiles
from tests.support.certs import TestCA
from tests.support.ports import PortTaken, on_some_port, says_port_taken
from tests.support.servers import redis_answers_as

MASTER_NAME = "mymaster"
START_TIMEOUT = 15.0


class TopologyError(RuntimeError):
    """A test deployment did not come up (the message carries the servers' log tails)."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TopologyError(f"{name} is not installed (make test installs it); the tests need a real Redis")
    return path


class Processes:
    """The processes of one deployment, each logging to ``<workdir>/<name>.log``; stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` with its output in ``name``.log."""
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self._procs[name] = proc
        return proc

    def start_on_some_port(
        self,
        name: Callable[[int], str],
        argv: Callable[[int], list[str]],
        **client_options: object,
    ) -> int:
        """Start a server that binds its own port on a port nobody else has (see ``tests.support.ports``):
        on a candidate port, then on another when its log says the port (or Cluster's bus port) was taken;
        returns once it answers there as itself. ``client_options`` go to the client asking it (TLS)."""

        def attempt(port: int) -> int:
            proc = self.start(name(port), argv(port))
            try:
                wait_until(
                    f"{name(port)} answers on {port}",
                    lambda: redis_answers_as(port, proc.pid, **client_options),
                    self,
                )
            except TopologyError:
                log = self.workdir / f"{name(port)}.log"
                if proc.poll() is None or not says_port_taken(log.read_text(errors="replace")):
                    raise
                self.kill(name(port))  # already exited: this only forgets it
                raise PortTaken(port) from None
            return port

        return on_some_port(attempt)

    def logs(self, names: list[str] | None = None, lines: int = 15) -> str:
        """The last lines of each log (for error messages)."""
        out = []
        for name in names or list(self._procs):
            path = self.workdir / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {name} (pid {self._procs[name].pid}) ---\n" + "\n".join(text))
        return "\n".join(out)

    def check_alive(self) -> None:
        """Fail at once (with its log) when a process has exited."""
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise TopologyError(f"{name} exited with code {proc.returncode}\n{self.logs([name])}")

    def stop(self, name: str) -> None:
        """SIGTERM the process by PID, SIGKILL if it lingers."""
        proc = self._procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def kill(self, name: str) -> None:
        """SIGKILL the process by PID (a crash: no shutdown, no goodbye to replicas or sentinels)."""
        proc = self._procs.pop(name)
        proc.kill()
        proc.wait(timeout=5)

    def pid(self, name: str) -> int:
        """The process ID of ``name``."""
        return self._procs[name].pid

    def names(self) -> set[str]:
        """The names of the processes started and not stopped or killed."""
        return set(self._procs)

    def stop_all(self) -> None:
        """Stop every process still running."""
        for name in list(self._procs):
            self.stop(name)


def wait_until(
    what: str, check: Callable[[], bool], procs: Processes, timeout: float = START_TIMEOUT
) -> None:
    """Poll ``check`` until True; fail after ``timeout`` (or at once if a process died) with the logs."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        procs.check_alive()
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = f" (last error: {type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            raise TopologyError(f"{what}: not within {timeout:.0f} s{last_error}\n{procs.logs()}")
        time.sleep(0.05)


def client(port: int, **kwargs: object) -> redis.Redis:
    """A short-timeout admin client for start-up checks (no retries: the wait loop is the retry)."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        **kwargs,  # type: ignore[arg-type]
    )


def ask(port: int, *command: str, **kwargs: object) -> object:
    """Run one command on 127.0.0.1:port and close the connection."""
    with client(port, **kwargs) as c:
        return c.execute_command(*command)


def server_argv(port: int, workdir: Path, **options: str | tuple[str, ...]) -> list[str]:
    """redis-server on 127.0.0.1:port, nothing persisted, files in ``workdir``; ``a_b="1"`` is ``--a-b 1``."""
    workdir.mkdir(exist_ok=True)
    base = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no", "dir": str(workdir)}
    argv = [_binary("redis-server")]
    for name, value in (base | options).items():
        argv += ["--" + name.replace("_", "-"), *((value,) if isinstance(value, str) else value)]
    return argv


@dataclass
class SentinelSetup:
    """A master, one replica and three sentinels; ``url`` names all three sentinels."""

    url: str
    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    procs: Processes
    started_in: float = 0.0

    def master_addr(self, sentinel_port: int) -> tuple[str, int] | None:
        """What one sentinel currently reports as the master."""
        addr = ask(sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        if not isinstance(addr, list | tuple) or len(addr) != 2:
            return None
        return addr[0].decode(), int(addr[1])

    def wait_ready_for_failover(self, timeout: float = START_TIMEOUT) -> None:
        """Every sentinel knows the replica and the two other sentinels (hello messages come every 2 s)."""

        def ready() -> bool:
            for port in self.sentinel_ports:
                with client(port) as c:
                    info = c.sentinel_master(MASTER_NAME)
                if info["num-slaves"] < 1 or info["num-other-sentinels"] < 2:
                    return False
            return True

        wait_until("sentinels discover the replica and each other", ready, self.procs, timeout)


def _sentinel_conf(port: int, master_port: int, workdir: Path) -> Path:
    workdir.mkdir(exist_ok=True)
    conf = workdir / "sentinel.conf"  # the sentinel rewrites it (its id, what it learns), so one per sentinel
    conf.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {workdir}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
        f"sentinel failover-timeout {MASTER_NAME} 5000\n"
        f"sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
    return conf


@contextmanager
def sentinel_setup(workdir: Path) -> Iterator[SentinelSetup]:
    """Master + replica (``--replicaof``) + 3 sentinels (quorum 2); yields once the sentinels report it."""
    started = time.monotonic()
    procs = Processes(workdir)
    try:
        # Replica synced before the sentinels start, so their first INFO of the master already lists it
        # (they would otherwise learn of it only at the next INFO, 10 s later).
        master = procs.start_on_some_port(
            lambda _: "master",
            lambda port: server_argv(port, workdir / "master", repl_diskless_sync_delay="0"),
        )
        replica = procs.start_on_some_port(
            lambda _: "replica",
            lambda port: server_argv(port, workdir / "replica", replicaof=("127.0.0.1", str(master))),
        )
        wait_until(
            "replica in sync with the master",
            lambda: _info(replica, "replication").get("master_link_status") == "up",
            procs,
        )
        sentinels = [
            procs.start_on_some_port(
                lambda port: f"sentinel-{port}",
                lambda port: [
                    _binary("redis-server"),
                    str(_sentinel_conf(port, master, workdir / f"sentinel-{port}")),
                    "--sentinel",
                ],
            )
            for _ in range(3)
        ]
        setup = SentinelSetup(
            url="redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels) + f"/{MASTER_NAME}/0",
            master_port=master,
            replica_port=replica,
            sentinel_ports=sentinels,
            procs=procs,
        )
        for port in sentinels:
            wait_until(
                f"sentinel {port} reports the master",
                lambda port=port: setup.master_addr(port) == ("127.0.0.1", master),  # type: ignore[misc]
                procs,
            )
        setup.started_in = time.monotonic() - started
        yield setup
    finally:
        procs.stop_all()


def _info(port: int, section: str) -> dict[str, object]:
    with client(port) as c:
        return dict(c.info(section))


@dataclass
class ClusterSetup:
    """Three masters sharing the 16384 slots, each with ``replicas`` replicas."""

    url: str
    ports: list[int]
    procs: Processes
    started_in: float = 0.0

    def masters(self) -> list[int]:
        """The ports of the live masters serving slots now (asked of a live node)."""
        for port in self.ports:
            if f"node-{port}" in self.procs.names():
                nodes = ask(port, "CLUSTER", "NODES")
                text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
                return [
                    int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    for fields in (line.split() for line in text.splitlines())
                    if "master" in fields[2].split(",") and "fail" not in fields[2] and fields[8:]
                ]
        raise TopologyError("no cluster node is running")

    def shard_of(self, key: str) -> tuple[int, list[int]]:
        """(master port, replica ports) of the shard holding ``key``'s slot."""
        port = next(p for p in self.ports if f"node-{p}" in self.procs.names())
        slot = ask(port, "CLUSTER", "KEYSLOT", key)
        shards = ask(port, "CLUSTER", "SLOTS")
        assert isinstance(slot, int) and isinstance(shards, list)
        for start, end, master, *replicas in shards:
            if start <= slot <= end:
                return int(master[1]), [int(r[1]) for r in replicas]
        raise TopologyError(f"slot {slot} is not covered")

    def holds(self, port: int, key: str) -> bool:
        """Whether the node on ``port`` (master or replica: READONLY) holds ``key``."""
        with client(port) as c:
            c.execute_command("READONLY")
            return bool(c.exists(key))

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash: its replica is promoted after the node timeout)."""
        self.procs.kill(f"node-{port}")

    def healthy(self, masters: int = 3) -> bool:
        """Every running node says ``cluster_state:ok`` and ``masters`` live masters serve the slots."""
        running = [p for p in self.ports if f"node-{p}" in self.procs.names()]
        ok = all(_cluster_info(p).get("cluster_state") == "ok" for p in running)
        return ok and len(self.masters()) == masters

    def wait_healthy(self, masters: int = 3, timeout: float = START_TIMEOUT) -> None:
        """Block until ``healthy`` (for set-up; under traffic poll ``healthy`` without blocking the loop)."""
        wait_until(f"cluster ok with {masters} masters", lambda: self.healthy(masters), self.procs, timeout)


@contextmanager
def cluster_setup(workdir: Path, replicas: int = 0) -> Iterator[ClusterSetup]:
    """3 cluster-enabled masters (and ``replicas`` replicas each) joined by ``redis-cli --cluster create``;
    yields once all say ``ok`` and every replica is in sync with its master."""
    started = time.monotonic()
    procs = Processes(workdir)
    try:
        ports = [
            procs.start_on_some_port(
                lambda port: f"node-{port}", lambda port: _cluster_node_argv(port, workdir)
            )
            for _ in range(3 * (1 + replicas))
        ]
        create = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            + ["--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if create.returncode != 0:
            out = (create.stdout + create.stderr).decode(errors="replace")
            raise TopologyError(f"redis-cli --cluster create failed ({create.returncode}):\n{out}")

        def all_ok() -> bool:
            return all(_cluster_info(p).get("cluster_state") == "ok" for p in ports)

        wait_until("cluster_state:ok on every node", all_ok, procs)
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        setup = ClusterSetup(url=url, ports=ports, procs=procs)
        if replicas:
            setup.wait_healthy(masters=3)
            replica_ports = [p for p in ports if p not in setup.masters()]

            def replicas_known_and_in_sync() -> bool:
                in_sync = all(_info(p, "replication")["master_link_status"] == "up" for p in replica_ports)
                shards = [shard for p in ports for shard in ask(p, "CLUSTER", "SLOTS")]  # type: ignore[attr-defined]
                return in_sync and all(len(shard) == 3 + replicas for shard in shards)

            wait_until("every replica in sync and known to every node", replicas_known_and_in_sync, procs)
        setup.started_in = time.monotonic() - started
        yield setup
    finally:
        procs.stop_all()


def _cluster_node_argv(port: int, workdir: Path) -> list[str]:
    node_dir = workdir / f"node-{port}"
    return server_argv(
        port,
        node_dir,
        cluster_enabled="yes",
        cluster_config_file=str(node_dir / f"nodes-{port}.conf"),
        cluster_node_timeout="2000",
        repl_diskless_sync_delay="0",
    )


def _cluster_info(port: int) -> dict[str, object]:
    with client(port) as c:
        info = c.execute_command("CLUSTER INFO")
    return dict(info) if isinstance(info, dict) else {}


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files: the CA and what it signed, plus an unrelated CA (for "wrong CA" tests)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_tls_material(workdir: Path) -> TlsMaterial:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost, a client certificate, another CA."""
    ca = TestCA(workdir, "entra-broker test CA")
    server = ca.issue("127.0.0.1")
    client = ca.issue("entra-broker gateway", client=True)
    return TlsMaterial(
        ca=ca.files.cert_file,
        server_cert=server.cert_file,
        server_key=server.key_file,
        client_cert=client.cert_file,
        client_key=client.key_file,
        other_ca=TestCA(workdir, "an unrelated CA").files.cert_file,
    )


def check_tls_support(binary: str) -> None:
    """Fail (never skip) when this redis-server was built without TLS: ``--tls-port`` is then unknown."""
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent", "--save", ""],
        capture_output=True,
        timeout=10,
        check=False,
    )
    out = (probe.stdout + probe.stderr).decode(errors="replace")
    if "Bad directive" in out:  # a TLS build fails differently here: on the missing certificate file
        raise TopologyError(
            f"{binary} was built without TLS support (BUILD_TLS=yes), so rediss:// cannot be tested:\n{out}"
        )


@dataclass
class TlsSetup:
    """A redis-server that speaks only TLS and requires a client certificate signed by ``material.ca``."""

    url: str
    tls: TlsFiles
    material: TlsMaterial
    procs: Processes
    started_in: float = 0.0


@contextmanager
def tls_setup(workdir: Path) -> Iterator[TlsSetup]:
    """TLS-only redis-server (``--port 0``) with ``--tls-auth-clients yes``; yields once it answers PING."""
    started = time.monotonic()
    check_tls_support(_binary("redis-server"))
    material = make_tls_material(workdir)
    tls = TlsFiles(str(material.ca), str(material.client_cert), str(material.client_key))
    procs = Processes(workdir)
    try:
        ssl = dict(ssl=True, ssl_ca_certs=tls.ca_file, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
        port = procs.start_on_some_port(
            lambda _: "tls",
            lambda port: server_argv(
                0,
                workdir,
                tls_port=str(port),
                tls_cert_file=str(material.server_cert),
                tls_key_file=str(material.server_key),
                tls_ca_cert_file=str(material.ca),
                tls_auth_clients="yes",
            ),
            **ssl,
        )
        url = f"rediss://127.0.0.1:{port}/0"
        yield TlsSetup(url, tls, material, procs, started_in=time.monotonic() - started)
    finally:
        procs.stop_all()
