"""Fixtures that run the real sluice-broker binary for client compatibility tests.

Every broker a test starts binds 127.0.0.1 on ports it picks itself (port 0, read back
from --ports-file) and is stopped by PID when the test ends.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("SLUICE_BROKER_BIN", REPO / "target" / "debug" / "sluice-broker"))


class Broker:
    """A sluice-broker process with its own data directory."""

    def __init__(self, workdir: Path, overrides=None, host="127.0.0.1", port=None, http_port=None,
                 prefix=None, listeners=()):
        self.workdir = workdir
        self.host = host
        # Command prefix, e.g. `ip netns exec NS` (which execs: the PID stays the broker's).
        self.prefix = list(prefix or [])
        self.data_dir = workdir / "data"
        # Tiered storage goes to a directory of this broker's own unless a test says
        # otherwise (the built-in default is relative to the working directory).
        self.overrides = {"remote.log.storage.url": str(workdir / "remote"), **(overrides or {})}
        self.proc = None
        self.port = port
        self.http_port = http_port
        # Listeners after the PLAINTEXT one (which readiness and most helpers use), by
        # name, e.g. ("SASL_SSL", "SSL"): names equal to protocols need no
        # listener.security.protocol.map entry. Their ports, like PLAINTEXT's, are
        # picked by the broker and kept across restarts.
        self.extra_listeners = list(listeners)
        self.ports = {}
        # The admin gRPC port (internal.listener): port 0 unless the overrides name one.
        self.internal_port = None
        self.log_path = workdir / "broker.log"
        self._log = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def bootstrap_for(self, listener: str) -> str:
        """host:port of the named listener (PLAINTEXT, SASL_SSL, ...)."""
        return f"{self.host}:{self.ports[listener]}"

    def start(self, timeout: float = 30.0):
        self.launch()
        return self.wait_ready(timeout)

    def launch(self):
        """Starts the process without waiting for it to be ready."""
        ports_file = self.workdir / "ports.json"
        if ports_file.exists():
            ports_file.unlink()
        # Reuse the ports of the previous run so clients that cached the address
        # reconnect to the restarted broker.
        kafka_port = self.port or 0
        listeners = [f"PLAINTEXT://{self.host}:{kafka_port}"]
        listeners += [f"{name}://{self.host}:{self.ports.get(name, 0)}" for name in self.extra_listeners]
        args = [
            str(BINARY),
            "--log-dirs", str(self.data_dir),
            "--listeners", ",".join(listeners),
            "--http-listener", f"{self.host}:{self.http_port or 0}",
            "--ports-file", str(ports_file),
        ]
        overrides = dict(self.overrides)
        # The built-in default, 0.0.0.0:9093, would clash between brokers and tests.
        overrides.setdefault("internal.listener", f"{self.host}:{self.internal_port or 0}")
        for k, v in overrides.items():
            args += ["--override", f"{k}={v}"]
        self._log = open(self.log_path, "ab")
        self.starts += 1
        self._log.write(f"\n===== start #{self.starts}: {' '.join(args)}\n".encode())
        self._log.flush()
        env = dict(os.environ, SLUICE_LOG_FORMAT="text", NO_COLOR="1")
        self.proc = subprocess.Popen(self.prefix + args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)
        return self

    def wait_ready(self, timeout: float = 30.0):
        ports_file = self.workdir / "ports.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:
                    time.sleep(0.05)
                    continue
                self.port = ports["kafka"]["PLAINTEXT"]
                self.ports = dict(ports["kafka"])
                self.http_port = ports["http"]
                self.internal_port = ports.get("internal")
                if self.ready():
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"broker not ready within {timeout}s; log:\n{self.log_tail()}")

    def http_get(self, path: str):
        with urllib.request.urlopen(f"http://{self.host}:{self.http_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def ready(self) -> bool:
        try:
            return self.http_get("/readyz")[0] == 200
        except Exception:
            return False

    def metrics(self) -> str:
        return self.http_get("/metrics")[1]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def kill(self):
        """SIGKILL: no flush, no checkpoint, like a crash."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def pause(self):
        """SIGSTOP: the process hangs (a GC pause, a stuck disk, a network partition)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, **kwargs):
        self.stop()
        return self.start(**kwargs)

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def broker_factory(tmp_path):
    """Starts brokers on demand; every one is stopped (by PID) at teardown."""
    started = []

    def make(overrides=None, name="broker", listeners=()):
        workdir = tmp_path / name
        workdir.mkdir(parents=True, exist_ok=True)
        b = Broker(workdir, overrides, listeners=listeners)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        if b.alive():
            b.kill()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class Netns:
    """One network namespace per broker, joined by a bridge in this (the test's)
    namespace: brokers talk over real links the test can cut. `isolate(i)` takes broker
    i's link down (cut off from everyone, still running); `cut(i, j)` drops traffic
    between two brokers only (blackhole routes inside their namespaces)."""

    made = 0

    def __init__(self, size: int):
        # Unique per instance: a namespace or link of an earlier test may still be going away.
        Netns.made += 1
        n = (os.getpid() + Netns.made) % 200 + 20
        self.tag = f"s{os.getpid() % 10000}x{Netns.made % 100}"
        self.prefix = f"10.{n}.77"
        self.bridge = f"{self.tag}b"
        self.size = size
        self.created = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.created.append(("link", self.bridge))
            _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(size):
                self.add(i)
        except Exception:
            self.close()
            raise

    def ns(self, i):
        return f"{self.tag}n{i}"

    def host(self, i):
        return f"{self.prefix}.{i + 2}"

    def add(self, i):
        ns, outer, inner = self.ns(i), f"{self.tag}h{i}", f"{self.tag}v{i}"
        _ip("netns", "add", ns)
        self.created.append(("netns", ns))
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self.created.append(("link", outer))
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def isolate(self, i):
        _ip("link", "set", f"{self.tag}h{i}", "down")

    def heal(self, i):
        _ip("link", "set", f"{self.tag}h{i}", "up")

    def cut(self, i, j):
        """Drops every packet between i and j (a blackhole route in each namespace)."""
        for a, b in ((i, j), (j, i)):
            _ip("-n", self.ns(a), "route", "add", "blackhole", f"{self.host(b)}/32")

    def uncut(self, i, j):
        for a, b in ((i, j), (j, i)):
            _ip("-n", self.ns(a), "route", "del", "blackhole", f"{self.host(b)}/32", check=False)

    def close(self):
        for kind, name in reversed(self.created):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)


def netns_unavailable():
    """Why network namespaces cannot be used here, or None."""
    try:
        r = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
        if r.returncode != 0:
            return "unshare -n failed: " + r.stderr.decode(errors="replace").strip()
        probe = f"slp{os.getpid() % 100000}"
        r = subprocess.run(["ip", "link", "add", probe, "type", "bridge"], capture_output=True, timeout=10)
        if r.returncode != 0:
            return "cannot create a bridge: " + r.stderr.decode(errors="replace").strip()
        subprocess.run(["ip", "link", "del", probe], capture_output=True, timeout=10)
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)


class Cluster:
    """Brokers on 127.0.0.2, .3, ... forming one cluster: the first `voters` of them vote in
    the metadata quorum. Ports are picked up front so restarted brokers keep them. With
    `netns`, each broker runs in its own network namespace instead (fixed ports)."""

    def __init__(self, tmp_path: Path, size: int, overrides=None, voters=3, netns=None):
        self.netns = netns
        self.tmp_path = tmp_path
        self.overrides = overrides or {}
        self.brokers = []
        self.internal = []
        self.cluster_id = "sluice-test-" + os.urandom(4).hex()
        for i in range(size):
            self._new_broker(i)
        self.voters = ",".join(
            f"{i}@{self.brokers[i].host}:{self.internal[i]}" for i in range(min(voters, size))
        )
        for b in self.brokers:
            b.overrides["controller.quorum.voters"] = self.voters

    def _new_broker(self, i: int):
        if self.netns is not None:
            host = self.netns.host(i)
            internal, kafka, http, prefix = 9093, 9092, 9644, ["ip", "netns", "exec", self.netns.ns(i)]
        else:
            host = f"127.0.0.{i + 2}"
            internal, kafka, http, prefix = free_port(host), free_port(host), free_port(host), None
        workdir = self.tmp_path / f"broker{i}"
        workdir.mkdir(parents=True, exist_ok=True)
        overrides = {
            "node.id": str(i),
            "cluster.id": self.cluster_id,
            "internal.listener": f"{host}:{internal}",
            # Failure detection in seconds rather than Kafka's defaults, so tests are short.
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "250",
            "metadata.election.timeout.ms": "500",
            "replica.lag.time.max.ms": "3000",
            "replica.fetch.wait.max.ms": "200",
            "replica.fetch.backoff.ms": "200",
            "default.replication.factor": "3",
            **self.overrides,
        }
        b = Broker(workdir, overrides, host=host, port=kafka, http_port=http, prefix=prefix)
        self.brokers.append(b)
        self.internal.append(internal)
        return b

    def add_broker(self, timeout: float = 30.0):
        """A broker outside the voters: it joins the quorum as a learner."""
        if self.netns is not None:
            self.netns.add(len(self.brokers))
        b = self._new_broker(len(self.brokers))
        b.overrides["controller.quorum.voters"] = self.voters
        return b.start(timeout)

    def start(self, timeout: float = 60.0):
        for b in self.brokers:
            b.launch()
        for b in self.brokers:
            b.wait_ready(timeout)
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def alive(self):
        return [b for b in self.brokers if b.alive()]

    def stop_all(self):
        for b in self.brokers:
            if b.alive():
                b.resume()
                b.kill()


@pytest.fixture
def cluster_factory(tmp_path):
    """Starts clusters on demand; every broker is stopped (by PID) at teardown."""
    made = []

    nets = []

    def make(size=3, overrides=None, voters=3, netns=False):
        net = None
        if netns:
            net = Netns(size)
            nets.append(net)
        c = Cluster(tmp_path / f"cluster{len(made)}", size, overrides, voters, net)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop_all()
    for n in nets:
        n.close()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def pytest_configure(config):
    if not BINARY.exists():
        raise pytest.UsageError(f"sluice-broker binary not found at {BINARY}; build it first")
