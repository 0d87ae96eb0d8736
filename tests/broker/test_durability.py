"""Crash safety: acknowledged records survive SIGKILL, recovery repairs torn or corrupt
log tails and missing or corrupt indexes, and SIGTERM shuts down cleanly."""

import random
import time

import pytest
from confluent_kafka import Producer, TopicPartition

import rawkafka
from kafkautil import consumer, create_topic, produce, read_partition, watermarks

pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------- helpers

# produce() options for every test here: no retries, so no record is written twice, and
# delivery reports that carry the record: (partition, offset, key, value).
ACKED = {"retries": 0, "report": lambda m: (m.partition(), m.offset(), m.key(), m.value())}


def log_segments(b, topic, partition):
    d = b.data_dir / f"{topic}-{partition}"
    return sorted((p for p in d.iterdir() if p.suffix == ".log"), key=lambda p: int(p.stem))


def log_since_last_start(b):
    """The broker log of the latest start only."""
    return b.log_text().rsplit("===== start #", 1)[-1]


def recovery_lines(b, topic):
    return [line for line in log_since_last_start(b).splitlines()
            if "recovered partition log" in line and f"topic={topic}" in line]


def records(n, tag, size=100):
    return [(b"%s-k%d" % (tag, i), (b"%s-v%d-" % (tag, i)).ljust(size, b"#")) for i in range(n)]


# ---------------------------------------------------------------- acks=all + SIGKILL

@pytest.mark.parametrize("flush_every_message", [False, True], ids=["page-cache", "flush.messages=1"])
def test_acknowledged_records_survive_sigkill(broker, flush_every_message):
    topic = "acked"
    create_topic(broker, topic, 3, {"flush.messages": "1"} if flush_every_message else None)
    n = 50_000
    acked = produce(broker, topic, records(n, b"a"), **ACKED)
    broker.kill()
    broker.start()

    by_partition = {p: [] for p in range(3)}
    for p, off, k, v in acked:
        by_partition[p].append((off, k, v))
    for p, recs in by_partition.items():
        recs.sort()
        # Offsets of one partition are dense from 0: nothing was lost or duplicated.
        assert [off for off, _, _ in recs] == list(range(len(recs))), p
        assert watermarks(broker, topic, p) == (0, len(recs))
        stored = read_partition(broker, topic, p, 0, len(recs))
        assert len(stored) == len(recs)
        for off, k, v in recs:
            assert stored.get(off) == (k, v), (p, off)

    # Appends continue right after the recovered end.
    for p, recs in by_partition.items():
        [(pp, off, _, _)] = produce(broker, topic, [(b"after", b"after-crash")], partition=p, **ACKED)
        assert (pp, off) == (p, len(recs))


def test_records_acknowledged_before_a_mid_stream_sigkill_survive(broker):
    """SIGKILL while the producer still has requests in flight: whatever was acknowledged
    before the crash is there afterwards; the rest may or may not be, but nothing is
    reordered or duplicated."""
    topic = "midstream"
    create_topic(broker, topic, 3)
    p = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "retries": 0,
        "message.timeout.ms": 3000,
    })
    acked, failed = [], []

    def cb(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    killed = False
    deadline = time.monotonic() + 60
    i = 0
    while not killed and i < 500_000 and time.monotonic() < deadline:
        try:
            p.produce(topic, key=b"m-k%d" % i, value=b"m-v%d" % i, on_delivery=cb)
            i += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
        if len(acked) >= 20_000:
            broker.kill()
            killed = True
    assert killed, f"only {len(acked)} acknowledgements before the deadline"
    acked_at_kill = list(acked)
    p.flush(30)  # the rest fails (broker gone) within message.timeout.ms
    del p
    broker.start()

    by_partition = {q: {} for q in range(3)}
    for q, off, k, v in acked_at_kill:
        by_partition[q][off] = (k, v)
    for q, mine in by_partition.items():
        low, high = watermarks(broker, topic, q)
        assert low == 0 and high >= len(mine)
        stored = read_partition(broker, topic, q, 0, high)
        assert sorted(stored) == list(range(high))
        for off, kv in mine.items():
            assert stored[off] == kv, (q, off)
        # Unacknowledged survivors are still records this producer sent, each once.
        keys = [k for k, _ in stored.values()]
        assert len(set(keys)) == len(keys)
        assert all(k.startswith(b"m-k") for k in keys)


# ---------------------------------------------------------------- torn / corrupt tails

@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_garbage_appended_to_newest_segment_is_truncated(broker, stop):
    topic = "garbage"
    create_topic(broker, topic)
    recs = records(1000, b"g")
    acked = produce(broker, topic, recs, partition=0, **ACKED)
    assert [off for _, off, _, _ in acked] == list(range(1000))
    if stop == "sigterm":
        assert broker.stop() == 0
    else:
        broker.kill()

    newest = log_segments(broker, topic, 0)[-1]
    size_before = newest.stat().st_size
    garbage = random.Random(1234).randbytes(1000)
    with open(newest, "ab") as f:
        f.write(garbage)
    broker.start()

    assert watermarks(broker, topic, 0) == (0, 1000)
    stored = read_partition(broker, topic, 0, 0, 1000)
    assert stored == {i: recs[i] for i in range(1000)}
    assert newest.stat().st_size == size_before
    [(_, off, _, _)] = produce(broker, topic, [(b"next", b"after-repair")], partition=0, **ACKED)
    assert off == 1000
    assert read_partition(broker, topic, 0, 1000, 1) == {1000: (b"next", b"after-repair")}

    lines = recovery_lines(broker, topic)
    assert len(lines) == 1, log_since_last_start(broker)
    assert "truncated_bytes=1000" in lines[0], lines[0]


def test_corrupt_last_batch_after_unclean_crash_is_dropped(broker_factory):
    # Only the unclean case: after SIGKILL no recovery point covers the tail, so recovery
    # re-verifies every batch's CRC. After a clean shutdown the recovery point covers all
    # flushed data and, as in Kafka, corruption inside it is not re-verified at startup.
    b = broker_factory(overrides={"log.flush.offset.checkpoint.interval.ms": "3600000"})
    topic = "flipped"
    create_topic(b, topic)
    expected = {}
    for round_ in range(10):  # ten produce calls -> at least ten batches
        recs = records(50, b"r%d" % round_)
        for _, off, k, v in produce(b, topic, recs, partition=0, **ACKED):
            expected[off] = (k, v)
    assert sorted(expected) == list(range(500))
    b.kill()

    [segment] = log_segments(b, topic, 0)
    data = bytearray(segment.read_bytes())
    batches = rawkafka.parse_batches(bytes(data))
    assert sum(count for _, _, count, _ in batches) == 500
    assert sum(total for _, _, _, total in batches) == len(data)
    pos, last_base, last_count, total = batches[-1]
    assert last_base + last_count == 500
    data[pos + total - 5] ^= 0xFF  # inside the last record's value, covered by the CRC
    segment.write_bytes(bytes(data))
    b.start()

    assert watermarks(b, topic, 0) == (0, last_base)
    stored = read_partition(b, topic, 0, 0, last_base)
    assert stored == {o: expected[o] for o in range(last_base)}
    assert segment.stat().st_size == pos
    [(_, off, _, _)] = produce(b, topic, [(b"new", b"replaces-corrupt")], partition=0, **ACKED)
    assert off == last_base
    assert read_partition(b, topic, 0, last_base, 1) == {last_base: (b"new", b"replaces-corrupt")}

    lines = recovery_lines(b, topic)
    assert len(lines) == 1, log_since_last_start(b)
    assert f"truncated_bytes={total}" in lines[0], lines[0]
    assert "CRC" in lines[0] or "crc" in lines[0], lines[0]


# ---------------------------------------------------------------- indexes

@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_corrupt_indexes_are_rebuilt(broker, damage):
    topic = "indexed"
    create_topic(broker, topic, config={"segment.bytes": "1048576"})
    n = 3500  # ~3.5 MB of 1000-byte values over four or more segments
    base_ts = int(time.time() * 1000) - 3_600_000
    recs = records(n, b"i", size=1000)
    acked = produce(broker, topic, recs, partition=0, timestamps=[base_ts + i for i in range(n)],
                    **{"batch.size": 32768}, **ACKED)
    assert [off for _, off, _, _ in acked] == list(range(n))
    assert broker.stop() == 0

    segments = log_segments(broker, topic, 0)
    assert len(segments) >= 4, segments
    damaged = 0
    for seg in segments:
        for ext in (".index", ".timeindex"):
            f = seg.with_suffix(ext)
            if damage == "delete":
                f.unlink()
            else:
                with open(f, "r+b") as fh:
                    fh.truncate(3)
            damaged += 1
    assert damaged == 2 * len(segments)
    broker.start()

    assert watermarks(broker, topic, 0) == (0, n)
    rng = random.Random(42)
    # Reads at random offsets, including each segment's first offset and the last record.
    probes = sorted(set(rng.sample(range(n), 25) + [int(s.stem) for s in segments] + [n - 1]))
    c = consumer(broker)
    try:
        for off in probes:
            c.assign([TopicPartition(topic, 0, off)])
            msgs = []
            deadline = time.monotonic() + 15
            while not msgs and time.monotonic() < deadline:
                msgs = c.consume(num_messages=1, timeout=1)
            assert len(msgs) == 1, off
            m = msgs[0]
            assert m.error() is None, m.error()
            assert (m.offset(), m.key(), m.value()) == (off, *recs[off])
            assert m.timestamp()[1] == base_ts + off
    finally:
        c.close()

    # Timestamp lookups on a consumer without an assignment (otherwise each ListOffsets
    # queues behind a long-polling Fetch on the same connection). One lookup per call:
    # librdkafka merges repeated entries for the same partition.
    c = consumer(broker)
    try:
        ts_probes = sorted(set(rng.sample(range(n), 25) + [0, n - 1]))
        for i in ts_probes:
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, base_ts + i)], timeout=15)
            assert (tp.error, tp.offset) == (None, i)
        # Before the first record: offset 0. Past the last: -1 (no such offset).
        [before] = c.offsets_for_times([TopicPartition(topic, 0, base_ts - 60_000)], timeout=15)
        assert before.offset == 0
        [beyond] = c.offsets_for_times([TopicPartition(topic, 0, base_ts + n + 10_000)], timeout=15)
        assert beyond.offset == -1
    finally:
        c.close()
    # The sealed segments' indexes were found broken and rebuilt (the active one is always
    # rebuilt by the recovery scan).
    lines = recovery_lines(broker, topic)
    assert len(lines) == 1, log_since_last_start(broker)
    assert f"indexes_rebuilt={len(segments) - 1}" in lines[0], lines[0]


# ---------------------------------------------------------------- clean shutdown

def test_sigterm_shuts_down_cleanly(broker):
    topic = "clean"
    create_topic(broker, topic)
    recs = records(200, b"c")
    produce(broker, topic, recs, partition=0, **ACKED)
    # An idle client stays connected while the broker stops.
    c = consumer(broker)
    c.assign([TopicPartition(topic, 0, 200)])
    c.consume(num_messages=1, timeout=1)
    try:
        code = broker.stop(timeout=30)
        assert code == 0
    finally:
        c.close()
    text = broker.log_text()
    assert "shut down cleanly" in text
    assert "partitions_flushed=" in text

    broker.start()
    # A clean shutdown leaves nothing to repair.
    assert recovery_lines(broker, topic) == []
    assert watermarks(broker, topic, 0) == (0, 200)
    assert read_partition(broker, topic, 0, 0, 200) == {i: recs[i] for i in range(200)}
