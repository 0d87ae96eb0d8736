"""Log compaction (cleanup.policy=compact): the log cleaner keeps the latest record of every
key at the offset it was written, removes tombstones once delete.retention.ms has
passed, never touches the active segment, and survives being killed mid-pass.

What is proven:
- after many versions of 1,000 keys and tombstones, reading from the start returns
  exactly one record per live key, with its latest value, at the offset that version was
  written, and no deleted key, and the partition is much smaller on disk, for
  uncompressed and zstd batches;
- a broker SIGKILLed while a cleaning pass runs (as it starts, after its first segment
  swap, a moment in) restarts with a consistent log (every record one that was written at
  that offset, every key's latest version present) and the cleaner completes the job;
- cleanup.policy=compact,delete also deletes segments past retention.ms, while plain
  compact keeps them;
- a compacted topic refuses records without a key (INVALID_RECORD), from
  confluent-kafka, kafka-python and a raw batch mixing keyed and keyless records;
- __consumer_offsets is compacted: a group committing over and over keeps a small log,
  and its last commit survives a restart.

The broker logs (text format) "cleaning topic=<t> partition=<p> ..." when a pass over a
partition starts and "cleaned segment topic=<t> partition=<p> ..." after each segment it
rewrote; the tests wait on those lines. Every wait is bounded.
"""

import random
import re
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest

import rawkafka
from clients import DAY_MS, kp_producer, now_ms
from kafkautil import (
    admin,
    close_producer,
    consumer,
    create_topic,
    produce,
    producer,
    read_partition,
    wait_for,
    watermarks,
)

pytestmark = pytest.mark.timeout(180)

# The cleaner looks for work every 200 ms; retention every 500 ms.
CLEANER_OVERRIDES = {"log.cleaner.backoff.ms": "200", "log.retention.check.interval.ms": "500"}
COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": "1048576",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}
# Small batches, so 1 MiB segments roll at batch boundaries well inside them; no
# retries, so nothing is written twice.
PRODUCE_CONF = {"batch.size": 65536, "retries": 0}

INVALID_RECORD = 87


# ----------------------------------------------------------------------------- helpers


def write(b, topic, records, **conf):
    """Produces (key, value) records to partition 0; returns [(offset, key, value)]."""
    return produce(b, topic, records, partition=0, report=lambda m: (m.offset(), m.key(), m.value()),
                   **{**PRODUCE_CONF, **conf})


def filler(tag, n=1200, size=1000, seed=0):
    """n records of unique keys with `size` random (incompressible) bytes each: more than
    one 1 MiB segment, so whatever was written before is in sealed segments the cleaner
    may clean (it never touches the active segment)."""
    rng = random.Random(f"{tag}-{seed}")
    return [(b"filler-%s-%05d" % (tag.encode(), i), rng.randbytes(size)) for i in range(n)]


def latest_per_key(written):
    """[(offset, key, value)] of the last write of every key, in offset order."""
    last = {}
    for o, k, v in written:
        last[k] = (o, k, v)
    return sorted(last.values())


def read_all(b, topic, partition=0, timeout=60):
    """Every record from the log start to the high watermark, in offset order, as
    [(offset, key, value)]. Compacted logs have gaps; the last offset always exists (the
    active segment is never cleaned)."""
    low, high = watermarks(b, topic, partition)
    if high == low:
        return []
    c = consumer(b, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, partition, low)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
                if m.offset() >= high - 1:
                    return out
        raise AssertionError(f"{topic}[{partition}] not read up to {high} within {timeout}s; "
                             f"{len(out)} records, last {out[-1][0] if out else None}")
    finally:
        c.close()


def _short(r):
    o, k, v = r
    return (o, k, None if v is None else v[:24])


def describe_difference(got, want):
    gs, ws = set(got), set(want)
    return (f"{len(got)} records, want {len(want)}; missing {[_short(r) for r in sorted(ws - gs)[:5]]}; "
            f"unexpected {[_short(r) for r in sorted(gs - ws)[:5]]}")


def assert_crash_consistent(got, written, high, tombstones_may_go=False):
    """Offsets strictly increase; every record is the one written at its offset; the
    latest write of every key is there (a tombstone's only until delete.retention.ms
    allows removing it, when `tombstones_may_go`)."""
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets not strictly increasing"
    assert not offsets or offsets[-1] == high - 1
    at = {o: (k, v) for o, k, v in written}
    changed = [_short(r) for r in got if at.get(r[0]) != (r[1], r[2])]
    assert not changed, f"records that were not written at their offset: {changed[:5]}"
    present = set(offsets)
    lost = [_short(r) for r in latest_per_key(written)
            if r[0] not in present and not (tombstones_may_go and r[2] is None)]
    assert not lost, f"{len(lost)} keys lost their latest version, first {lost[:5]}"


def log_bytes(b, topic, partition=0):
    d = b.data_dir / f"{topic}-{partition}"
    return sum(f.stat().st_size for f in d.iterdir() if f.suffix == ".log")


def log_since(b, pos):
    """The broker log from byte `pos` on."""
    with open(b.log_path, "rb") as f:
        f.seek(pos)
        return f.read().decode(errors="replace")


def log_size(b):
    return b.log_path.stat().st_size


def _line(message, topic):
    return re.compile(rf"\b{re.escape(message)} topic={re.escape(topic)} partition=\d+\b")


def count_lines(b, message, topic, since=0):
    pattern = _line(message, topic)
    return sum(1 for line in log_since(b, since).splitlines() if pattern.search(line))


def set_topic_config(a, topic, name, value):
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    for f in a.incremental_alter_configs([res]).values():
        f.result(15)


# ----------------------------------------------------------------------------- latest value per key


@pytest.mark.timeout(150)
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_compaction_keeps_the_latest_value_per_key(broker_factory, codec):
    """20 versions of 1,000 keys (random, incompressible values) with tombstones: 100 keys
    deleted for good after their last version, 100 deleted halfway and then written
    again; then filler records so all of it is in sealed segments. The cleaner runs
    ("cleaning"/"cleaned segment" in the log); after delete.retention.ms (1 s) and one
    more filler round the partition holds exactly one record per live key with its
    latest value at the offset that version was written, no deleted key, the filler
    untouched, and the data part takes a fraction of its size."""
    b = broker_factory(overrides=CLEANER_OVERRIDES)
    topic = f"compact-{codec}"
    create_topic(b, topic, 1, {**COMPACT, "delete.retention.ms": "1000"})
    rng = random.Random(codec)
    records = []
    for version in range(20):
        records += [(b"key-%04d" % k, b"key-%04d-v%02d-" % (k, version) + rng.randbytes(200)) for k in range(1000)]
        if version == 9:
            records += [(b"key-%04d" % k, None) for k in range(5, 1000, 10)]  # written again later
    records += [(b"key-%04d" % k, None) for k in range(0, 1000, 10)]  # deleted for good
    data_bytes = sum(len(k) + len(v or b"") for k, v in records)
    written = write(b, topic, records + filler("first"), **{"compression.type": codec})
    assert [o for o, _, _ in written] == list(range(len(written)))

    assert wait_for(lambda: count_lines(b, "cleaned segment", topic) > 0, 60), (
        "no 'cleaned segment' line for the topic within 60 s; log tail:\n" + b.log_tail())
    assert count_lines(b, "cleaning", topic) > 0
    # Every read in between is consistent (the cleaner swaps whole segments).
    assert_crash_consistent(read_all(b, topic), written, len(written), tombstones_may_go=True)

    # Tombstones go in a pass after delete.retention.ms; filler rolls new segments so
    # another pass runs. One round is normally enough; allow three.
    time.sleep(1.5)
    for round_ in range(3):
        written += write(b, topic, filler(f"round{round_}"), **{"compression.type": codec})
        want = [r for r in latest_per_key(written) if r[2] is not None]
        if wait_for(lambda: read_all(b, topic) == want, 20, interval=1.0):
            break
    got = read_all(b, topic)
    assert got == want, describe_difference(got, want)
    live = {k for _, k, _ in want}
    assert all(b"key-%04d" % k not in live for k in range(0, 1000, 10))
    assert all(b"key-%04d" % k in live for k in range(5, 1000, 10))
    assert all(v.startswith(b"key-%04d-v19-" % int(k[4:])) for _, k, v in want if k.startswith(b"key-"))

    filler_bytes = sum(len(k) + len(v) for _, k, v in written if k.startswith(b"filler-"))
    on_disk = log_bytes(b, topic)
    assert on_disk < 0.25 * data_bytes + 1.2 * filler_bytes, (on_disk, data_bytes, filler_bytes)


# ----------------------------------------------------------------------------- crash while cleaning


def _wait_line(b, since, message, topic, timeout=60):
    pattern = _line(message, topic)

    def seen():
        return any(pattern.search(line) for line in log_since(b, since).splitlines())

    assert wait_for(seen, timeout, interval=0.01), (
        f"no '{message}' line for {topic} within {timeout}s; log tail:\n{b.log_tail()}")


@pytest.mark.timeout(240)
def test_crash_during_cleaning_loses_nothing(broker_factory):
    """Three rounds: with cleanup.policy=delete (so the cleaner stays idle) write five more
    versions of 2,000 keys (~2.5 MB, tombstones in some rounds) and a filler, switch the
    topic to compact, and SIGKILL the broker as the pass starts ("cleaning"), right after
    its first segment swap ("cleaned segment"), and 150 ms into it. After each restart the
    high watermark is unchanged, every record read is the one written at its offset, no
    key lost its latest version; and the cleaner then finishes: exactly the latest record
    of every key (tombstones kept: default delete.retention.ms)."""
    b = broker_factory(overrides=CLEANER_OVERRIDES)
    a = admin(b)
    topic = "crash-compact"
    create_topic(b, topic, 1, {**COMPACT, "cleanup.policy": "delete"})
    rng = random.Random(7)
    written = []
    rounds = [("cleaning", 0.0, range(0, 2000, 10)), ("cleaned segment", 0.0, ()), ("cleaning", 0.15, range(3, 2000, 10))]
    for round_, (trigger, delay, deleted) in enumerate(rounds):
        set_topic_config(a, topic, "cleanup.policy", "delete")
        records = []
        for version in range(5 * round_, 5 * round_ + 5):
            records += [(b"k%05d" % k, b"k%05d-v%02d-" % (k, version) + rng.randbytes(230)) for k in range(2000)]
        records += [(b"k%05d" % k, None) for k in deleted]
        written += write(b, topic, records + filler(f"crash{round_}"))
        high = len(written)
        assert written[-1][0] == high - 1

        mark = log_size(b)
        set_topic_config(a, topic, "cleanup.policy", "compact")
        _wait_line(b, mark, trigger, topic)
        if delay:
            time.sleep(delay)
        b.kill()
        b.start()
        a = admin(b)

        assert watermarks(b, topic, 0)[1] == high
        assert_crash_consistent(read_all(b, topic), written, high)
        want = latest_per_key(written)
        if not wait_for(lambda: read_all(b, topic) == want, 60, interval=1.0):
            got = read_all(b, topic)
            raise AssertionError(f"round {round_}: compaction did not complete after the restart: "
                                 + describe_difference(got, want))
    assert count_lines(b, "cleaned segment", topic) > 0


# ----------------------------------------------------------------------------- compact,delete


@pytest.mark.timeout(150)
def test_compact_delete_policy_also_applies_retention(broker_factory):
    """Two topics with retention.ms of one day get the same records: 2,500 unique keys
    stamped two days ago (over 1 MB), then three versions of 500 keys stamped now and a
    filler. With cleanup.policy=compact,delete every old segment is deleted (the log
    start moves to the first new record) and the new records are compacted to one per
    key; with cleanup.policy=compact the old records all stay (retention.ms does not
    apply) and the new ones are compacted the same way."""
    b = broker_factory(overrides=CLEANER_OVERRIDES)
    base = {**COMPACT, "retention.ms": str(DAY_MS)}
    create_topic(b, "cd", 1, {**base, "cleanup.policy": "compact,delete"})
    create_topic(b, "c", 1, {**base, "cleanup.policy": "compact"})
    rng = random.Random(3)
    old = [(b"old-%05d" % i, b"old-%05d-" % i + rng.randbytes(450)) for i in range(2500)]
    two_days_ago = now_ms() - 2 * DAY_MS
    stamps = [two_days_ago + i for i in range(len(old))]
    written = {}
    for t in ("cd", "c"):
        written[t] = produce(b, t, old, partition=0, timestamps=stamps, report=lambda m: (m.offset(), m.key(), m.value()),
                             **PRODUCE_CONF)
    n_old = len(old)
    # Everything in cd has expired: its segments go, the active one too (rolled first).
    assert wait_for(lambda: watermarks(b, "cd", 0) == (n_old, n_old), 30), watermarks(b, "cd", 0)

    new = [(b"new-%03d" % k, b"new-%03d-v%d-" % (k, v) + rng.randbytes(300)) for v in range(3) for k in range(500)]
    new += filler("cd")
    for t in ("cd", "c"):
        written[t] += write(b, t, new)
        assert written[t][-1][0] == n_old + len(new) - 1

    want_cd = latest_per_key(written["cd"][n_old:])
    assert wait_for(lambda: read_all(b, "cd") == want_cd, 60, interval=1.0), \
        describe_difference(read_all(b, "cd"), want_cd)
    assert watermarks(b, "cd", 0)[0] == n_old
    want_c = latest_per_key(written["c"])
    assert wait_for(lambda: read_all(b, "c") == want_c, 60, interval=1.0), \
        describe_difference(read_all(b, "c"), want_c)
    assert watermarks(b, "c", 0)[0] == 0
    assert sum(1 for _, k, _ in want_c if k.startswith(b"old-")) == n_old


# ----------------------------------------------------------------------------- keyless records


def test_keyless_records_are_refused_by_compacted_topics(broker_factory):
    """A record without a key cannot be compacted, so a compacted topic refuses it with
    INVALID_RECORD: a confluent-kafka delivery error, kafka-python's InvalidRecordError,
    and for a raw batch with one keyless record among keyed ones the whole batch. Keyed
    records around them are stored at consecutive offsets; a compact,delete topic refuses
    keyless records too, a delete topic takes them."""
    from kafka.errors import InvalidRecordError

    b = broker_factory(overrides=CLEANER_OVERRIDES)
    create_topic(b, "keyed", 1, {"cleanup.policy": "compact"})
    create_topic(b, "keyed-cd", 1, {"cleanup.policy": "compact,delete"})
    create_topic(b, "plain", 1, {"cleanup.policy": "delete"})

    p = producer(b, **{"retries": 0, "linger.ms": 0})
    results = []

    def cb(err, msg):
        results.append((msg.topic(), err.code() if err else None, msg.offset() if not err else None))

    try:
        for topic in ("keyed", "keyed-cd", "plain"):
            p.produce(topic, value=b"no key", partition=0, on_delivery=cb)
            assert p.flush(15) == 0
            p.produce(topic, key=b"k1", value=b"keyed", partition=0, on_delivery=cb)
            assert p.flush(15) == 0
    finally:
        close_producer(p)
    assert results == [
        ("keyed", KafkaError.INVALID_RECORD, None), ("keyed", None, 0),
        ("keyed-cd", KafkaError.INVALID_RECORD, None), ("keyed-cd", None, 0),
        ("plain", None, 0), ("plain", None, 1),
    ]

    kp = kp_producer(b.bootstrap, retries=0, linger_ms=0)
    try:
        with pytest.raises(InvalidRecordError):
            kp.send("keyed", value=b"no key either", partition=0).get(timeout=30)
        md = kp.send("keyed", key=b"k2", value=b"keyed kp", partition=0).get(timeout=30)
        assert (md.partition, md.offset) == (0, 1)
    finally:
        kp.close(timeout=10)

    mixed = rawkafka.record_batch([(b"k3", b"x"), (None, b"keyless"), (b"k4", b"y")], now_ms())
    _, r = rawkafka.call(b.port, rawkafka.produce_request_v3(1, "keyed", 0, mixed))
    assert rawkafka.parse_produce_response_v3(r)[("keyed", 0)] == (INVALID_RECORD, -1)

    assert watermarks(b, "keyed", 0) == (0, 2)
    assert read_partition(b, "keyed", 0, 0, 2) == {0: (b"k1", b"keyed"), 1: (b"k2", b"keyed kp")}


# ----------------------------------------------------------------------------- __consumer_offsets


def _find_coordinator(port, group, timeout=30):
    deadline = time.monotonic() + timeout
    with rawkafka.Connection(port) as conn:
        while True:
            r = conn.call(FindCoordinatorRequest(version=2, key=group, key_type=0))
            if r.error_code == 0:
                return
            assert time.monotonic() < deadline, r
            time.sleep(0.2)


def _fetch_committed(port, group, topic, timeout=30):
    """(offset, metadata) committed for partition 0, retrying while the coordinator loads."""
    t = OffsetFetchRequest.OffsetFetchRequestTopic
    deadline = time.monotonic() + timeout
    with rawkafka.Connection(port) as conn:
        while True:
            r = conn.call(OffsetFetchRequest(version=5, group_id=group, topics=[t(name=topic, partition_indexes=[0])]))
            if r.error_code == 0:
                [[p]] = [tr.partitions for tr in r.topics]
                assert p.error_code == 0, p
                return p.committed_offset, p.metadata
            assert r.error_code in (14, 15, 16), r  # loading / not available / not coordinator
            assert time.monotonic() < deadline, r
            time.sleep(0.2)


@pytest.mark.timeout(150)
def test_consumer_offsets_topic_is_compacted(broker_factory):
    """A group commits the offset of one partition 1,200 times, each with 3,000 bytes of
    metadata (~3.6 MB of commit records) into 1 MiB __consumer_offsets segments
    (offsets.topic.segment.bytes). The cleaner compacts the offsets topic ("cleaned
    segment" lines for __consumer_offsets) until its logs are well under half of what was
    written, and the last commit is what OffsetFetch returns, also after a SIGKILL and
    restart (the group's state is loaded from the compacted log)."""
    b = broker_factory(overrides={
        **CLEANER_OVERRIDES,
        "offsets.topic.num.partitions": "2",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.segment.bytes": "1048576",
    })
    topic, group = "tracked", "committer"
    create_topic(b, topic)
    _find_coordinator(b.port, group)
    n, chunk = 1200, 100
    metadata = "m" * 3000
    t = OffsetCommitRequest.OffsetCommitRequestTopic
    with rawkafka.Connection(b.port) as conn:
        for start in range(0, n, chunk):
            tickets = [conn.send(OffsetCommitRequest(
                version=2, group_id=group, generation_id_or_member_epoch=-1, member_id="", retention_time_ms=-1,
                topics=[t(name=topic, partitions=[t.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=i, committed_metadata=metadata)])]))
                for i in range(start, start + chunk)]
            for ticket in tickets:
                r = conn.recv(ticket, timeout=30)
                assert [p.error_code for tr in r.topics for p in tr.partitions] == [0], r
    written = n * (len(metadata) + 60)

    def offsets_bytes():
        return sum(f.stat().st_size for d in b.data_dir.iterdir() if d.name.startswith("__consumer_offsets-")
                   for f in d.iterdir() if f.suffix == ".log")

    assert wait_for(lambda: offsets_bytes() < written / 2, 60, interval=0.5), (offsets_bytes(), written)
    assert count_lines(b, "cleaned segment", "__consumer_offsets") > 0
    assert _fetch_committed(b.port, group, topic) == (n - 1, metadata)
    b.kill()
    b.start()
    assert _fetch_committed(b.port, group, topic) == (n - 1, metadata)
