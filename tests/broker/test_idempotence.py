"""Idempotent producers: the broker keeps, per partition and producer id, the producer's
epoch and its last batches' sequence numbers, so a batch sent again after a lost response
or a broker crash is acknowledged with its original offsets instead of being written a
second time, a gap in sequence numbers or a stale epoch is refused, and that state
survives restarts.

What is proven:
- through a proxy that lets the broker append a produce request and then drops the
  response and the connection, confluent-kafka and kafka-python idempotent producers end
  up with every record exactly once, in order, at the offset their delivery report named;
- an idempotent producer that keeps producing across a broker SIGKILL (or SIGTERM) and
  restart writes nothing twice;
- InitProducerId v0-v4 hand out distinct producer ids with epoch 0, never reused after
  a restart; hand-built batches get OUT_OF_ORDER_SEQUENCE_NUMBER for a sequence gap,
  INVALID_PRODUCER_EPOCH for an older epoch, and a resent batch gets its original base
  offset without being appended, before and after a restart.

The proxy runs in threads of the test process and is stopped (sockets closed, threads
joined) by the test; brokers are stopped by PID by the conftest fixtures.
"""

import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer
from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
from kafka.protocol.producer.transaction import InitProducerIdRequest

import rawkafka
from clients import kp_producer, now_ms
from kafkautil import close_producer, create_topic, read_partition, read_records, watermarks

pytestmark = pytest.mark.timeout(180)

PRODUCE = 0

# Byte offsets inside a v2 record batch (KIP-98 layout, see rawkafka.record_batch).
BATCH_PRODUCER_ID = 43  # producerId i64, producerEpoch i16, baseSequence i32


# ----------------------------------------------------------------------------- the proxy


def _read_frame(sock):
    """One size-prefixed Kafka frame (without the size), or None once the peer closed."""
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 4 or size > 256 << 20:
        raise OSError(f"implausible frame size {size}")
    return _read_exact(sock, size)


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _Link:
    """One proxied client connection and its broker connection."""

    def __init__(self, client, upstream):
        self.client, self.upstream = client, upstream
        self.pending = {}  # correlation id -> (api key, api version, drop?)
        self._closed = False
        self._lock = threading.Lock()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class DroppingProxy:
    """A TCP proxy between clients and one broker that parses Kafka frames: it notes which
    correlation ids are Produce requests and, for the produce requests whose ordinal
    (1-based, over all connections) is in `drop`, lets the broker process the request,
    then discards the response and closes both sides of that connection. The client sees
    a connection failure with the request in flight and must send it again.

    Counts produce requests, and batches sent again (same topic, partition, producer id,
    epoch and base sequence as one seen before); keeps the decoded dropped responses."""

    def __init__(self, drop):
        self.drop = frozenset(drop)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.upstream_port = None
        self.lock = threading.Lock()
        self.produce_requests = 0
        self.dropped = []  # (ordinal, [(topic, partition, error code, base offset)])
        self.batches_seen = set()
        self.batches_resent = 0
        self.errors = []
        self._stop = threading.Event()
        self._links = []
        self._threads = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, upstream_port):
        self.upstream_port = upstream_port
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        """Closes the listener and every connection, then joins all threads."""
        self._stop.set()
        self.listener.close()
        with self.lock:
            accept = self._threads[:1]
        for t in accept:
            t.join(10)  # no new connections after this
        with self.lock:
            links, threads = list(self._links), list(self._threads)
        for link in links:
            link.close()
        for t in threads:
            t.join(10)
        stuck = [t for t in threads if t.is_alive()]
        assert not stuck, f"{len(stuck)} proxy threads still running"

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self.lock:
                self._links.append(link)
            self._spawn(self._requests, link)
            self._spawn(self._responses, link)

    def _requests(self, link):
        try:
            while True:
                frame = _read_frame(link.client)
                if frame is None:
                    break
                api_key, api_version, cid = struct.unpack(">hhi", frame[:8])
                drop = False
                if api_key == PRODUCE:
                    with self.lock:
                        self.produce_requests += 1
                        drop = self.produce_requests in self.drop
                        ordinal = self.produce_requests
                        self._note_batches(frame, api_version)
                    # Registered before the request goes on, so the response finds it.
                    link.pending[cid] = (api_key, api_version, drop, ordinal)
                link.upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            link.close()

    def _responses(self, link):
        try:
            while True:
                frame = _read_frame(link.upstream)
                if frame is None:
                    break
                (cid,) = struct.unpack(">i", frame[:4])
                info = link.pending.pop(cid, None)
                if info is not None and info[2]:
                    self._record_drop(info, frame)
                    break  # the client never gets this response; both sides close below
                link.client.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            link.close()

    def _note_batches(self, frame, version):
        """Called with self.lock held."""
        try:
            req = ProduceRequest.decode(frame, version=version, header=True)
            for td in req.topic_data:
                topic = td.name if version < 13 else td.topic_id
                for pd in td.partition_data:
                    records = bytes(pd.records or b"")
                    if len(records) < BATCH_PRODUCER_ID + 14:
                        continue
                    pid, epoch, seq = struct.unpack(">qhi", records[BATCH_PRODUCER_ID:BATCH_PRODUCER_ID + 14])
                    key = (topic, pd.index, pid, epoch, seq)
                    if key in self.batches_seen:
                        self.batches_resent += 1
                    self.batches_seen.add(key)
        except Exception as e:  # reported by the test
            self.errors.append(f"cannot decode Produce v{version} request: {e!r}")

    def _record_drop(self, info, frame):
        _, version, _, ordinal = info
        try:
            resp = ProduceResponse.decode(frame, version=version, header=True)
            parts = [(tr.name if version < 13 else tr.topic_id, pr.index, pr.error_code, pr.base_offset)
                     for tr in resp.responses for pr in tr.partition_responses]
        except Exception as e:
            parts = None
            with self.lock:
                self.errors.append(f"cannot decode Produce v{version} response: {e!r}")
        with self.lock:
            self.dropped.append((ordinal, parts))


@pytest.fixture
def proxied(broker_factory):
    """start(drop) -> (broker, proxy): a DroppingProxy and a broker advertising the proxy's
    address (advertised.listeners), so every client connection after bootstrap goes
    through the proxy too. The proxy binds its port before the broker starts and is
    pointed at the broker once it runs; proxies are stopped at teardown, before the
    brokers."""
    proxies = []

    def start(drop):
        proxy = DroppingProxy(drop)
        proxies.append(proxy)
        b = broker_factory(overrides={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}"})
        proxy.start(b.port)
        return b, proxy

    yield start
    for p in proxies:
        p.stop()


# ----------------------------------------------------------------------------- checks


def check_exactly_once(bootstrap, topic, partitions, sent, reports):
    """`sent`: {partition: [value, ...]} in the order the producer was given them;
    `reports`: {value: (partition, offset)} from delivery reports. Every partition holds
    exactly its values, once each, in send order, at the offsets the reports named."""
    total = 0
    for p in range(partitions):
        values = sent.get(p, [])
        total += len(values)
        assert watermarks(bootstrap, topic, p) == (0, len(values)), f"partition {p}"
        stored = read_partition(bootstrap, topic, p, 0, len(values), timeout=90)
        assert len(stored) == len(values), f"partition {p}: {len(stored)} records, want {len(values)}"
        got = [stored[o][1] for o in range(len(values))]
        if got != values:
            first = next(i for i, (a, b) in enumerate(zip(got, values)) if a != b)
            raise AssertionError(f"partition {p}: offset {first} holds {got[first]!r}, want {values[first]!r} "
                                 f"(duplicates: {len(got) - len(set(got))})")
        wrong = [(v, reports[v], (p, o)) for o, v in enumerate(values) if reports[v] != (p, o)]
        assert not wrong, f"delivery reports name other offsets than where records are, first {wrong[:5]}"
    return total


def check_proxy(proxy, want_drops):
    assert not proxy.errors, proxy.errors
    assert proxy.produce_requests > max(proxy.drop), (
        f"only {proxy.produce_requests} produce requests: the drops at {sorted(proxy.drop)} did not all happen")
    assert sorted(o for o, _ in proxy.dropped) == sorted(proxy.drop)
    for ordinal, parts in proxy.dropped:
        # The broker had appended the request whose response was dropped.
        assert parts and all(err == 0 and base >= 0 for _t, _p, err, base in parts), (ordinal, parts)
    assert proxy.batches_resent >= want_drops, (
        f"only {proxy.batches_resent} batches were sent again after {want_drops} dropped responses")


# ----------------------------------------------------------------------------- through the proxy


def test_confluent_idempotent_producer_survives_lost_responses(proxied):
    """confluent-kafka, enable.idempotence=true, acks=all, 20,000 keyed records with unique
    values over 3 partitions, small batches (hundreds of produce requests). The proxy drops
    the responses of produce requests 3, 10, 25, 60 and 120 after the broker appended
    them, closing the connection each time; librdkafka sends those batches (and any
    others in flight) again with the same producer id and sequences. Every delivery
    succeeds and every record is in the log exactly once, in order, at its reported
    offset."""
    _broker, proxy = proxied({3, 10, 25, 60, 120})
    topic = "idem-confluent"
    create_topic(proxy.bootstrap, topic, 3)
    n = 20_000
    errors, fatal, reports, sent = [], [], {}, {}

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    p = Producer({
        "bootstrap.servers": proxy.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "batch.num.messages": 50,
        "compression.type": "none",
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "error_cb": on_error,
    })

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[msg.value()] = (msg.partition(), msg.offset())

    try:
        deadline = time.monotonic() + 120
        for i in range(n):
            value = b"idem-%06d" % i
            while True:
                try:
                    p.produce(topic, key=b"k%d" % (i % 97), value=value, on_delivery=cb)
                    break
                except BufferError:
                    assert time.monotonic() < deadline
                    p.poll(0.05)
            if i % 200 == 0:
                p.poll(0)
        assert p.flush(max(1.0, deadline - time.monotonic())) == 0
    finally:
        close_producer(p)
    assert not fatal, fatal
    assert not errors, errors[:5]
    assert len(reports) == n
    for value in sorted(reports):  # values are numbered in send order
        sent.setdefault(reports[value][0], []).append(value)
    check_proxy(proxy, want_drops=5)
    proxy.drop = frozenset()
    assert check_exactly_once(proxy.bootstrap, topic, 3, sent, reports) == n


def test_kafka_python_idempotent_producer_survives_lost_responses(proxied):
    """kafka-python, enable_idempotence=True, acks=all, 8,000 records with unique values
    over 3 partitions. max_in_flight_requests_per_connection=1: kafka-python puts a
    failed batch back at the front of its queue one by one, which with several requests
    in flight would reverse their order; with one, each lost response is retried alone.
    The proxy drops the responses of produce requests 2, 5 and 9 after the broker
    appended them; every record ends up in the log exactly once, in order, at the offset
    its future returned."""
    _broker, proxy = proxied({2, 5, 9})
    topic = "idem-kp"
    create_topic(proxy.bootstrap, topic, 3)
    n = 8_000
    prod = kp_producer(proxy.bootstrap, enable_idempotence=True, acks="all", retries=2**31 - 1,
                       max_in_flight_requests_per_connection=1, linger_ms=2, batch_size=4096,
                       delivery_timeout_ms=120000, request_timeout_ms=30000,
                       retry_backoff_ms=50, reconnect_backoff_ms=50)
    try:
        futures = [(b"kp-%06d" % i, prod.send(topic, key=b"k%d" % (i % 89), value=b"kp-%06d" % i))
                   for i in range(n)]
        prod.flush(timeout=120)
        reports = {}
        for value, f in futures:
            md = f.get(timeout=1)
            reports[value] = (md.partition, md.offset)
    finally:
        prod.close(timeout=10)
    sent = {}
    for value in sorted(reports):
        sent.setdefault(reports[value][0], []).append(value)
    check_proxy(proxy, want_drops=3)
    proxy.drop = frozenset()
    assert check_exactly_once(proxy.bootstrap, topic, 3, sent, reports) == n


# ----------------------------------------------------------------------------- broker restarts


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
def test_producer_state_survives_broker_restart(broker_factory, stop):
    """An idempotent confluent-kafka producer writes 30,000 records; after 10,000
    acknowledgements, with requests still in flight, the broker is killed (SIGKILL: its
    producer state is rebuilt from the log; SIGTERM: from the snapshot written at
    shutdown) and restarted on the same port while the producer keeps going. Batches the
    old broker appended but did not acknowledge come again and must be recognised:
    every record is delivered, no fatal idempotence error, each exactly once, in order."""
    b = broker_factory()
    topic = "idem-restart"
    create_topic(b, topic, 3)
    n = 30_000
    errors, fatal, reports = [], [], {}

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[msg.value()] = (msg.partition(), msg.offset())

    p = Producer({
        "bootstrap.servers": b.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 200,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "error_cb": on_error,
    })
    restarted = False
    try:
        deadline = time.monotonic() + 120
        for i in range(n):
            while True:
                try:
                    p.produce(topic, key=b"r%d" % (i % 101), value=b"restart-%06d" % i, on_delivery=cb)
                    break
                except BufferError:
                    assert time.monotonic() < deadline
                    p.poll(0.05)
            p.poll(0)
            if not restarted and i == 15_000:
                # Wait (bounded) for 10,000 acknowledgements; the rest stay in flight.
                while len(reports) < 10_000:
                    assert time.monotonic() < deadline, f"only {len(reports)} acknowledgements"
                    p.poll(0.05)
                if stop == "sigkill":
                    b.kill()
                else:
                    assert b.stop() == 0
                b.start()
                restarted = True
        assert restarted, f"only {len(reports)} acknowledgements"
        assert p.flush(max(1.0, deadline - time.monotonic())) == 0
    finally:
        close_producer(p)
    assert not fatal, fatal
    assert not errors, errors[:5]
    assert len(reports) == n
    sent = {}
    for value in sorted(reports):
        sent.setdefault(reports[value][0], []).append(value)
    assert check_exactly_once(b, topic, 3, sent, reports) == n


# ----------------------------------------------------------------------------- raw protocol


def init_producer_id(conn, version):
    r = conn.call(InitProducerIdRequest(version=version, transactional_id=None, transaction_timeout_ms=60000,
                                        producer_id=-1, producer_epoch=-1))
    return r.error_code, r.producer_id, r.producer_epoch


def test_init_producer_id_all_versions(broker):
    """InitProducerId v0-v4 (v2+ flexible) without a transactional id: each answers with
    no error, a producer id >= 0 and epoch 0; all ids differ, also from those handed out
    after a broker restart (clean or not)."""
    lo, hi = rawkafka.api_versions(broker.port)[rawkafka.INIT_PRODUCER_ID]
    assert lo == 0 and hi >= 4, (lo, hi)
    ids = []
    with rawkafka.Connection(broker.port) as conn:
        for v in range(5):
            err, pid, epoch = init_producer_id(conn, v)
            assert (err, epoch) == (0, 0) and pid >= 0, (v, err, pid, epoch)
            ids.append(pid)
    assert len(set(ids)) == 5, ids
    for restart in ("sigkill", "sigterm"):
        if restart == "sigkill":
            broker.kill()
        else:
            assert broker.stop() == 0
        broker.start()
        with rawkafka.Connection(broker.port) as conn:
            for v in (0, 4):
                err, pid, epoch = init_producer_id(conn, v)
                assert (err, epoch) == (0, 0) and pid >= 0
                assert pid not in ids, f"producer id {pid} handed out again after a {restart} restart"
                ids.append(pid)


def test_sequence_and_epoch_checks(broker):
    """Hand-built idempotent batches (Produce v3) of a producer id from InitProducerId:
    - seq 0-4 appends at 0; the same batch again is a duplicate: NONE with base offset 0,
      nothing appended; after seq 5-9 it is still recognised (one of the last five);
    - a gap (seq 20 after 9): OUT_OF_ORDER_SEQUENCE_NUMBER, nothing appended;
    - a higher epoch starting at seq 0 (what a producer does after bumping its epoch) is
      appended; a batch of the older epoch is then INVALID_PRODUCER_EPOCH;
    - after a SIGKILL and restart the broker still knows the producer (duplicate
      recognised, gap refused, next sequence appended);
    - a plain batch (no producer id) is unaffected.
    The log holds exactly the appended records, in order."""
    topic = "seq"
    create_topic(broker, topic)
    with rawkafka.Connection(broker.port) as conn:
        err, pid, epoch = init_producer_id(conn, 1)
    assert (err, epoch) == (0, 0)
    ts = now_ms()
    stored = []

    def batch(seq, count, epoch=0, tag=b"s"):
        recs = [(b"k%d" % (seq + i), b"%s-e%d-seq%d" % (tag, epoch, seq + i)) for i in range(count)]
        return recs, rawkafka.record_batch(recs, ts, producer_id=pid, producer_epoch=epoch, base_sequence=seq)

    cid = [0]

    def send(records):
        cid[0] += 1
        got_cid, r = rawkafka.call(broker.port, rawkafka.produce_request_v3(cid[0], topic, 0, records))
        assert got_cid == cid[0]
        return rawkafka.parse_produce_response_v3(r)[(topic, 0)]

    def end():
        return watermarks(broker, topic, 0)[1]

    r0, b0 = batch(0, 5)
    assert send(b0) == (0, 0)
    stored += r0
    assert send(b0) == (0, 0), "a resent batch gets its original base offset"
    assert end() == 5
    r1, b1 = batch(5, 5)
    assert send(b1) == (0, 5)
    stored += r1
    assert send(b0) == (0, 0)
    assert send(b1) == (0, 5)
    assert end() == 10

    _, gap = batch(20, 3)
    assert send(gap) == (rawkafka.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    assert end() == 10

    r2, e1 = batch(0, 5, epoch=1)
    assert send(e1) == (0, 10)
    stored += r2
    _, stale = batch(10, 2, epoch=0)
    assert send(stale) == (rawkafka.INVALID_PRODUCER_EPOCH, -1)
    assert end() == 15

    broker.kill()
    broker.start()
    assert send(e1) == (0, 10), "the restarted broker must still know the producer's last batches"
    _, gap = batch(7, 2, epoch=1)
    assert send(gap) == (rawkafka.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    _, stale = batch(10, 2, epoch=0)
    assert send(stale) == (rawkafka.INVALID_PRODUCER_EPOCH, -1)
    r3, e1b = batch(5, 4, epoch=1)
    assert send(e1b) == (0, 15)
    stored += r3

    plain_recs = [(b"plain", b"no producer id")]
    assert send(rawkafka.record_batch(plain_recs, ts)) == (0, 19)
    stored += plain_recs
    assert end() == 20
    got = read_records(broker, topic, 0, 0, 20)
    assert [(o, k, v) for o, k, v in got] == [(o, k, v) for o, (k, v) in enumerate(stored)]


def test_plain_and_idempotent_producers_share_a_partition(broker):
    """A plain and an idempotent confluent-kafka producer write to the same partition in
    turns: every write succeeds at the next offset and the log holds them in order (the
    sequence checks apply per producer id; batches without one are never checked)."""
    topic = "mixed"
    create_topic(broker, topic)
    results = []

    def cb(err, msg):
        results.append((err, msg.value(), msg.offset()))

    plain = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": False})
    idem = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True})
    try:
        for i in range(20):
            for name, p in ((b"plain", plain), (b"idem", idem)):
                p.produce(topic, value=b"%s-%d" % (name, i), partition=0, on_delivery=cb)
                assert p.flush(15) == 0
    finally:
        close_producer(plain)
        close_producer(idem)
    assert [e for e, _, _ in results] == [None] * 40
    assert [(v, o) for _, v, o in results] == [
        (b"%s-%d" % (name, i), 2 * i + j) for i in range(20) for j, name in enumerate((b"plain", b"idem"))]
    assert [v for _, _, v in read_records(broker, topic, 0, 0, 40)] == [v for _, v, _ in results]
