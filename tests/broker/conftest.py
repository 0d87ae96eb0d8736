"""Fixtures that run the real sluice-broker binary for client compatibility tests.

Every broker a test starts binds 127.0.0.1 on ports it picks itself (port 0, read back
from --ports-file) and is stopped by PID when the test ends.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("SLUICE_BROKER_BIN", REPO / "target" / "debug" / "sluice-broker"))


class Broker:
    """A sluice-broker process with its own data directory."""

    def __init__(self, workdir: Path, overrides=None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        # Tiered storage goes to a directory of this broker's own unless a test says
        # otherwise (the built-in default is relative to the working directory).
        self.overrides = {"remote.log.storage.url": str(workdir / "remote"), **(overrides or {})}
        self.proc = None
        self.port = None
        self.http_port = None
        self.log_path = workdir / "broker.log"
        self._log = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0):
        ports_file = self.workdir / "ports.json"
        if ports_file.exists():
            ports_file.unlink()
        # Reuse the ports of the previous run so clients that cached the address
        # reconnect to the restarted broker.
        kafka_port = self.port or 0
        args = [
            str(BINARY),
            "--log-dirs", str(self.data_dir),
            "--listeners", f"PLAINTEXT://127.0.0.1:{kafka_port}",
            "--http-listener", f"127.0.0.1:{self.http_port or 0}",
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
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
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


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def pytest_configure(config):
    if not BINARY.exists():
        raise pytest.UsageError(f"sluice-broker binary not found at {BINARY}; build it first")
