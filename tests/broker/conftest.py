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

    def __init__(self, workdir: Path, overrides=None, host="127.0.0.1", port=None, http_port=None):
        self.workdir = workdir
        self.host = host
        self.data_dir = workdir / "data"
        # Tiered storage goes to a directory of this broker's own unless a test says
        # otherwise (the built-in default is relative to the working directory).
        self.overrides = {"remote.log.storage.url": str(workdir / "remote"), **(overrides or {})}
        self.proc = None
        self.port = port
        self.http_port = http_port
        self.log_path = workdir / "broker.log"
        self._log = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

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
        args = [
            str(BINARY),
            "--log-dirs", str(self.data_dir),
            "--listeners", f"PLAINTEXT://{self.host}:{kafka_port}",
            "--http-listener", f"{self.host}:{self.http_port or 0}",
            "--ports-file", str(ports_file),
        ]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        self._log = open(self.log_path, "ab")
        self.starts += 1
        self._log.write(f"\n===== start #{self.starts}: {' '.join(args)}\n".encode())
        self._log.flush()
        env = dict(os.environ, SLUICE_LOG_FORMAT="text", NO_COLOR="1")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
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
                self.http_port = ports["http"]
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

    def make(overrides=None, name="broker"):
        workdir = tmp_path / name
        workdir.mkdir(parents=True, exist_ok=True)
        b = Broker(workdir, overrides)
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


class Cluster:
    """Brokers on 127.0.0.2, .3, ... forming one cluster: the first `voters` of them vote in
    the metadata quorum. Ports are picked up front so restarted brokers keep them."""

    def __init__(self, tmp_path: Path, size: int, overrides=None, voters=3):
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
        host = f"127.0.0.{i + 2}"
        internal = free_port(host)
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
        b = Broker(workdir, overrides, host=host, port=free_port(host), http_port=free_port(host))
        self.brokers.append(b)
        self.internal.append(internal)
        return b

    def add_broker(self, timeout: float = 30.0):
        """A broker outside the voters: it joins the quorum as a learner."""
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

    def make(size=3, overrides=None, voters=3):
        c = Cluster(tmp_path / f"cluster{len(made)}", size, overrides, voters)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop_all()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def pytest_configure(config):
    if not BINARY.exists():
        raise pytest.UsageError(f"sluice-broker binary not found at {BINARY}; build it first")
