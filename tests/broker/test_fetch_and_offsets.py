"""ListOffsets (by timestamp, earliest, latest, max timestamp), long-poll Fetch, seeking,
replay and out-of-range offsets, checked with confluent-kafka and kafka-python."""

import json
import random
import threading
import time

import pytest
from confluent_kafka.admin import OffsetSpec

from clients import (
    DAY_MS,
    KafkaError,
    Rec,
    TopicPartition,
    assert_all_match,
    CREATE_TIME,
    confluent_consume,
    confluent_produce,
    confluent_producer,
    make_records,
    now_ms,
    kp_consumer,
)
from kafkautil import admin, close_producer, consumer, create_topic


def _list_offsets(bootstrap, specs, timeout=15):
    """AdminClient.list_offsets: {TopicPartition: OffsetSpec} -> {(topic, partition): (offset, timestamp)}."""
    a = admin(bootstrap)
    fs = a.list_offsets(specs, request_timeout=timeout)
    out = {}
    for tp, f in fs.items():
        r = f.result(timeout)
        out[(tp.topic, tp.partition)] = (r.offset, r.timestamp)
    return out


# ----------------------------------------------------------------------------- ListOffsets by timestamp

TS_STEP = 10


@pytest.mark.timeout(120)
def test_offsets_for_times_and_watermarks(broker):
    """3 partitions, 6,000 records (lz4, ~1.2 KB values so each partition's log rolls past
    the 1 MiB minimum segment size) with timestamps base + 10*i, record i in partition i % 3,
    so each partition's timestamps step by 30 ms. For every partition and several queries
    (before the first record, exactly a record's timestamp at the start, inside and at the
    end of the log, 1 ms after a record i.e. between two records, after the last record):
    ListOffsets by timestamp must return the first offset whose timestamp >= the query,
    or none (-1 / None) after the last record. Checked with confluent-kafka
    Consumer.offsets_for_times, AdminClient.list_offsets and kafka-python
    offsets_for_times (which also returns the found record's timestamp). Watermarks:
    get_watermark_offsets, beginning_offsets/end_offsets, and OffsetSpec earliest/latest/
    max_timestamp agree with what was produced."""
    from kafka import TopicPartition as KTP

    topic = "by-time"
    parts = 3
    create_topic(broker.bootstrap, topic, parts, config={"segment.bytes": str(1024 * 1024)})
    n = 6000
    base = now_ms() - 2 * DAY_MS
    rnd = random.Random(7)
    recs = [
        Rec(f"t-{i}".encode(), rnd.randbytes(600).hex().encode(), (("i", str(i).encode()),), base + TS_STEP * i)
        for i in range(n)
    ]
    # Produce each partition's share with an explicit partition, in order.
    by_part = {p: [r for i, r in enumerate(recs) if i % parts == p] for p in range(parts)}
    for p in range(parts):
        reps = confluent_produce(broker.bootstrap, topic, by_part[p], "lz4", partition=p)
        assert [(rp, off) for rp, off, _ in reps] == [(p, o) for o in range(len(by_part[p]))]
    per = n // parts  # records per partition; partition p offset o has timestamp base + 10*(3*o + p)

    def ts(p, o):
        return base + TS_STEP * (parts * o + p)

    last = per - 1
    # (query timestamp, expected offset or None) per partition.
    cases = {}
    for p in range(parts):
        cases[p] = [
            (base - 1_000_000, 0),          # long before the first record
            (ts(p, 0) - 1, 0),              # 1 ms before the first record
            (ts(p, 0), 0),                  # exactly the first record
            (ts(p, 0) + 1, 1),              # between record 0 and 1
            (ts(p, 777), 777),              # exactly a record in the middle
            (ts(p, 777) + 1, 778),          # between two records in the middle
            (ts(p, 1234) + 29, 1235),       # 1 ms before the next record
            (ts(p, last), last),            # exactly the last record
            (ts(p, last) + 1, None),        # after the last record
            (base + DAY_MS, None),          # long after the last record
        ]

    # confluent-kafka Consumer.offsets_for_times: one request per query round, all partitions at once.
    c = consumer(broker.bootstrap)
    try:
        for k in range(len(cases[0])):
            query = [TopicPartition(topic, p, cases[p][k][0]) for p in range(parts)]
            res = c.offsets_for_times(query, timeout=15)
            got = {r.partition: (r.offset, r.error) for r in res}
            want = {p: (-1 if cases[p][k][1] is None else cases[p][k][1], None) for p in range(parts)}
            assert got == want, f"offsets_for_times {[(q.partition, q.offset) for q in query]}: got {got}, want {want}"
        for p in range(parts):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) == (0, per)
    finally:
        c.close()

    # AdminClient.list_offsets with OffsetSpec.for_timestamp / earliest / latest / max_timestamp.
    for p in range(parts):
        for q, want in cases[p]:
            got = _list_offsets(broker.bootstrap, {TopicPartition(topic, p): OffsetSpec.for_timestamp(q)})
            off, t = got[(topic, p)]
            if want is None:
                assert off == -1, f"list_offsets(p{p}, ts={q}) after the last record: {got}"
            else:
                assert (off, t) == (want, ts(p, want)), f"list_offsets(p{p}, ts={q}): {got}, want {want}"
    specs = {}
    for p in range(parts):
        specs[TopicPartition(topic, p)] = OffsetSpec.earliest()
    assert {k[1]: v[0] for k, v in _list_offsets(broker.bootstrap, specs).items()} == {p: 0 for p in range(parts)}
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(parts)}
    assert {k[1]: v[0] for k, v in _list_offsets(broker.bootstrap, specs).items()} == {p: per for p in range(parts)}
    specs = {TopicPartition(topic, p): OffsetSpec.max_timestamp() for p in range(parts)}
    assert _list_offsets(broker.bootstrap, specs) == {(topic, p): (last, ts(p, last)) for p in range(parts)}

    # kafka-python offsets_for_times / beginning_offsets / end_offsets.
    kc = kp_consumer(broker.bootstrap)
    try:
        tps = [KTP(topic, p) for p in range(parts)]
        assert kc.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert kc.end_offsets(tps) == {tp: per for tp in tps}
        for k in range(len(cases[0])):
            res = kc.offsets_for_times({KTP(topic, p): cases[p][k][0] for p in range(parts)})
            for p in range(parts):
                want = cases[p][k][1]
                r = res[KTP(topic, p)]
                if want is None:
                    assert r is None, f"kafka-python offsets_for_times(p{p}, {cases[p][k][0]}) = {r}, want None"
                else:
                    assert (r.offset, r.timestamp) == (want, ts(p, want)), (
                        f"kafka-python offsets_for_times(p{p}, {cases[p][k][0]}) = {r}, want {want}"
                    )
    finally:
        kc.close()

    # The offsets found point at the records with those timestamps.
    got = confluent_consume(broker.bootstrap, topic, {0: per}, start={0: 777})
    g = got[0][0]
    assert (g.offset, g.key, g.timestamp) == (777, b"t-2331", ts(0, 777))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_offsets_for_times_out_of_order_timestamps(broker, codec):
    """CreateTime timestamps need not increase with offsets. ListOffsets by timestamp returns
    the first offset (in offset order) whose timestamp >= the query, and max_timestamp the
    offset of the largest timestamp. Records go in one batch (linger) or, for `none`, one
    request per record (so they land in separate batches)."""
    from kafka import TopicPartition as KTP

    topic = f"ooo-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    base = now_ms() - DAY_MS
    offs_ts = [1000, 5000, 3000, 7000, 2000, 9000, 8000]
    recs = [Rec(f"o{i}".encode(), f"v{i}".encode(), (), base + t) for i, t in enumerate(offs_ts)]
    if codec == "none":
        for i, r in enumerate(recs):
            reps = confluent_produce(broker.bootstrap, topic, [r], codec, partition=0, **{"linger.ms": 0})
            assert reps[0][:2] == (0, i)
    else:
        reps = confluent_produce(broker.bootstrap, topic, recs, codec, partition=0, **{"linger.ms": 200})
        assert [r[:2] for r in reps] == [(0, i) for i in range(len(recs))]

    queries = {0: 0, 1000: 0, 1001: 1, 2500: 1, 5000: 1, 5001: 3, 6000: 3, 7001: 5, 8500: 5, 9000: 5, 9001: None}
    c = consumer(broker.bootstrap)
    kc = kp_consumer(broker.bootstrap)
    try:
        for q, want in queries.items():
            r = c.offsets_for_times([TopicPartition(topic, 0, base + q)], timeout=15)[0]
            assert (r.offset, r.error) == (-1 if want is None else want, None), f"query +{q}: got {r.offset}, want {want}"
            kr = kc.offsets_for_times({KTP(topic, 0): base + q})[KTP(topic, 0)]
            if want is None:
                assert kr is None, f"kafka-python query +{q}: {kr}"
            else:
                assert (kr.offset, kr.timestamp) == (want, base + offs_ts[want]), f"kafka-python query +{q}: {kr}"
    finally:
        c.close()
        kc.close()
    got = _list_offsets(broker.bootstrap, {TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    assert got == {(topic, 0): (5, base + 9000)}


# ----------------------------------------------------------------------------- fetch size limits


@pytest.mark.timeout(60)
def test_fetch_limits_smaller_than_a_record_still_make_progress(broker):
    """30 records of ~20 KB, each in its own batch. Consumers whose fetch limits are 1 KB
    (confluent: max.partition.fetch.bytes / fetch.max.bytes; kafka-python:
    max_partition_fetch_bytes / fetch_max_bytes) must still get every record: Kafka returns
    the first batch of a fetch even when it is larger than the limits (KIP-74)."""
    from kafka import TopicPartition as KTP

    topic = "big-records"
    create_topic(broker.bootstrap, topic, 1)
    base = now_ms() - 60_000
    recs = [Rec(f"k{i}".encode(), bytes([65 + i % 26]) * (20_000 + i), (("h", str(i).encode()),), base + i)
            for i in range(30)]
    reports = confluent_produce(broker.bootstrap, topic, recs, "none", partition=0,
                                **{"linger.ms": 0, "batch.num.messages": 1})
    assert [r[:2] for r in reports] == [(0, i) for i in range(30)]
    expected = {0: list(enumerate(recs))}
    got = confluent_consume(broker.bootstrap, topic, {0: 30}, timeout=30, **{
        "max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024, "message.max.bytes": 1024})
    assert_all_match(expected, got, CREATE_TIME, what="confluent-kafka with 1 KB fetch limits")

    kc = kp_consumer(broker.bootstrap, max_partition_fetch_bytes=1024, fetch_max_bytes=1024)
    try:
        kc.assign([KTP(topic, 0)])
        kc.seek_to_beginning()
        out = []
        deadline = time.monotonic() + 30
        while len(out) < 30 and time.monotonic() < deadline:
            for rs in kc.poll(timeout_ms=300).values():
                out += [(r.offset, r.key, r.value, tuple(r.headers), r.timestamp) for r in rs]
        assert out == [(i, r.key, r.value, r.headers, r.timestamp) for i, r in enumerate(recs)]
    finally:
        kc.close()


# ----------------------------------------------------------------------------- long-poll Fetch


@pytest.mark.timeout(60)
def test_long_poll_fetch_returns_when_data_arrives(broker):
    """A consumer at the end of an empty partition with fetch.wait.max.ms=5000 and
    fetch.min.bytes=1: the broker holds the Fetch (librdkafka's statistics show at most a
    couple of Fetch requests while idle, not a busy loop of empty responses) and answers
    it as soon as a record is produced 1.5 s later, so the record arrives well before the
    5 s wait would have run out."""
    topic = "long-poll"
    create_topic(broker.bootstrap, topic, 1)
    stats = []
    lock = threading.Lock()

    def on_stats(s):
        with lock:
            stats.append((time.monotonic(), json.loads(s)))

    def fetch_requests():
        with lock:
            if not stats:
                return None
            brokers = stats[-1][1]["brokers"]
        return sum(b["req"].get("Fetch", 0) for name, b in brokers.items() if b.get("nodeid", -1) >= 0)

    c = consumer(broker.bootstrap, **{
        "fetch.wait.max.ms": 5000,
        "fetch.min.bytes": 1,
        "statistics.interval.ms": 250,
        "stats_cb": on_stats,
    })
    producer = confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        t0 = time.monotonic()
        produced_at = None
        msg = None
        deadline = t0 + 20
        idle_fetches = None
        while time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None:
                assert m.error() is None, f"consumer error: {m.error()}"
                msg = m
                break
            if produced_at is None and time.monotonic() - t0 >= 1.5:
                idle_fetches = fetch_requests()
                produced_at = time.monotonic()
                producer.produce(topic, key=b"lp-key", value=b"lp-value", partition=0, timestamp=1_700_000_000_000)
                assert producer.flush(10) == 0
        received_at = time.monotonic()
        assert msg is not None, "record produced into a long-polled partition never arrived"
        assert (msg.offset(), msg.key(), msg.value(), msg.timestamp()) == (
            0, b"lp-key", b"lp-value", (CREATE_TIME, 1_700_000_000_000))
        assert produced_at is not None
        # Measured from assignment: a broker that ignores new data until max wait (5 s)
        # would deliver only after ~5 s.
        assert received_at - t0 < 4.5, (
            f"record arrived {received_at - t0:.2f}s after assignment, produced at {produced_at - t0:.2f}s"
        )
        assert idle_fetches is not None, "no librdkafka statistics within 1.5 s"
        assert idle_fetches <= 3, f"{idle_fetches} Fetch requests in 1.5 s idle: the broker does not hold empty fetches"
    finally:
        c.close()
        close_producer(producer)


# ----------------------------------------------------------------------------- seek / replay / out of range


def _poll_n(c, n, timeout=20):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, f"unexpected consumer event {m.error()}"
        out.append((m.offset(), m.key(), m.value()))
    return out


def _first_event(c, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None:
            return m
    return None


@pytest.mark.timeout(120)
def test_seek_replay_and_out_of_range(broker):
    """1,000 gzip-compressed records in one partition.
    - Reading 100 records from offset 500 twice (seek back) yields the same records, and
      reading from 537 (inside a compressed batch) starts exactly at 537.
    - After DeleteRecords up to 300 the low watermark is 300 and ListOffsets for a time
      before the first record returns 300.
    - Fetching 100 (below the log start) or 5000 (above the end) is OFFSET_OUT_OF_RANGE:
      confluent-kafka with auto.offset.reset=error reports _AUTO_OFFSET_RESET, with
      earliest restarts at 300, with latest waits at the end (the next record it gets is a
      newly produced one, never an old one); kafka-python with auto_offset_reset=earliest
      restarts at 300."""
    from kafka import TopicPartition as KTP

    topic = "seek"
    create_topic(broker.bootstrap, topic, 1)
    n = 1000
    recs = make_records(n, "seek", now_ms() - DAY_MS)
    reports = confluent_produce(broker.bootstrap, topic, recs, "gzip", partition=0)
    assert [r[:2] for r in reports] == [(0, i) for i in range(n)]
    want = {i: (i, recs[i].key, recs[i].value) for i in range(n)}

    tp = TopicPartition(topic, 0, 500)
    c = consumer(broker.bootstrap)
    try:
        c.assign([tp])
        first = _poll_n(c, 100)
        assert first == [want[i] for i in range(500, 600)]
        c.seek(TopicPartition(topic, 0, 500))
        again = _poll_n(c, 100)
        assert again == first, "replay from the same offset returned different records"
        c.seek(TopicPartition(topic, 0, 537))
        assert _poll_n(c, 3) == [want[537], want[538], want[539]]
    finally:
        c.close()

    # Full read still matches after the seeks (nothing was changed by reading).
    got = confluent_consume(broker.bootstrap, topic, {0: n})
    assert_all_match({0: [(i, recs[i]) for i in range(n)]}, got, CREATE_TIME, what="full read")

    a = admin(broker.bootstrap)
    res = a.delete_records([TopicPartition(topic, 0, 300)], request_timeout=15)
    for f in res.values():
        assert f.result(15).low_watermark == 300
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0 + 300, n)
        r = c.offsets_for_times([TopicPartition(topic, 0, recs[0].timestamp - 1000)], timeout=15)[0]
        assert (r.offset, r.error) == (300, None), f"offsets_for_times before the first record: {r.offset}"
    finally:
        c.close()

    for start in (100, 5000):
        # auto.offset.reset=error: the out-of-range fetch surfaces as an error event.
        c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
        try:
            c.assign([TopicPartition(topic, 0, start)])
            m = _first_event(c)
            assert m is not None, f"no event for out-of-range offset {start}"
            assert m.error() is not None, f"offset {start} is out of range but got record at {m.offset()}"
            assert m.error().code() == KafkaError._AUTO_OFFSET_RESET, f"offset {start}: {m.error()}"
            assert "Offset out of range" in m.error().str(), m.error().str()
        finally:
            c.close()

        c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
        try:
            c.assign([TopicPartition(topic, 0, start)])
            assert _poll_n(c, 3) == [want[300], want[301], want[302]], f"reset to earliest from {start}"
        finally:
            c.close()

    # latest: from 5000 the consumer resets to the end; it must never return an old record.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "latest"})
    p = confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    try:
        c.assign([TopicPartition(topic, 0, 5000)])
        produced = {}
        deadline = time.monotonic() + 20
        got = None
        next_produce = time.monotonic() + 0.5
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None:
                assert m.error() is None, m.error()
                got = (m.offset(), m.key(), m.value())
                break
            if time.monotonic() >= next_produce and len(produced) < 20:
                k = f"late-{len(produced)}".encode()
                p.produce(topic, key=k, value=k, partition=0,
                          on_delivery=lambda err, msg: produced.__setitem__(msg.offset(), msg.key()))
                p.flush(10)
                next_produce = time.monotonic() + 0.5
        assert got is not None, "consumer reset to latest never got a newly produced record"
        assert got[0] >= n and produced.get(got[0]) == got[1] == got[2], f"got {got}, produced {produced}"
    finally:
        c.close()
        close_producer(p)

    # kafka-python: seek below the log start with auto_offset_reset=earliest.
    kc = kp_consumer(broker.bootstrap, auto_offset_reset="earliest")
    try:
        ktp = KTP(topic, 0)
        kc.assign([ktp])
        kc.seek(ktp, 100)
        records = []
        deadline = time.monotonic() + 20
        while len(records) < 3 and time.monotonic() < deadline:
            for rs in kc.poll(timeout_ms=300, max_records=3).values():
                records += [(r.offset, r.key, r.value) for r in rs]
        assert records[:3] == [want[300], want[301], want[302]]
    finally:
        kc.close()

    # kafka-python without a reset policy: poll raises OffsetOutOfRangeError naming the offset.
    from kafka.errors import OffsetOutOfRangeError

    for start in (100, 5000):
        kc = kp_consumer(broker.bootstrap, auto_offset_reset="none")
        try:
            ktp = KTP(topic, 0)
            kc.assign([ktp])
            kc.seek(ktp, start)
            raised = None
            deadline = time.monotonic() + 20
            while raised is None and time.monotonic() < deadline:
                try:
                    batch = kc.poll(timeout_ms=300)
                except OffsetOutOfRangeError as e:
                    raised = e
                else:
                    assert not batch, f"records returned for out-of-range offset {start}: {batch}"
            assert raised is not None, f"kafka-python never raised OffsetOutOfRangeError for offset {start}"
            assert raised.args[0] == {ktp: start}, raised.args
        finally:
            kc.close()
