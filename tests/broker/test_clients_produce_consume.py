"""Produce/consume round trips through the real broker with third-party clients.

Every test produces records with known keys, values, headers and timestamps, reads them
back and compares each record, per partition in offset order, with what was produced
(matched by the offsets the delivery reports gave).
"""

import pytest

from clients import (
    CODECS,
    CREATE_TIME,
    DAY_MS,
    HOUR_MS,
    KP_CREATE_TIME,
    KP_LOG_APPEND_TIME,
    LOG_APPEND_TIME,
    KafkaError,
    Rec,
    TopicPartition,
    assert_all_match,
    assert_batches_compressed_with,
    kp_batch_codecs,
    confluent_consume,
    confluent_produce,
    confluent_producer,
    ends_of,
    expected_by_partition,
    kp_consume,
    kp_produce,
    kp_producer,
    make_records,
    now_ms,
    run_kcat,
)
from kafkautil import close_producer, consumer, create_topic, watermarks

PARTITIONS = 4


def _check_spread(expected, n, partitions=PARTITIONS):
    counts = {p: len(expected.get(p, [])) for p in range(partitions)}
    assert sum(counts.values()) == n
    # Keyed records are spread by the client's partitioner: every partition gets some.
    assert all(c > 0 for c in counts.values()), f"records not spread over partitions: {counts}"
    return counts


def _check_watermarks(bootstrap, topic, counts):
    for p, n in counts.items():
        lo, hi = watermarks(bootstrap, topic, p)
        assert (lo, hi) == (0, n), f"{topic}[{p}] watermarks {(lo, hi)}, want (0, {n})"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_100k_keyed_records_with_headers_round_trip(broker, codec):
    """100,000 keyed records with headers (duplicate names, null and empty values) and
    distinct CreateTime timestamps, produced with confluent-kafka under `codec` with
    acks=all into 4 partitions, then read back with confluent-kafka and, to check the
    wire format with a second implementation, with kafka-python. Both must return every
    record at the offset its delivery report named, with identical key, value, headers
    (order and duplicates kept), timestamp and timestamp type CreateTime."""
    topic = f"rt-{codec}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n = 100_000
    # CreateTime an hour ago: well inside the default retention (7 days) and segment.ms.
    recs = make_records(n, codec, base_ts=now_ms() - HOUR_MS)
    reports = confluent_produce(broker.bootstrap, topic, recs, codec)
    bad_ts = [(i, rep[2]) for i, (r, rep) in enumerate(zip(recs, reports)) if rep[2] != (CREATE_TIME, r.timestamp)]
    assert not bad_ts, f"delivery reports carry wrong timestamps, first: {bad_ts[:5]}"
    expected = expected_by_partition(recs, reports, PARTITIONS)
    counts = _check_spread(expected, n)
    _check_watermarks(broker.bootstrap, topic, counts)

    got = confluent_consume(broker.bootstrap, topic, ends_of(expected, PARTITIONS))
    assert_all_match(expected, got, CREATE_TIME, what=f"confluent-kafka read of {codec} topic")

    with kp_batch_codecs() as codecs:
        got = kp_consume(broker.bootstrap, topic, ends_of(expected, PARTITIONS))
    assert_all_match(expected, got, KP_CREATE_TIME, what=f"kafka-python read of {codec} topic")
    assert_batches_compressed_with(codecs, codec)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_producer_round_trip(broker, codec):
    """20,000 keyed records with headers produced by kafka-python (non-idempotent, acks=all)
    under `codec`, read back with confluent-kafka and compared record by record.
    kafka-python cannot send null header values, so none are used here."""
    topic = f"kp-{codec}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n = 20_000
    recs = make_records(n, f"kp{codec}", base_ts=now_ms() - 2 * HOUR_MS, null_headers=False)
    reports = kp_produce(broker.bootstrap, topic, recs, codec)
    bad_ts = [(i, rep[2]) for i, (r, rep) in enumerate(zip(recs, reports)) if rep[2] != r.timestamp]
    assert not bad_ts, f"RecordMetadata carries wrong timestamps, first: {bad_ts[:5]}"
    expected = expected_by_partition(recs, reports, PARTITIONS)
    _check_spread(expected, n)
    got = confluent_consume(broker.bootstrap, topic, ends_of(expected, PARTITIONS))
    assert_all_match(expected, got, CREATE_TIME, what=f"confluent-kafka read of kafka-python {codec} data")
    with kp_batch_codecs() as codecs:
        got = kp_consume(broker.bootstrap, topic, ends_of(expected, PARTITIONS))
    assert_all_match(expected, got, KP_CREATE_TIME, what=f"kafka-python read of kafka-python {codec} data")
    assert_batches_compressed_with(codecs, codec)


# ----------------------------------------------------------------------------- kcat

KCAT_HEADERS = [("trace", b"abc123"), ("dup", b"one"), ("dup", b"two"), ("nothing", None), ("blank", b"")]
KCAT_FORMAT = "%p|%o|%k|%s|%h|%T|%K|%S\n"


def _kcat_header_args():
    args = []
    for name, value in KCAT_HEADERS:
        # "-H name" (no '=') sends a header with a null value.
        args += ["-H", name if value is None else f"{name}={value.decode()}"]
    return args


def _kcat_expected_header_text():
    # kcat prints headers as CSV of name=value, a null value as NULL.
    return ",".join(f"{n}={'NULL' if v is None else v.decode()}" for n, v in KCAT_HEADERS)


def _kcat_line(i):
    """Key repeats every 5000 lines (so key partitioning is visible); every 97th value is
    empty. Only [A-Za-z0-9-] so neither ':' (key delimiter) nor '|' (output separator)
    can appear."""
    key = f"kk-{i % 5000:05d}"
    value = "" if i % 97 == 0 else f"val-{i:06d}-" + "x" * (i % 50)
    return key, value


def _kcat_consume(bootstrap, topic, n, timeout=120):
    rc, out, err = run_kcat(
        ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", KCAT_FORMAT], timeout=timeout
    )
    assert rc == 0, f"kcat -C exited {rc}: {err.decode()[-2000:]}"
    rows = []
    for line in out.decode().split("\n")[:-1]:
        parts = line.split("|")
        assert len(parts) == 8, f"unparseable kcat line {line!r}"
        p, o, k, v, h, ts, klen, vlen = parts
        rows.append((int(p), int(o), k, v, h, int(ts), int(klen), int(vlen)))
    assert out.endswith(b"\n") or not out
    assert len(rows) == n, f"kcat consumed {len(rows)} records, want {n}"
    return rows


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "codec,partitioning",
    [("gzip", "key"), ("lz4", "explicit"), ("snappy", "key"), ("zstd", "explicit")],
)
def test_kcat_100k_produce_consume(broker, codec, partitioning, tmp_path):
    """100,000 keyed records produced by kcat -P -K: -z <codec> with five static headers
    (duplicate name, null value, empty value) either with key-based partitioning or with
    -p per partition, then consumed by kcat -C -e with a %p|%o|%k|%s|%h|%T format. Every
    line must come back exactly once with its key, value and headers; per partition the
    offsets must be 0..n-1 in the order the lines were produced; the same key always lands
    on the same partition; timestamps are the producer's clock at send time (CreateTime),
    non-decreasing within a partition."""
    topic = f"kcat-{codec}-{partitioning}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n = 100_000
    lines = [_kcat_line(i) for i in range(n)]
    base = ["-P", "-b", broker.bootstrap, "-t", topic, "-K", ":", "-z", codec, "-X", "linger.ms=20",
            "-X", "acks=all", "-X", "enable.idempotence=false", *_kcat_header_args()]
    t_before = now_ms()
    if partitioning == "key":
        data = "".join(f"{k}:{v}\n" for k, v in lines).encode()
        (tmp_path / "kcat-input.txt").write_bytes(data)
        rc, _, err = run_kcat(base, input_bytes=data)
        assert rc == 0, f"kcat -P exited {rc}: {err.decode()[-2000:]}"
    else:
        for p in range(PARTITIONS):
            data = "".join(f"{k}:{v}\n" for i, (k, v) in enumerate(lines) if i % PARTITIONS == p).encode()
            rc, _, err = run_kcat([*base, "-p", str(p)], input_bytes=data)
            assert rc == 0, f"kcat -P -p {p} exited {rc}: {err.decode()[-2000:]}"
    t_after = now_ms()

    rows = _kcat_consume(broker.bootstrap, topic, n)
    header_text = _kcat_expected_header_text()
    by_part = {}
    for r in rows:
        by_part.setdefault(r[0], []).append(r)
    seen = {}
    key_partition = {}
    problems = []
    for p, prow in sorted(by_part.items()):
        prow.sort(key=lambda r: r[1])
        offsets = [r[1] for r in prow]
        if offsets != list(range(len(prow))):
            problems.append(f"p{p}: offsets are not 0..{len(prow) - 1}")
            continue
        last_i, last_ts = -1, 0
        for (_, off, k, v, h, ts, klen, vlen) in prow:
            # The line number is in the value, except for empty values: find it by key and order.
            if v:
                i = int(v.split("-")[1])
            else:
                # Empty values: the next line >= last_i + 1 with this key and an empty value.
                i = next((j for j in range(last_i + 1, n) if j % 97 == 0 and lines[j][0] == k), None)
                if i is None:
                    problems.append(f"p{p} offset {off}: empty value with key {k} matches no input line")
                    break
            ek, ev = lines[i]
            if (k, v, klen, vlen) != (ek, ev, len(ek), len(ev)):
                problems.append(f"p{p} offset {off}: got key={k!r} value={v!r} ({klen},{vlen}), want {ek!r} {ev!r}")
            if h != header_text:
                problems.append(f"p{p} offset {off}: headers {h!r}, want {header_text!r}")
            if i <= last_i:
                problems.append(f"p{p} offset {off}: line {i} after line {last_i} (order not kept)")
            if not (t_before - 1000 <= ts <= t_after + 1000) or ts < last_ts:
                problems.append(f"p{p} offset {off}: timestamp {ts} outside [{t_before}, {t_after}] or decreasing")
            if i in seen:
                problems.append(f"p{p} offset {off}: line {i} also at {seen[i]}")
            seen[i] = (p, off)
            if partitioning == "key":
                if key_partition.setdefault(k, p) != p:
                    problems.append(f"key {k} in partitions {key_partition[k]} and {p}")
            elif i % PARTITIONS != p:
                problems.append(f"p{p} offset {off}: line {i} was produced with -p {i % PARTITIONS}")
            last_i, last_ts = i, ts
            if len(problems) > 10:
                break
        if len(problems) > 10:
            break
    assert not problems, "\n".join(problems[:10])
    assert len(seen) == n, f"{n - len(seen)} input lines never consumed"
    assert len(by_part) == PARTITIONS, f"records only in partitions {sorted(by_part)}"
    # kcat -z really compressed the batches the broker stored and serves back.
    with kp_batch_codecs() as codecs:
        kp_consume(broker.bootstrap, topic, {0: len(by_part[0])})
    assert_batches_compressed_with(codecs, codec)


# ----------------------------------------------------------------------------- LogAppendTime


@pytest.mark.timeout(90)
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_log_append_time_topic(broker, codec):
    """On a topic with message.timestamp.type=LogAppendTime the broker stamps records with
    its own clock: produce still succeeds, the delivery report carries the broker's
    LogAppendTime, and consumers (confluent-kafka and kafka-python) see timestamp type
    LogAppendTime with that same broker time, not the CreateTime the producer set
    (10 days in the past). Keys, values and headers are untouched."""
    topic = f"lat-{codec}"
    create_topic(broker.bootstrap, topic, 2, config={"message.timestamp.type": "LogAppendTime"})
    n = 2000
    recs = make_records(n, f"lat{codec}", base_ts=now_ms() - 10 * DAY_MS)
    t_before = now_ms()
    reports = confluent_produce(broker.bootstrap, topic, recs, codec)
    t_after = now_ms()
    window = (t_before - 5000, t_after + 5000)
    bad = [(i, rep) for i, rep in enumerate(reports)
           if rep[2][0] != LOG_APPEND_TIME or not (window[0] <= rep[2][1] <= window[1])]
    assert not bad, f"delivery reports without a broker LogAppendTime in {window}, first: {bad[:5]}"
    expected = expected_by_partition(recs, reports, 2)
    # What consumers must see: the same records, stamped with the report's broker time.
    ts_by_pos = {(rep[0], rep[1]): rep[2][1] for rep in reports}
    stamped = {
        p: [(off, Rec(r.key, r.value, r.headers, ts_by_pos[(p, off)])) for off, r in lst]
        for p, lst in expected.items()
    }
    got = confluent_consume(broker.bootstrap, topic, ends_of(expected, 2))
    assert_all_match(stamped, got, LOG_APPEND_TIME, what="confluent-kafka read of LogAppendTime topic")

    # ListOffsets by timestamp searches the broker's LogAppendTime, not the (much older)
    # CreateTime the producer had set: first offset whose append time >= the query.
    c = consumer(broker.bootstrap)
    try:
        for p, lst in stamped.items():
            times = [r.timestamp for _, r in lst]
            assert times == sorted(times), f"p{p}: LogAppendTime decreases with offset"
            for q in sorted({times[0], times[len(times) // 2], times[-1], times[-1] + 1}):
                want = next((o for o, t in enumerate(times) if t >= q), -1)
                r = c.offsets_for_times([TopicPartition(topic, p, q)], timeout=15)[0]
                assert (r.offset, r.error) == (want, None), f"p{p} offsets_for_times({q}) = {r.offset}, want {want}"
    finally:
        c.close()
    with kp_batch_codecs() as codecs:
        got = kp_consume(broker.bootstrap, topic, ends_of(expected, 2))
    assert_all_match(stamped, got, KP_LOG_APPEND_TIME, what="kafka-python read of LogAppendTime topic")
    assert_batches_compressed_with(codecs, codec)


# ----------------------------------------------------------------------------- max.message.bytes


@pytest.mark.timeout(90)
def test_max_message_bytes_rejects_large_records(broker):
    """A topic with max.message.bytes=2000 rejects a 10 KB record (uncompressed) with
    MESSAGE_TOO_LARGE: confluent-kafka reports MSG_SIZE_TOO_LARGE in the delivery report,
    kafka-python raises MessageSizeTooLargeError. Smaller records produced afterwards by
    both clients succeed, and only those are stored."""
    from kafka.errors import MessageSizeTooLargeError

    topic = "small-max"
    create_topic(broker.bootstrap, topic, 1, config={"max.message.bytes": "2000"})
    big = b"B" * 10_000
    small = [b"s" * 500, b"t" * 300, b"u" * 600]

    p = confluent_producer(broker.bootstrap, **{"compression.type": "none", "message.max.bytes": 1_000_000,
                                               "linger.ms": 0, "retries": 0})
    try:
        results = []

        def cb(err, msg):
            results.append((err, msg.offset()))

        p.produce(topic, key=b"big", value=big, partition=0, on_delivery=cb)
        assert p.flush(30) == 0
        assert len(results) == 1
        err, _ = results[0]
        assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, f"10 KB record: {err}"

        results.clear()
        p.produce(topic, key=b"s0", value=small[0], partition=0, on_delivery=cb)
        assert p.flush(30) == 0
        assert results == [(None, 0)], f"500-byte record after the rejected one: {results}"

        kp = kp_producer(broker.bootstrap, "none", retries=0, linger_ms=0)
        try:
            # send() itself accepts it (below kafka-python's max_request_size): the broker refuses.
            future = kp.send(topic, key=b"kbig", value=big, partition=0)
            with pytest.raises(MessageSizeTooLargeError):
                future.get(timeout=30)
            md = kp.send(topic, key=b"s1", value=small[1], partition=0).get(timeout=30)
            assert (md.partition, md.offset) == (0, 1)
        finally:
            kp.close(timeout=10)

        results.clear()
        p.produce(topic, key=b"s2", value=small[2], partition=0, on_delivery=cb)
        assert p.flush(30) == 0
        assert results == [(None, 2)], f"600-byte record: {results}"
    finally:
        close_producer(p)

    got = confluent_consume(broker.bootstrap, topic, {0: 3})
    assert [(g.offset, g.key, g.value) for g in got[0]] == [
        (0, b"s0", small[0]), (1, b"s1", small[1]), (2, b"s2", small[2])
    ]
    assert watermarks(broker, topic, 0) == (0, 3)
