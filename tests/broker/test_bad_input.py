"""Hostile or broken input on raw connections: the broker answers what Kafka answers,
closes what Kafka closes, counts and logs it, and other clients are not disturbed."""

import random
import struct
import threading
import time

import pytest
from confluent_kafka import Producer

import rawkafka
from kafkautil import create_topic, metric, read_partition, watermarks
from rawkafka import Writer

pytestmark = pytest.mark.timeout(180)

INVALID_RECORD = 87


# ---------------------------------------------------------------- attacks

def attack_garbage(port):
    """512 seeded random bytes after a plausible size prefix: the header is nonsense."""
    garbage = random.Random(7).randbytes(512)
    garbage = b"\x27\x0f" + garbage[2:]  # api key 9999 so the outcome is deterministic
    with rawkafka.connect(port) as s:
        s.sendall(struct.pack(">i", len(garbage)) + garbage)
        assert rawkafka.wait_closed(s, 10), "broker kept a connection that sent garbage"


def attack_oversized(port):
    with rawkafka.connect(port) as s:
        s.sendall(struct.pack(">i", 2**31 - 1) + b"\x00" * 16)
        assert rawkafka.wait_closed(s, 10), "broker kept a connection announcing a 2 GiB request"


def attack_negative_size(port):
    with rawkafka.connect(port) as s:
        s.sendall(struct.pack(">i", -5) + b"\x00" * 16)
        assert rawkafka.wait_closed(s, 10), "broker kept a connection with a negative size"


def attack_truncated_frame(port):
    """Size says 100, 20 bytes arrive, then the client goes away."""
    with rawkafka.connect(port) as s:
        s.sendall(struct.pack(">i", 100) + rawkafka.api_versions_request(0, 5)[4:] + b"\x00" * 2)
        # The broker waits for the rest of the frame and answers nothing meanwhile.
        assert not rawkafka.wait_closed(s, 0.5)


def attack_unknown_api(port):
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.request(9999, 0, 3, b"\x00" * 8))
        assert rawkafka.wait_closed(s, 10), "broker kept a connection using API key 9999"


def attack_api_versions_v99(port):
    """KIP-511: an unknown ApiVersions version is answered in v0 with UNSUPPORTED_VERSION
    and the supported ranges, and the connection stays usable."""
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.api_versions_request(99, 1234))
        cid, r = rawkafka.recv_response(s)
        assert cid == 1234
        error, apis = rawkafka.parse_api_versions_v0(r)
        assert error == rawkafka.UNSUPPORTED_VERSION
        assert apis[rawkafka.API_VERSIONS] == (0, 4)
        assert apis[rawkafka.PRODUCE][0] == 0 and apis[rawkafka.PRODUCE][1] >= 9
        assert apis[rawkafka.METADATA][0] == 0
        s.sendall(rawkafka.api_versions_request(0, 1235))
        cid, r = rawkafka.recv_response(s)
        assert cid == 1235
        error, apis_v0 = rawkafka.parse_api_versions_v0(r)
        assert (error, apis_v0) == (0, apis)


def attack_truncated_metadata(port):
    """Metadata v1 announcing two topics, the first name cut off mid-string. The frame
    itself is complete: only the body is short."""
    body = Writer().int32(2).int16(10).raw(b"abc").build()
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.request(rawkafka.METADATA, 1, 9, body))
        assert rawkafka.wait_closed(s, 10), "broker kept a connection with a malformed Metadata body"


def attack_pipelined_then_unknown_api(port):
    """A valid request and a bad one in the same packet: the first is answered (requests
    are handled in order), then the connection is closed."""
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.api_versions_request(0, 501) + rawkafka.request(9999, 0, 502, b""))
        cid, r = rawkafka.recv_response(s)
        assert cid == 501 and rawkafka.parse_api_versions_v0(r)[0] == 0
        assert rawkafka.wait_closed(s, 10)


def attack_pipelined_then_oversized(port):
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.api_versions_request(0, 601) + struct.pack(">i", 200 << 20) + b"\x00" * 8)
        cid, r = rawkafka.recv_response(s)
        assert cid == 601 and rawkafka.parse_api_versions_v0(r)[0] == 0
        assert rawkafka.wait_closed(s, 10)


def attack_too_short_for_header(port):
    """A complete 4-byte frame cannot hold api key, version and correlation id."""
    with rawkafka.connect(port) as s:
        s.sendall(struct.pack(">i", 4) + b"\x00\x12\x00\x00")
        assert rawkafka.wait_closed(s, 10)


def legacy_produce_body(acks, topic):
    """Produce v0: acks, timeout, [topic [partition message_set]] with a magic-0 message."""
    msg = Writer().int32(0).int8(0).int8(0).bytes_(None).bytes_(b"legacy").build()  # crc, magic, attrs, key, value
    message_set = Writer().int64(0).int32(len(msg)).raw(msg).build()
    return (
        Writer()
        .int16(acks)
        .int32(5000)
        .array([topic], lambda w, t: w.string(t).array(
            [0, 1], lambda w2, p: w2.int32(p).bytes_(message_set)))
        .build()
    )


def attack_legacy_produce(port, topic):
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.request(rawkafka.PRODUCE, 0, 77, legacy_produce_body(1, topic)))
        cid, r = rawkafka.recv_response(s)
        assert cid == 77
        # Produce v0 response: [topic [partition error_code base_offset]], no throttle time.
        parsed = r.array(lambda rd: (rd.string(), rd.array(lambda rd2: (rd2.int32(), rd2.int16(), rd2.int64()))))
        assert r.remaining() == 0
        assert parsed == [(topic, [(0, rawkafka.UNSUPPORTED_VERSION, -1), (1, rawkafka.UNSUPPORTED_VERSION, -1)])]
        # The connection is still usable.
        s.sendall(rawkafka.api_versions_request(0, 78))
        assert rawkafka.recv_response(s)[0] == 78


def attack_legacy_produce_acks0(port, topic):
    """acks=0 gets no response, so the only way to signal the refusal is to close."""
    with rawkafka.connect(port) as s:
        s.sendall(rawkafka.request(rawkafka.PRODUCE, 1, 79, legacy_produce_body(0, topic)))
        assert rawkafka.wait_closed(s, 10)


# ---------------------------------------------------------------- tests

def test_bad_connections_do_not_disturb_a_producer(broker):
    topic = "steady"
    create_topic(broker, topic, 2)
    metrics_before = broker.metrics()
    n, chunk = 20_000, 500
    acked, errors = [], []
    started, attacks_done = threading.Event(), threading.Event()
    failure = []

    def run_producer():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2})
        try:
            def cb(err, msg):
                if err is not None:
                    errors.append(err)
                else:
                    acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

            for c in range(n // chunk):
                for i in range(c * chunk, (c + 1) * chunk):
                    for _ in range(200):
                        try:
                            p.produce(topic, key=b"%d" % i, value=b"value-%d" % i, on_delivery=cb)
                            break
                        except BufferError:
                            p.poll(0.05)
                p.poll(0)
                if c == 5:
                    started.set()
                if c == n // chunk // 2:
                    # Keep half the records for after the attacks, so the producer's
                    # connection is in use before, during and after them.
                    attacks_done.wait(120)
            if p.flush(60) != 0:
                failure.append("flush timed out")
        except Exception as e:  # reported by the main thread
            failure.append(repr(e))
        finally:
            started.set()

    t = threading.Thread(target=run_producer, daemon=True)
    t.start()
    try:
        assert started.wait(60)
        port = broker.port
        attacks = [
            attack_garbage,
            attack_oversized,
            attack_negative_size,
            attack_truncated_frame,
            attack_unknown_api,
            attack_api_versions_v99,
            attack_truncated_metadata,
            attack_pipelined_then_unknown_api,
            attack_pipelined_then_oversized,
            attack_too_short_for_header,
            lambda p: attack_legacy_produce(p, topic),
            lambda p: attack_legacy_produce_acks0(p, topic),
        ]
        results = [None] * len(attacks)

        def run_attack(i):
            try:
                attacks[i](port)
                results[i] = "ok"
            except BaseException as e:  # re-raised below
                results[i] = e

        threads = [threading.Thread(target=run_attack, args=(i,), daemon=True) for i in range(len(attacks))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        assert results == ["ok"] * len(attacks)
    finally:
        attacks_done.set()
        t.join(120)
    assert not t.is_alive()
    assert failure == []
    assert errors == []
    assert len(acked) == n

    assert broker.alive()
    assert broker.http_get("/readyz") == (200, "ready\n")

    # Every acknowledged record is there, intact, at its offset.
    for partition in (0, 1):
        mine = sorted((off, k, v) for p, off, k, v in acked if p == partition)
        assert [o for o, _, _ in mine] == list(range(len(mine)))
        assert watermarks(broker, topic, partition) == (0, len(mine))
        stored = read_partition(broker, topic, partition, 0, len(mine))
        assert stored == {o: (k, v) for o, k, v in mine}
    # The legacy produce appended nothing beyond the producer's records (checked above
    # through the watermarks).

    after = broker.metrics()

    def delta(reason):
        return (metric(after, "sluice_connection_errors_total", default=0.0, reason=reason)
                - metric(metrics_before, "sluice_connection_errors_total", default=0.0, reason=reason))

    assert delta("oversized_request") == 3  # 2**31-1, -5 and 200 MiB after a valid request
    assert delta("unknown_api") == 3  # garbage (api key 9999) and the two explicit 9999s
    assert delta("malformed_request") == 2  # the truncated Metadata body, the 4-byte frame
    assert delta("legacy_produce") == 2

    log = broker.log_text()
    closing = [line for line in log.splitlines() if "closing connection" in line]
    assert any("reason=unknown API key 9999" in line for line in closing), closing
    assert any("malformed Metadata v1 request body" in line for line in closing), closing
    assert any("size=2147483647" in line for line in closing), closing
    assert any("size=-5" in line for line in closing), closing
    assert any("size=209715200" in line for line in closing), closing
    assert any("request of 4 bytes is too short for a header" in line for line in closing), closing
    assert any("Produce v1 (message format v0/v1) is not supported" in line for line in closing), closing


def test_produce_with_corrupt_batches_is_rejected(broker):
    topic = "crc"
    create_topic(broker, topic)
    ts = int(time.time() * 1000)
    recs = [(b"k%d" % i, b"value-%d" % i) for i in range(5)]
    good = rawkafka.record_batch(recs, ts)

    def produce_raw(records, cid):
        got_cid, r = rawkafka.call(broker.port, rawkafka.produce_request_v3(cid, topic, 0, records))
        assert got_cid == cid
        return rawkafka.parse_produce_response_v3(r)[(topic, 0)]

    # Positive control: the hand-built batch is accepted and readable by a real client.
    assert produce_raw(good, 1) == (0, 0)
    assert watermarks(broker, topic, 0) == (0, 5)
    assert read_partition(broker, topic, 0, 0, 5) == {i: recs[i] for i in range(5)}

    flipped_value = bytearray(good)
    flipped_value[-3] ^= 0xFF  # a byte of the last record's value
    flipped_crc = bytearray(good)
    flipped_crc[rawkafka.BATCH_CRC_POS] ^= 0x01
    truncated = good[:-10]
    assert produce_raw(bytes(flipped_value), 2) == (rawkafka.CORRUPT_MESSAGE, -1)
    assert produce_raw(bytes(flipped_crc), 3) == (rawkafka.CORRUPT_MESSAGE, -1)
    assert produce_raw(truncated, 4) == (rawkafka.CORRUPT_MESSAGE, -1)
    # A valid batch followed by a corrupt one: the partition's whole record set is refused.
    assert produce_raw(good + bytes(flipped_value), 5) == (rawkafka.CORRUPT_MESSAGE, -1)

    # Record count disagreeing with lastOffsetDelta (CRC recomputed, so only the count is
    # wrong): INVALID_RECORD, as in Kafka.
    miscount = bytearray(good)
    miscount[57:61] = struct.pack(">i", 6)
    miscount[rawkafka.BATCH_CRC_POS:rawkafka.BATCH_ATTRIBUTES_POS] = struct.pack(
        ">I", rawkafka.crc32c(bytes(miscount[rawkafka.BATCH_ATTRIBUTES_POS:])))
    assert produce_raw(bytes(miscount), 6) == (INVALID_RECORD, -1)

    assert watermarks(broker, topic, 0) == (0, 5)
    # The next valid batch lands right after the first one.
    assert produce_raw(good, 7) == (0, 5)
    assert watermarks(broker, topic, 0) == (0, 10)
    assert read_partition(broker, topic, 0, 0, 10) == {i: recs[i % 5] for i in range(10)}

    m = broker.metrics()
    assert metric(m, "sluice_partition_errors_total", api="produce", error="CORRUPT_MESSAGE") == 4
    assert metric(m, "sluice_partition_messages_in_total", topic=topic, partition="0") == 10
    assert broker.log_text().count("CRC32C mismatch") >= 3


def test_huge_array_lengths_are_refused_without_harm(broker):
    """Requests whose array length fields claim billions of elements over a few bytes.

    kafka-protocol sizes its vectors from the claimed length before reading elements;
    the broker must refuse each request (closing that connection) and keep serving."""
    create_topic(broker, "huge-arrays")
    frames = []
    # Non-flexible versions: INT32 element counts, header v1.
    for api, version, prefix in [
        (3, 0, b""),                                  # Metadata v0: topics
        (0, 3, struct.pack(">hhi", -1, 1, 1000)),     # Produce v3: topic_data
        (1, 4, struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0)),  # Fetch v4: topics
        (2, 1, struct.pack(">i", -1)),                # ListOffsets v1: topics
        (19, 2, b""),                                 # CreateTopics v2: topics
    ]:
        body = prefix + struct.pack(">i", 0x7FFFFFFF)
        frames.append(rawkafka.request(api, version, 1, body))
    # Flexible versions: compact arrays (unsigned varint length + 1), header v2.
    for api, version in [(3, 12), (1, 12), (19, 7), (32, 4), (44, 1), (10, 4)]:
        header = struct.pack(">hhih", api, version, 1, -1) + b"\x00"
        payload = header + rawkafka.uvarint(0xFFFFFFFF)
        frames.append(struct.pack(">i", len(payload)) + payload)
    for frame in frames:
        s = rawkafka.connect(broker.port)
        try:
            s.sendall(frame)
            assert rawkafka.wait_closed(s, timeout=10), frame[:12].hex()
        finally:
            s.close()
    assert broker.alive()
    assert broker.http_get("/readyz")[0] == 200
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce("huge-arrays", key=b"k", value=b"still serving", partition=0)
    assert p.flush(15) == 0
    assert read_partition(broker, "huge-arrays", 0, 0, 1) == {0: (b"k", b"still serving")}
