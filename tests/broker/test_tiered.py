"""Tiered storage against a real S3-compatible server (s3s-fs from crates.io, started and
stopped here by PID) and against a local directory (file://): uploads, local retention,
reads from the bucket, outages, crashes, a wiped disk, remote retention, topic deletion
and damaged objects.

Both stores keep objects as files, so the tests check the bucket's contents on disk.
"""

import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, OffsetSpec

import rawkafka
from kafkautil import admin, consumer, create_topic, metric, producer, close_producer, wait_for

pytestmark = pytest.mark.timeout(300)

S3S_FS = os.environ.get("SLUICE_S3S_FS_BIN", "")
BUCKET = "sluice-test"
ACCESS_KEY, SECRET_KEY = "sluice-test-key", "sluice-test-secret"
MIB = 1 << 20

# ---------------------------------------------------------------- the S3 server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """s3s-fs serving `root` on 127.0.0.1; objects of bucket B are files in root/B."""

    def __init__(self, root: Path, log: Path):
        self.root = root
        self.port = free_port()
        self.log = log
        self.proc = None
        (root / BUCKET).mkdir(parents=True, exist_ok=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [S3S_FS, "--host", "127.0.0.1", "--port", str(self.port),
                 "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(self.root)],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"s3s-fs exited: {self.log.read_text(errors='replace')[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("s3s-fs did not start listening")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def s3(tmp_path):
    if not S3S_FS or not Path(S3S_FS).exists():
        pytest.fail("SLUICE_S3S_FS_BIN must name the s3s-fs binary (./scripts/test installs it)")
    server = S3Server(tmp_path / "s3", tmp_path / "s3s-fs.log").start()
    yield server
    server.kill()


def store_overrides(kind, tmp_path, s3=None):
    """Broker settings for a store of `kind` ("s3" or "file"), plus short intervals so
    uploads, retention and retries happen within a test's patience."""
    common = {
        "log.retention.check.interval.ms": "300",
        "remote.log.manager.task.interval.ms": "300",
        "remote.log.manager.task.retry.backoff.ms": "100",
        "remote.log.manager.task.retry.backoff.max.ms": "1000",
    }
    if kind == "file":
        return {**common, "remote.log.storage.url": f"file://{tmp_path / 'bucket'}"}
    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    return {
        **common,
        "remote.log.storage.url": f"s3://{BUCKET}/tier",
        "remote.log.storage.s3.endpoint": s3.endpoint,
        "remote.log.storage.s3.region": "us-east-1",
        "remote.log.storage.s3.path.style.access": "true",
        "remote.log.storage.s3.credentials.file": str(creds),
    }


def store_root(kind, tmp_path, s3=None) -> Path:
    """Where the store keeps this broker's objects on disk."""
    return tmp_path / "bucket" if kind == "file" else s3.root / BUCKET / "tier"


def partition_dir(root: Path, topic, partition=0):
    """The object prefix of a partition: <cluster>/<hash>/<topic>-<id>/<partition>."""
    found = [p for p in root.glob(f"*/*/{topic}-*/{partition}") if p.is_dir()]
    return found[0] if found else None


def manifest(root: Path, topic, partition=0):
    d = partition_dir(root, topic, partition)
    if d is None or not (d / "manifest.json").exists():
        return None
    return json.loads((d / "manifest.json").read_text())


def remote_segments(root: Path, topic, partition=0):
    """The manifest's segments; [] while there is no manifest."""
    return (manifest(root, topic, partition) or {"segments": []})["segments"]


def segment_objects(root: Path, topic, partition=0):
    d = partition_dir(root, topic, partition)
    if d is None:
        return []
    return sorted(p.name for p in d.iterdir() if p.suffix in (".log", ".index", ".timeindex"))


def local_segments(b, topic, partition=0):
    d = b.data_dir / f"{topic}-{partition}"
    return sorted(int(p.stem) for p in d.glob("*.log"))


def assert_manifest_consistent(root, topic, partition=0):
    """Every object the manifest names exists with the size it records."""
    m = manifest(root, topic, partition)
    assert m is not None, "no manifest"
    d = partition_dir(root, topic, partition)
    prev_end = None
    for s in m["segments"]:
        stem = f"{s['base_offset']:020d}-{s['id'].replace('-', '')[:16]}"
        for ext, size in (("log", s["size_bytes"]), ("index", s["index_bytes"]),
                          ("timeindex", s["time_index_bytes"])):
            f = d / f"{stem}.{ext}"
            assert f.exists(), f"manifest names {f.name}, which is not in the bucket"
            assert f.stat().st_size == size, f"{f.name}: {f.stat().st_size} bytes, manifest says {size}"
        if prev_end is not None:
            assert s["base_offset"] >= prev_end
        prev_end = s["end_offset"]
    return m


# ---------------------------------------------------------------- records

def blob():
    rnd = random.Random(42)
    letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return bytes(rnd.choice(letters) for _ in range(MIB + 4096))


BLOB = None


def value(i, size=1000):
    """Record i's value: its number and a window of a fixed random text (printable, so
    kcat's output compares line by line)."""
    global BLOB
    if BLOB is None:
        BLOB = blob()
    start = (i * 7919) % MIB
    return b"%09d|" % i + BLOB[start:start + size - 10]


BASE_TS = int(time.time() * 1000) - 3_600_000


def produce_range(b, topic, first, count, size=1000, partition=0, ts_of=lambda i: BASE_TS + i,
                  **conf):
    """Produces records first..first+count-1 (value(i), timestamp ts_of(i), by default
    BASE_TS + i) to `partition` with acks=all; asserts every delivery."""
    p = producer(b, **{"linger.ms": 20, "batch.size": 256 * 1024, **conf})
    errors = []
    try:
        for i in range(first, first + count):
            while True:
                try:
                    p.produce(topic, value=value(i, size), partition=partition, timestamp=ts_of(i),
                              on_delivery=lambda err, msg: err and errors.append(err))
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(120)
    finally:
        close_producer(p)
    assert left == 0 and not errors, f"{left} undelivered, errors {errors[:3]}"


def expected_digest(first, count, size=1000):
    h = hashlib.sha256()
    for i in range(first, first + count):
        h.update(value(i, size) + b"\n")
    return h.hexdigest()


def kcat_digest(b, topic, start, count):
    """sha256 of `count` values read by kcat from `start`, one per line."""
    out = subprocess.run(
        ["kcat", "-C", "-b", b.bootstrap, "-t", topic, "-p", "0", "-o", str(start),
         "-c", str(count), "-e", "-q", "-f", "%s\n"],
        capture_output=True, timeout=240, check=True).stdout
    lines = out.count(b"\n")
    assert lines == count, f"kcat returned {lines} of {count} records"
    return hashlib.sha256(out).hexdigest()


def confluent_digest(b, topic, start, count):
    """sha256 of `count` values read with confluent-kafka from `start`; checks offsets are
    dense and in order."""
    c = consumer(b, **{"fetch.max.bytes": 8 * MIB})
    h = hashlib.sha256()
    want = start
    first_wrong = None
    try:
        c.assign([TopicPartition(topic, 0, start)])
        deadline = time.monotonic() + 240
        while want < start + count and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=1):
                assert m.error() is None, m.error()
                assert m.offset() == want, f"offset {m.offset()}, expected {want}"
                if first_wrong is None and m.value() != value(want, len(m.value())):
                    first_wrong = (want, m.value()[:10], len(m.value()))
                h.update(m.value() + b"\n")
                want += 1
                if want == start + count:
                    break
    finally:
        c.close()
    assert want == start + count, f"read up to {want}, expected {start + count}"
    # Names the first record that differs, so a mismatch says whether a record was
    # duplicated or shifted (its number is in its value) or its bytes were damaged.
    if first_wrong is not None:
        print(f"first wrong value: offset {first_wrong[0]} holds {first_wrong[1]!r}, "
              f"{first_wrong[2]} bytes")
    return h.hexdigest()


# ---------------------------------------------------------------- raw ListOffsets v9, Fetch v4


def read_uvarint(r):
    shift = result = 0
    while True:
        b = r.int8() & 0xFF
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7


def list_offset_v9(b, topic, timestamp, partition=0):
    """ListOffsets v9 (flexible) for one partition: (error code, offset)."""
    name = topic.encode()
    uvarint = rawkafka.uvarint
    body = (struct.pack(">ib", -1, 0) + uvarint(2) + uvarint(len(name) + 1) + name + uvarint(2)
            + struct.pack(">iiq", partition, -1, timestamp) + b"\x00" + b"\x00" + b"\x00")
    header = struct.pack(">hhi", 2, 9, 77) + struct.pack(">h", 4) + b"test" + b"\x00"
    frame = struct.pack(">i", len(header) + len(body)) + header + body
    s = rawkafka.connect(b.port)
    try:
        s.sendall(frame)
        (size,) = struct.unpack(">i", rawkafka.recv_exact(s, 4))
        r = rawkafka.Reader(rawkafka.recv_exact(s, size))
        assert r.int32() == 77
        read_uvarint(r)  # header tagged fields
        r.int32()  # throttle
        assert read_uvarint(r) == 2
        r._take(read_uvarint(r) - 1)
        assert read_uvarint(r) == 2
        r.int32()
        err = r.int16()
        r.int64()
        return err, r.int64()
    finally:
        s.close()


def fetch_v4_multi(b, topic, offsets, max_bytes=MIB, wait_ms=500, min_bytes=1):
    """Fetch v4 for several partitions ({partition: offset}):
    {partition: (error code, high watermark, record bytes)}."""
    w = rawkafka.Writer()
    w.int32(-1).int32(wait_ms).int32(min_bytes).int32(max_bytes * len(offsets)).int8(0)
    w.int32(1).string(topic).int32(len(offsets))
    for p, off in offsets.items():
        w.int32(p).int64(off).int32(max_bytes)
    s = rawkafka.connect(b.port)
    try:
        s.sendall(rawkafka.request(1, 4, 5, w.build()))
        _, r = rawkafka.recv_response(s, timeout=30)
        r.int32()
        assert r.int32() == 1
        r.string()
        out = {}
        for _ in range(r.int32()):
            p = r.int32()
            err = r.int16()
            hw = r.int64()
            r.int64()
            n = r.int32()
            for _ in range(max(n, 0)):
                r.int64()
                r.int64()
            size = r.int32()
            out[p] = (err, hw, r._take(size) if size > 0 else b"")
        return out
    finally:
        s.close()


def fetch_v4(b, topic, offset, max_bytes=MIB, wait_ms=500):
    """Fetch v4 for partition 0: (error code, high watermark, record bytes)."""
    return fetch_v4_multi(b, topic, {0: offset}, max_bytes, wait_ms)[0]


KAFKA_STORAGE_ERROR = 56


def set_topic_config(a, topic, name, value):
    """IncrementalAlterConfigs SET of one topic setting; raises on an error answer."""
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(15)


# ---------------------------------------------------------------- tests


TIERED_TOPIC = {
    "remote.storage.enable": "true",
    "segment.bytes": str(MIB),
    "local.retention.bytes": str(4 * MIB),
}


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_100mb_served_from_the_bucket_byte_for_byte(request, broker_factory, tmp_path, kind):
    """100 MB into 1 MiB segments with 4 MiB of local retention: sealed segments are
    uploaded, local copies go only after their upload, and kcat and confluent-kafka read
    everything from offset 0 byte for byte; timestamp lookups land in remote data;
    EARLIEST is 0 while EARLIEST_LOCAL (-4) is the local start."""
    s3 = request.getfixturevalue("s3") if kind == "s3" else None
    overrides = store_overrides(kind, tmp_path, s3)
    config = dict(TIERED_TOPIC)
    segments, local_max = 90, 6
    if kind == "s3":
        # 8 MiB segments in 5 MiB parts: every upload is a multipart upload.
        overrides["remote.log.storage.upload.part.size.bytes"] = str(5 * MIB)
        config.update({"segment.bytes": str(8 * MIB), "local.retention.bytes": str(16 * MIB)})
        segments, local_max = 10, 4
    b = broker_factory(overrides)
    root = store_root(kind, tmp_path, s3)
    topic = "cold"
    create_topic(b, topic, 1, config)
    n = 100_000
    # Record 60,000 (remote-only once settled) carries the largest timestamp.
    peak, peak_ts = 60_000, BASE_TS + 3_000_000
    produce_range(b, topic, 0, n, ts_of=lambda i: peak_ts if i == peak else BASE_TS + i)

    def state():
        m = manifest(root, topic)
        return (m and m["generation"], local_segments(b, topic))

    def settled():
        """Every sealed segment uploaded, local retention done, nothing moving for 1 s."""
        m = manifest(root, topic)
        local = local_segments(b, topic)
        if not (m and len(m["segments"]) >= segments and len(local) <= local_max
                and m["segments"][-1]["end_offset"] == local[-1]):
            return False
        before = state()
        time.sleep(1)
        return state() == before
    assert wait_for(settled, 120, 0.2), (
        f"local {local_segments(b, topic)}, remote segments "
        f"{len(remote_segments(root, topic))}")
    m = assert_manifest_consistent(root, topic)
    local_start = local_segments(b, topic)[0]
    assert m["segments"][0]["base_offset"] == 0
    assert m["segments"][-1]["end_offset"] >= local_start, "gap between remote and local data"
    # No local segment went before its upload.
    assert local_start <= m["segments"][-1]["end_offset"]

    digest = expected_digest(0, n)
    assert kcat_digest(b, topic, 0, n) == digest
    assert confluent_digest(b, topic, 0, n) == digest

    # Timestamp lookups in remote-only data, and the earliest offsets.
    a = admin(b)
    for want in (0, 1234, local_start // 2):
        f = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.for_timestamp(BASE_TS + want)})
        r = f[TopicPartition(topic, 0)].result(15)
        assert (r.offset, r.timestamp) == (want, BASE_TS + want)
    assert peak < local_start
    f = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    r = f[TopicPartition(topic, 0)].result(15)
    assert (r.offset, r.timestamp) == (peak, peak_ts), "MAX_TIMESTAMP must see remote-only data"
    assert list_offset_v9(b, topic, -2) == (0, 0)
    assert list_offset_v9(b, topic, -4) == (0, local_start)
    assert list_offset_v9(b, topic, -5)[1] == m["segments"][-1]["end_offset"] - 1

    text = b.metrics()
    assert metric(text, "sluice_remote_upload_segments_total") >= segments
    # Both readers read everything below the local start from the bucket (kcat first,
    # through the cache; at least once in full).
    remote_only = sum(s["size_bytes"] for s in m["segments"] if s["end_offset"] <= local_start)
    assert remote_only > 60 * MIB
    assert metric(text, "sluice_remote_fetch_bytes_total") >= remote_only
    assert metric(text, "sluice_partition_remote_segments", topic=topic, partition="0") >= segments
    assert metric(text, "sluice_partition_log_start_offset", topic=topic, partition="0") == 0
    assert metric(text, "sluice_remote_cache_hits_total") > 0


def test_s3_outage_mid_upload_loses_nothing(broker_factory, tmp_path, s3):
    """The S3 server is killed while segments are being uploaded and restarted later:
    uploads fail and retry with backoff, nothing is deleted locally before its upload,
    produce keeps working, /readyz says why, and everything is readable afterwards."""
    b = broker_factory({**store_overrides("s3", tmp_path, s3),
                        # Slow uploads, so the kill lands in the middle of one.
                        "remote.log.manager.copy.max.bytes.per.second": str(8 * MIB)})
    root = store_root("s3", tmp_path, s3)
    topic = "outage"
    create_topic(b, topic, 1, {**TIERED_TOPIC, "local.retention.bytes": str(2 * MIB)})
    produce_range(b, topic, 0, 30_000)
    assert wait_for(lambda: len(remote_segments(root, topic)) >= 3, 60)
    s3.kill()
    uploaded_before = len(manifest(root, topic)["segments"])
    produce_range(b, topic, 30_000, 20_000)

    def degraded():
        return metric(b.metrics(), "sluice_remote_errors_total", reason="unreachable", default=0) > 0
    assert wait_for(degraded, 60), "no upload failure counted while S3 was down"
    status, body = b.http_get("/readyz")
    assert status == 200 and "degraded" in body, body
    # Local data not in the bucket is all still on disk.
    end = manifest(root, topic)["segments"][-1]["end_offset"]
    assert local_segments(b, topic)[0] <= end
    lag = metric(b.metrics(), "sluice_partition_remote_upload_lag_bytes", topic=topic, partition="0")
    assert lag > 10 * MIB, lag

    s3.start()
    def caught_up():
        m = manifest(root, topic)
        return len(m["segments"]) > uploaded_before + 10 and len(local_segments(b, topic)) <= 4
    assert wait_for(caught_up, 120, 0.2), f"uploads did not resume: {b.log_tail(20)}"
    assert_manifest_consistent(root, topic)
    assert wait_for(lambda: "degraded" not in b.http_get("/readyz")[1], 30)
    n = 50_000
    assert confluent_digest(b, topic, 0, n) == expected_digest(0, n)


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_sigkill_during_uploads(request, broker_factory, tmp_path, kind):
    """SIGKILL while segments are being uploaded: after the restart the manifest names
    only objects that exist, objects of the cut upload are swept, uploads continue and
    everything is readable."""
    s3 = request.getfixturevalue("s3") if kind == "s3" else None
    b = broker_factory({**store_overrides(kind, tmp_path, s3),
                        "remote.log.manager.copy.max.bytes.per.second": str(2 * MIB)})
    root = store_root(kind, tmp_path, s3)
    topic = "crash"
    create_topic(b, topic, 1, TIERED_TOPIC)
    n = 30_000
    produce_range(b, topic, 0, n)
    assert wait_for(lambda: len(remote_segments(root, topic)) >= 2, 60)
    b.kill()
    m = assert_manifest_consistent(root, topic)
    cut = unnamed_objects(root, topic, m)
    b.start()

    def done():
        m = manifest(root, topic)
        local = local_segments(b, topic)
        return m["segments"][-1]["end_offset"] == local[-1] and len(local) <= 6
    assert wait_for(done, 120, 0.2), (manifest(root, topic)["segments"][-1], local_segments(b, topic))
    m = assert_manifest_consistent(root, topic)
    assert not unnamed_objects(root, topic, m), "objects no manifest names"
    assert not set(cut) & set(segment_objects(root, topic)), f"objects of the cut upload stayed: {cut}"
    assert confluent_digest(b, topic, 0, n) == expected_digest(0, n)


def unnamed_objects(root, topic, m):
    named = {s["id"].replace("-", "")[:16] for s in m["segments"]}
    return [o for o in segment_objects(root, topic) if o.split("-")[1].split(".")[0] not in named]


def test_wiped_disk_serves_cold_data_from_the_bucket(broker_factory, tmp_path, s3):
    """The broker's partition data is wiped (topic metadata kept) and it restarts: the
    manifest is the source of truth, offsets continue after the remote end, and cold
    data is served from the bucket without downloading it all first."""
    b = broker_factory(store_overrides("s3", tmp_path, s3))
    root = store_root("s3", tmp_path, s3)
    topic = "wiped"
    create_topic(b, topic, 1, {**TIERED_TOPIC, "local.retention.bytes": str(64 * MIB)})
    produce_range(b, topic, 0, 20_000)
    assert wait_for(lambda: len(remote_segments(root, topic)) >= 15, 60)
    b.stop()
    remote_end = manifest(root, topic)["segments"][-1]["end_offset"]
    for entry in b.data_dir.iterdir():
        if entry.name in ("meta.properties", "__sluice_metadata"):
            continue
        if entry.is_dir():
            subprocess.run(["rm", "-rf", str(entry)], check=True)
        else:
            entry.unlink()
    b.start()
    assert wait_for(lambda: local_segments(b, topic) == [remote_end], 30), local_segments(b, topic)
    # Nothing was downloaded up front.
    assert metric(b.metrics(), "sluice_remote_fetch_bytes_total") == 0
    assert confluent_digest(b, topic, 0, remote_end) == expected_digest(0, remote_end)
    assert 0 < metric(b.metrics(), "sluice_remote_fetch_bytes_total") <= 2 * remote_end * 1100
    # New records continue at the remote end.
    produce_range(b, topic, remote_end, 10)
    assert list_offset_v9(b, topic, -1) == (0, remote_end + 10)
    assert confluent_digest(b, topic, remote_end - 5, 15) == expected_digest(remote_end - 5, 15)


def test_retention_and_topic_deletion_remove_remote_objects(broker_factory, tmp_path):
    """retention.ms applies to the remote tier (manifest entries and objects go, the log
    start moves); DeleteRecords into remote data is recorded in the manifest; deleting
    the topic removes its prefix."""
    b = broker_factory(store_overrides("file", tmp_path))
    root = store_root("file", tmp_path)
    topic = "expiring"
    create_topic(b, topic, 1, TIERED_TOPIC)
    produce_range(b, topic, 0, 20_000)
    assert wait_for(lambda: len(remote_segments(root, topic)) >= 15, 60)

    # DeleteRecords inside the remote range.
    a = admin(b)
    f = a.delete_records([TopicPartition(topic, 0, 5_000)])
    assert f[TopicPartition(topic, 0)].result(15).low_watermark == 5_000
    m = manifest(root, topic)
    assert m["log_start_offset"] == 5_000 and m["segments"][0]["base_offset"] <= 5_000
    assert m["segments"][0]["end_offset"] > 5_000, "segments wholly below the start stay"
    assert list_offset_v9(b, topic, -2) == (0, 5_000)
    assert_manifest_consistent(root, topic)

    # Tiering cannot be switched off again: the bucket's data would become unreachable.
    with pytest.raises(Exception, match="cannot be turned off"):
        set_topic_config(a, topic, "remote.storage.enable", "false")

    # Records are an hour old: retention.ms of 30 minutes expires every sealed segment.
    set_topic_config(a, topic, "retention.ms", "1800000")
    assert wait_for(lambda: len(manifest(root, topic)["segments"]) == 0, 60), manifest(root, topic)
    assert wait_for(lambda: segment_objects(root, topic) == [], 30), segment_objects(root, topic)
    low = list_offset_v9(b, topic, -2)[1]
    assert low == local_segments(b, topic)[0] > 5_000
    assert metric(b.metrics(), "sluice_remote_deleted_segments_total") >= 15

    produce_range(b, topic, 20_000, 3_000)
    a.delete_topics([topic], operation_timeout=15)[topic].result(15)
    assert wait_for(lambda: partition_dir(root, topic) is None or not any(partition_dir(root, topic).iterdir()), 30), \
        list(partition_dir(root, topic).iterdir())


def test_damaged_and_missing_remote_objects_fail_only_their_range(broker_factory, tmp_path):
    """A corrupted remote segment gives KAFKA_STORAGE_ERROR for its offsets (and a log
    line and a metric); a missing one too; other ranges and the broker keep working."""
    b = broker_factory(store_overrides("file", tmp_path))
    root = store_root("file", tmp_path)
    topic = "damaged"
    create_topic(b, topic, 1, {**TIERED_TOPIC, "local.retention.bytes": str(2 * MIB)})
    produce_range(b, topic, 0, 12_000)
    assert wait_for(lambda: len(remote_segments(root, topic)) >= 8 and local_segments(b, topic)[0] > 8_000, 60)
    segs = manifest(root, topic)["segments"]
    d = partition_dir(root, topic)

    def log_object(s):
        return d / f"{s['base_offset']:020d}-{s['id'].replace('-', '')[:16]}.log"

    victim = segs[2]
    data = bytearray(log_object(victim).read_bytes())
    for pos in range(len(data) // 2, len(data), 512):
        data[pos] ^= 0xFF
    log_object(victim).write_bytes(bytes(data))
    # Offsets in the damaged second half fail.
    late = victim["end_offset"] - 5
    err, _, _ = fetch_v4(b, topic, late)
    assert err == KAFKA_STORAGE_ERROR
    assert metric(b.metrics(), "sluice_remote_errors_total", reason="corrupt_object") >= 1
    assert "failed its CRC check" in b.log_text()

    gone = segs[4]
    log_object(gone).unlink()
    err, _, _ = fetch_v4(b, topic, gone["base_offset"])
    assert err == KAFKA_STORAGE_ERROR
    assert metric(b.metrics(), "sluice_remote_errors_total", reason="missing_object") >= 1

    # Other remote ranges and local data are unaffected.
    ok = segs[0]
    err, hw, records = fetch_v4(b, topic, ok["base_offset"] + 1)
    assert err == 0 and len(records) > 0 and hw == 12_000
    assert confluent_digest(b, topic, segs[6]["base_offset"], 12_000 - segs[6]["base_offset"]) == \
        expected_digest(segs[6]["base_offset"], 12_000 - segs[6]["base_offset"])
    assert b.alive()


def test_remote_reads_do_not_hold_up_local_data(broker_factory, tmp_path, s3):
    """With the S3 server frozen (SIGSTOP: connections hang), a fetch asking for remote
    data of one partition and local data of another answers with the local data at once
    instead of waiting the 10 s `remote.fetch.max.wait.ms`; the remote partition gets no
    data and no error, and is served once the store answers again."""
    b = broker_factory({**store_overrides("s3", tmp_path, s3), "remote.fetch.max.wait.ms": "10000"})
    topic = "mixed"
    create_topic(b, topic, 2, {**TIERED_TOPIC, "local.retention.bytes": str(2 * MIB)})
    produce_range(b, topic, 0, 12_000)
    produce_range(b, topic, 0, 10, partition=1)
    assert wait_for(lambda: local_segments(b, topic)[0] > 5_000, 60)
    s3.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        got = fetch_v4_multi(b, topic, {0: 0, 1: 0}, wait_ms=0)
        elapsed = time.monotonic() - started
        assert got[1][0] == 0 and len(got[1][2]) > 0, got[1]
        assert got[0][0] == 0 and got[0][2] == b"", got[0][:2]
        assert elapsed < 5, f"local data waited {elapsed:.1f} s for the frozen object store"
    finally:
        s3.proc.send_signal(signal.SIGCONT)

    def remote_served():
        err, _, data = fetch_v4(b, topic, 0)
        return err == 0 and len(data) > 0
    assert wait_for(remote_served, 60, 0.5)
