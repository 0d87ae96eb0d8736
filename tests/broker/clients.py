"""Helpers shared by the client compatibility tests (confluent-kafka, kafka-python, kcat).

Nothing here starts or stops brokers: the `broker` / `broker_factory` fixtures of
conftest.py do. These helpers only produce generated records, read them back and compare
them record by record, so that a failure names the first partition, offset and field that
differ. Topics, plain producers and consumers come from kafkautil.py.

Every loop is bounded by a deadline; every subprocess is waited for or killed.
"""

import collections
import contextlib
import subprocess
import time
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from kafkautil import consumer, produce, producer

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# confluent-kafka / librdkafka timestamp types.
CREATE_TIME = TIMESTAMP_CREATE_TIME
LOG_APPEND_TIME = TIMESTAMP_LOG_APPEND_TIME
# kafka-python timestamp_type values (the attribute bit of the batch).
KP_CREATE_TIME = 0
KP_LOG_APPEND_TIME = 1

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Rec:
    """One produced record: what a consumer must get back."""

    key: bytes | None
    value: bytes | None
    headers: tuple  # ((name: str, value: bytes | None), ...) in order, duplicates kept
    timestamp: int | None  # CreateTime the producer set; None = client's own clock


def make_records(n, tag, base_ts, ts_step=3, null_headers=True):
    """n keyed records with headers and distinct, increasing CreateTime timestamps.

    Values vary in size (some empty, some null, a few of ~20 KB so batches split
    unevenly), headers vary in count and include a duplicated name (both values must
    come back in order) and, when the client can send one, a header with a null value.
    """
    recs = []
    for i in range(n):
        key = f"{tag}-key-{i:06d}".encode()
        if i % 1000 == 999:
            value = None
        elif i % 1000 == 500:
            value = b""
        elif i % 9973 == 7:
            value = (f"{tag}-big-{i}-".encode() * 1200)[:20000]
        else:
            value = f"{tag}-value-{i}-".encode() * (1 + i % 7)
        if i % 101 == 0:
            headers = ()
        else:
            headers = [("seq", str(i).encode()), ("dup", b"first"), ("dup", f"second-{i}".encode())]
            if null_headers and i % 2 == 0:
                headers.append(("nullable", None))
            if i % 3 == 0:
                headers.append(("empty", b""))
            headers = tuple(headers)
        recs.append(Rec(key, value, headers, base_ts + i * ts_step))
    return recs


# ----------------------------------------------------------------------------- confluent producer


# The client tests batch more than kafkautil's default and give up on a message after a minute.
PRODUCER_CONF = {"linger.ms": 20, "message.timeout.ms": 60000}


def confluent_producer(bootstrap, **extra) -> Producer:
    """kafkautil.producer() with PRODUCER_CONF; `extra` adds or overrides settings."""
    return producer(bootstrap, **{**PRODUCER_CONF, **extra})


def confluent_produce(bootstrap, topic, recs, codec="none", partition=None, timeout=120, **extra):
    """Produces recs with confluent-kafka; returns one delivery report per record:
    (partition, offset, (timestamp_type, timestamp)). Asserts every delivery succeeded."""
    return produce(
        bootstrap, topic, [(r.key, r.value) for r in recs], partition=partition,
        timestamps=[r.timestamp for r in recs], headers=[list(r.headers) for r in recs], timeout=timeout,
        report=lambda m: (m.partition(), m.offset(), m.timestamp()),
        **{**PRODUCER_CONF, "compression.type": codec, **extra},
    )


def expected_by_partition(recs, reports, num_partitions=None):
    """{partition: [(offset, Rec), ...] sorted by offset}; also checks that each partition
    got contiguous offsets starting at 0, as Kafka assigns them."""
    parts = {}
    for r, (p, off, _ts) in zip(recs, reports):
        parts.setdefault(p, []).append((off, r))
    for p, lst in parts.items():
        lst.sort(key=lambda x: x[0])
        offsets = [o for o, _ in lst]
        assert offsets == list(range(len(lst))), (
            f"partition {p}: delivery-report offsets are not 0..{len(lst) - 1}: "
            f"first bad index {next(i for i, o in enumerate(offsets) if o != i)}"
        )
    if num_partitions is not None:
        assert set(parts) <= set(range(num_partitions)), f"unexpected partitions {sorted(parts)}"
    return parts


# ----------------------------------------------------------------------------- confluent consumer


@dataclass(frozen=True)
class Got:
    """One consumed record, client-neutral."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    ts_type: int
    timestamp: int


def _confluent_got(m) -> Got:
    ts_type, ts = m.timestamp()
    return Got(m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), ts_type, ts)


def confluent_consume(bootstrap, topic, ends, start=None, timeout=120, **extra):
    """Reads every partition in `ends` ({partition: end offset, exclusive}) from `start`
    ({partition: offset}, default 0) with a manually assigned confluent-kafka consumer.
    Returns {partition: [Got, ...]} in the order received. Fails on any error event."""
    start = start or {}
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in ends])
        got = {p: [] for p in ends}
        pending = {p for p in ends if ends[p] > start.get(p, 0)}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in c.consume(10000, 0.5):
                if m.error():
                    raise AssertionError(f"consumer error on {topic}: {m.error()}")
                got[m.partition()].append(_confluent_got(m))
                if m.offset() >= ends[m.partition()] - 1:
                    pending.discard(m.partition())
        assert not pending, (
            f"partitions {sorted(pending)} not fully consumed within {timeout}s: "
            + ", ".join(f"p{p}: {len(got[p])} records, last offset "
                        f"{got[p][-1].offset if got[p] else None}, want end {ends[p]}" for p in sorted(pending))
        )
        return got
    finally:
        c.close()


# ----------------------------------------------------------------------------- kafka-python


def kp_producer(bootstrap, codec="none", **extra):
    from kafka import KafkaProducer

    conf = dict(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        batch_size=64 * 1024,
        retries=3,
        request_timeout_ms=30000,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_produce(bootstrap, topic, recs, codec="none", timeout=120):
    """Produces recs with kafka-python; returns [(partition, offset, timestamp)] per record."""
    prod = kp_producer(bootstrap, codec)
    try:
        futures = []
        for r in recs:
            futures.append(
                prod.send(topic, key=r.key, value=r.value, headers=list(r.headers), timestamp_ms=r.timestamp)
            )
        prod.flush(timeout=timeout)
        reports = []
        for i, f in enumerate(futures):
            md = f.get(timeout=1)
            reports.append((md.partition, md.offset, md.timestamp))
        return reports
    finally:
        prod.close(timeout=10)


def kp_consumer(bootstrap, **extra):
    from kafka import KafkaConsumer

    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
        request_timeout_ms=30000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def _kp_got(r) -> Got:
    return Got(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp_type, r.timestamp)


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@contextlib.contextmanager
def kp_batch_codecs():
    """While active, records the compression codec id of every record batch kafka-python's
    fetcher parses, as a Counter {codec id: batches}. Shows which codec the batches
    actually had on the wire (with compression.type=producer Kafka keeps the producer's)."""
    from kafka.record.memory_records import MemoryRecords

    seen = collections.Counter()
    original = MemoryRecords.next_batch

    def next_batch(self, *args, **kwargs):
        batch = original(self, *args, **kwargs)
        if batch is not None:
            seen[batch.compression_type] += 1
        return batch

    MemoryRecords.next_batch = next_batch
    try:
        yield seen
    finally:
        MemoryRecords.next_batch = original


def assert_batches_compressed_with(seen, codec):
    """The fetched batches used `codec`; small batches may stay uncompressed because the
    client sends a batch uncompressed when compressing does not make it smaller."""
    want = CODEC_IDS[codec]
    assert seen, "kafka-python parsed no record batches"
    assert set(seen) <= {0, want}, f"batch codecs {dict(seen)}, want only {want} ({codec}) or none"
    hint = ""
    if codec == "lz4" and want not in seen:
        hint = (" (librdkafka only compresses with lz4 when the broker's ApiVersions lists "
                "FindCoordinator, its marker for LZ4 support; otherwise it logs 'Broker does "
                "not support compression type lz4: not compressing batch' and sends it uncompressed)")
    assert seen[want] > 0, f"no batch compressed with {codec}: codecs {dict(seen)}{hint}"


def kp_consume(bootstrap, topic, ends, timeout=120):
    """Reads every partition of `ends` from the beginning with kafka-python
    (assign + seek_to_beginning). Returns {partition: [Got, ...]}."""
    from kafka import TopicPartition as KTP

    c = kp_consumer(bootstrap)
    try:
        tps = [KTP(topic, p) for p in ends]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = {p: [] for p in ends}
        pending = {p for p in ends if ends[p] > 0}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = c.poll(timeout_ms=500, max_records=10000)
            for tp, records in batch.items():
                for r in records:
                    got[tp.partition].append(_kp_got(r))
                    if r.offset >= ends[tp.partition] - 1:
                        pending.discard(tp.partition)
        assert not pending, (
            f"kafka-python: partitions {sorted(pending)} not fully consumed within {timeout}s: "
            + ", ".join(f"p{p}: {len(got[p])} records" for p in sorted(pending))
        )
        return got
    finally:
        c.close()


# ----------------------------------------------------------------------------- comparison


def _describe(x):
    s = repr(x)
    return s if len(s) < 300 else s[:300] + "..."


def compare_partition(partition, expected, got, ts_type, check_timestamp=True, max_report=5):
    """expected: [(offset, Rec)] sorted by offset; got: [Got] as received.

    Checks the consumer got exactly these offsets in this order, and for each the key,
    value, headers (order and duplicates), timestamp type and timestamp. Returns a list
    of human-readable mismatches (empty when all match)."""
    problems = []
    got_offsets = [g.offset for g in got]
    want_offsets = [o for o, _ in expected]
    if got_offsets != want_offsets:
        first = next(
            (i for i, (a, b) in enumerate(zip(got_offsets, want_offsets)) if a != b),
            min(len(got_offsets), len(want_offsets)),
        )
        problems.append(
            f"p{partition}: offsets differ at position {first}: got "
            f"{got_offsets[first:first + 5]} (total {len(got_offsets)}), want "
            f"{want_offsets[first:first + 5]} (total {len(want_offsets)})"
        )
        return problems
    for (off, r), g in zip(expected, got):
        diffs = []
        if g.key != r.key:
            diffs.append(f"key {_describe(g.key)} != {_describe(r.key)}")
        if g.value != r.value:
            diffs.append(f"value {_describe(g.value)} != {_describe(r.value)}")
        if g.headers != r.headers:
            diffs.append(f"headers {_describe(g.headers)} != {_describe(r.headers)}")
        if g.ts_type != ts_type:
            diffs.append(f"timestamp type {g.ts_type} != {ts_type}")
        if check_timestamp and g.timestamp != r.timestamp:
            diffs.append(f"timestamp {g.timestamp} != {r.timestamp}")
        if diffs:
            problems.append(f"p{partition} offset {off}: " + "; ".join(diffs))
            if len(problems) >= max_report:
                problems.append("... (more mismatches not shown)")
                break
    return problems


def assert_all_match(expected_parts, got_parts, ts_type, check_timestamp=True, what=""):
    problems = []
    for p in sorted(set(expected_parts) | set(got_parts)):
        problems += compare_partition(
            p, expected_parts.get(p, []), got_parts.get(p, []), ts_type, check_timestamp
        )
    assert not problems, f"{what}: {len(problems)} mismatching partitions/records:\n" + "\n".join(problems)


def ends_of(expected_parts, num_partitions):
    return {p: len(expected_parts.get(p, [])) for p in range(num_partitions)}


# ----------------------------------------------------------------------------- kcat

KCAT = "/usr/bin/kcat"


def run_kcat(args, input_bytes=None, timeout=120):
    """Runs kcat to completion (killed if it outlives `timeout`). Returns (rc, stdout, stderr)."""
    proc = subprocess.Popen(
        [KCAT, *args],
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"kcat {args} did not finish within {timeout}s; stderr:\n{err.decode()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode, out, err


def kafka_error_code(exc_or_err):
    """KafkaError code from a KafkaException or KafkaError."""
    if isinstance(exc_or_err, KafkaException):
        return exc_or_err.args[0].code()
    if isinstance(exc_or_err, KafkaError):
        return exc_or_err.code()
    raise TypeError(exc_or_err)


__all__ = [
    "CODECS", "CREATE_TIME", "LOG_APPEND_TIME", "KP_CREATE_TIME", "KP_LOG_APPEND_TIME", "DAY_MS", "HOUR_MS",
    "OFFSET_BEGINNING", "KafkaError", "KafkaException", "TopicPartition", "Rec", "Got",
    "now_ms", "make_records", "confluent_producer", "confluent_produce", "expected_by_partition",
    "confluent_consume",
    "kp_producer", "kp_produce", "kp_consumer", "kp_consume", "CODEC_IDS", "kp_batch_codecs",
    "assert_batches_compressed_with", "compare_partition",
    "assert_all_match", "ends_of", "run_kcat", "kafka_error_code",
]
