"""Operating the broker: HTTP probes and metrics, configuration from file, environment and
flags, refusal of invalid settings, and many simultaneous connections."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

import rawkafka
from kafkautil import metric, produce, wait_for

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("SLUICE_BROKER_BIN", REPO / "target" / "debug" / "sluice-broker"))


# ---------------------------------------------------------------- HTTP

def test_probes_and_metrics(broker):
    assert broker.http_get("/healthz") == (200, "ok\n")
    assert broker.http_get("/readyz") == (200, "ready\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        broker.http_get("/no-such-endpoint")
    assert e.value.code == 404

    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic("observed", 1, 1)], operation_timeout=10)["observed"].result(15)
    n = 500
    reports = produce(broker.bootstrap, "observed", [b"m%d" % i for i in range(n)])
    assert sorted(o for _, o in reports) == list(range(n))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ops", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition("observed", 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            got += [m.value() for m in c.consume(num_messages=500, timeout=1) if m.error() is None]
        assert got == [b"m%d" % i for i in range(n)]
    finally:
        c.close()

    text = broker.metrics()
    assert "# TYPE sluice_request_duration_seconds histogram" in text
    produce_requests = metric(text, "sluice_requests_total", api="produce")
    assert produce_requests is not None and produce_requests >= 1
    assert metric(text, "sluice_requests_total", api="fetch") >= 1
    assert metric(text, "sluice_requests_total", api="create_topics") == 1
    assert metric(text, "sluice_request_duration_seconds_count", api="produce") == produce_requests
    assert metric(text, "sluice_request_duration_seconds_bucket", le="+Inf", api="produce") == produce_requests
    assert metric(text, "sluice_request_duration_seconds_sum", api="produce") > 0

    part = {"topic": "observed", "partition": "0"}
    assert metric(text, "sluice_partition_log_end_offset", **part) == n
    assert metric(text, "sluice_partition_log_start_offset", **part) == 0
    assert metric(text, "sluice_partition_high_watermark", **part) == n
    assert metric(text, "sluice_partition_messages_in_total", **part) == n
    assert metric(text, "sluice_partition_segments", **part) == 1
    on_disk = sum(p.stat().st_size for p in (broker.data_dir / "observed-0").glob("*.log"))
    assert on_disk > 0
    assert metric(text, "sluice_partition_size_bytes", **part) == on_disk
    assert metric(text, "sluice_partition_bytes_in_total", **part) == on_disk
    assert metric(text, "sluice_partition_bytes_out_total", **part) >= on_disk
    assert metric(text, "sluice_network_bytes_in_total") > on_disk
    assert metric(text, "sluice_network_bytes_out_total") > on_disk
    assert metric(text, "sluice_connections_accepted_total") >= 2


# ---------------------------------------------------------------- configuration sources

class OwnBroker:
    """The binary started directly (not through conftest), for --config / environment tests."""

    def __init__(self, workdir, args, env_extra):
        self.workdir = workdir
        self.ports_file = workdir / "ports.json"
        self.log_path = workdir / "broker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update({"SLUICE_LOG_FORMAT": "text", "NO_COLOR": "1"}, **env_extra)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(BINARY), *args, "--ports-file", str(self.ports_file)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.port = self.http_port = None

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            if self.ports_file.exists():
                try:
                    ports = json.loads(self.ports_file.read_text())
                except json.JSONDecodeError:
                    time.sleep(0.05)
                    continue
                self.port, self.http_port = ports["kafka"]["PLAINTEXT"], ports["http"]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=5) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError("broker not ready: " + self.log_path.read_text(errors="replace"))

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            return self.proc.returncode
        finally:
            self.log.close()


def test_config_file_environment_and_flags(tmp_path):
    data = tmp_path / "data"
    props = tmp_path / "server.properties"
    props.write_text(
        "# Kafka-style properties file\n"
        "listeners=PLAINTEXT://127.0.0.1:0\n"
        "http.listener=127.0.0.1:0\n"
        f"log.dirs={data}\n"
        "num.partitions=2\n"
        "log.retention.hours=48\n"
        "log.segment.bytes=2097152\n"
    )
    b = OwnBroker(tmp_path, ["--config", str(props), "--override", "log.retention.hours=12"],
                  {"SLUICE_NUM_PARTITIONS": "5", "SLUICE_LOG_RETENTION_HOURS": "24"})
    try:
        b.wait_ready()
        bootstrap = f"127.0.0.1:{b.port}"
        # Auto-created topic: num.partitions from the environment beats the file.
        [(_, off)] = produce(bootstrap, "from-env", [b"x"])
        assert off == 0
        a = AdminClient({"bootstrap.servers": bootstrap})
        md = a.list_topics(timeout=10).topics
        assert {t: len(m.partitions) for t, m in md.items()} == {"from-env": 5}
        assert sorted(p.name for p in data.iterdir() if p.name.startswith("from-env-")) == [
            f"from-env-{i}" for i in range(5)]

        r = ConfigResource("broker", "0")
        bc = a.describe_configs([r])[r].result(15)
        assert (bc["num.partitions"].value, ConfigSource(bc["num.partitions"].source)) == (
            "5", ConfigSource.STATIC_BROKER_CONFIG)
        # --override beats the environment, which beats the file.
        assert bc["log.retention.hours"].value == "12"
        # Only in the file.
        assert bc["log.segment.bytes"].value == "2097152"
        t = ConfigResource("topic", "from-env")
        tc = a.describe_configs([t])[t].result(15)
        assert (tc["retention.ms"].value, ConfigSource(tc["retention.ms"].source)) == (
            str(12 * 3_600_000), ConfigSource.STATIC_BROKER_CONFIG)
        assert (tc["segment.bytes"].value, ConfigSource(tc["segment.bytes"].source)) == (
            "2097152", ConfigSource.STATIC_BROKER_CONFIG)
        del a
    finally:
        code = b.stop()
    assert code == 0
    assert "shut down cleanly" in b.log_path.read_text(errors="replace")


@pytest.mark.parametrize("source", ["file", "env", "override"])
def test_invalid_setting_refuses_to_start(tmp_path, source):
    args = ["--listeners", "PLAINTEXT://127.0.0.1:0", "--http-listener", "127.0.0.1:0",
            "--log-dirs", str(tmp_path / "data"), "--ports-file", str(tmp_path / "ports.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_LOG_FORMAT"] = "text"
    if source == "file":
        props = tmp_path / "server.properties"
        props.write_text("num.partitions=zero\n")
        args += ["--config", str(props)]
    elif source == "env":
        env["SLUICE_NUM_PARTITIONS"] = "zero"
    else:
        args += ["--override", "num.partitions=zero"]
    r = subprocess.run([str(BINARY), *args], capture_output=True, env=env, timeout=30)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, out
    assert "num.partitions" in out, out
    assert "zero" in out, out
    assert not (tmp_path / "ports.json").exists()


def test_missing_config_file_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    missing = tmp_path / "nope.properties"
    r = subprocess.run([str(BINARY), "--config", str(missing), "--log-dirs", str(tmp_path / "d"),
                        "--listeners", "PLAINTEXT://127.0.0.1:0", "--http-listener", "127.0.0.1:0"],
                       capture_output=True, env=env, timeout=30)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, out
    assert str(missing) in out, out


# ---------------------------------------------------------------- connections

def test_many_concurrent_connections(broker):
    n = 200
    socks = []
    try:
        for _ in range(n):
            socks.append(rawkafka.connect(broker.port))
        # All connected before any request is sent.
        for i, s in enumerate(socks):
            s.sendall(rawkafka.api_versions_request(0, 10_000 + i))
        tables = []
        for i, s in enumerate(socks):
            cid, r = rawkafka.recv_response(s, timeout=30)
            assert cid == 10_000 + i
            error, apis = rawkafka.parse_api_versions_v0(r)
            assert error == 0
            tables.append(apis)
        assert all(t == tables[0] for t in tables)
        assert tables[0][rawkafka.API_VERSIONS] == (0, 4)
        m = broker.metrics()
        assert metric(m, "sluice_connections_active") == n
        assert metric(m, "sluice_connections_accepted_total") == n
        # Each connection still answers a second request.
        for i, s in enumerate(socks):
            s.sendall(rawkafka.api_versions_request(2, 20_000 + i))
        for i, s in enumerate(socks):
            assert rawkafka.recv_response(s, timeout=30)[0] == 20_000 + i
    finally:
        for s in socks:
            s.close()
    assert wait_for(lambda: metric(broker.metrics(), "sluice_connections_active") == 0, 15)
    assert broker.http_get("/readyz")[0] == 200
