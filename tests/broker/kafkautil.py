"""Helpers shared by the broker tests: topics, producing with delivery reports, reading a
partition back, watermarks, Prometheus metrics and waiting for a condition.

`b` is a conftest Broker or a bootstrap address ("host:port"). Nothing here starts or
stops brokers. Every loop is bounded by a deadline, and reads also by a record count.
"""

import re
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def bootstrap_of(b) -> str:
    """The bootstrap address of a Broker, or `b` itself when it already is one."""
    return b if isinstance(b, str) else b.bootstrap


# ----------------------------------------------------------------------------- topics


def admin(b) -> AdminClient:
    """A confluent-kafka AdminClient for `b`."""
    return AdminClient({"bootstrap.servers": bootstrap_of(b)})


def create_topic(b, name, partitions=1, config=None, timeout=30):
    """Creates a topic with replication factor 1 and waits until Metadata shows every
    partition with a leader. Returns None; raises if the creation fails."""
    a = admin(b)  # keep a reference: the futures fail if the client is destroyed
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    fs[name].result(timeout)
    wait_for_topic(b, name, partitions)


def wait_for_topic(b, name, partitions, timeout=30):
    """Returns None once Metadata shows every partition of the topic with a leader;
    fails after `timeout` s."""
    a = admin(b)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        last = t
        if t is not None and t.error is None and len(t.partitions) == partitions:
            if all(p.leader >= 0 for p in t.partitions.values()):
                return
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last}")


# ----------------------------------------------------------------------------- producing


def producer(b, **conf) -> Producer:
    """A confluent-kafka Producer with acks=all, idempotence off and linger.ms=5;
    `conf` adds or overrides settings."""
    return Producer({
        "bootstrap.servers": bootstrap_of(b),
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
        **conf,
    })


def close_producer(p):
    """Closes a confluent-kafka producer without waiting on anything still queued (a test
    that failed mid-way may leave messages behind), so it stops reconnecting to a broker
    the fixture has already stopped. Returns None."""
    p.purge()
    p.poll(0)
    p.close()


def _partition_offset(msg):
    return msg.partition(), msg.offset()


def produce(b, topic, records, partition=None, timestamps=None, headers=None, timeout=120,
            report=_partition_offset, **conf):
    """Produces `records` (each a value, or a (key, value) pair) with producer(b, **conf)
    and waits for every delivery, asserting none failed. `timestamps` and `headers` give
    one entry per record (a None timestamp leaves it to the client).

    Returns one delivery report per record, in record order: report(message), by default
    (partition, offset)."""
    p = producer(b, **conf)
    reports = [None] * len(records)
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                reports[i] = report(msg)

        return cb

    deadline = time.monotonic() + timeout
    try:
        for i, r in enumerate(records):
            key, value = r if isinstance(r, tuple) else (None, r)
            kwargs = {"key": key, "value": value, "on_delivery": on_delivery(i)}
            if partition is not None:
                kwargs["partition"] = partition
            if timestamps is not None and timestamps[i] is not None:
                kwargs["timestamp"] = timestamps[i]
            if headers is not None:
                kwargs["headers"] = headers[i]
            while True:
                try:
                    p.produce(topic, **kwargs)
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "producer queue stayed full until the deadline"
                    p.poll(0.05)
            if i % 1000 == 0:
                p.poll(0)
        remaining = p.flush(max(1.0, deadline - time.monotonic()))
    finally:
        close_producer(p)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[:5]}"
    missing = [i for i, r in enumerate(reports) if r is None]
    assert not missing, f"no delivery report for {len(missing)} records, first {missing[:5]}"
    return reports


# ----------------------------------------------------------------------------- consuming


def consumer(b, **conf) -> Consumer:
    """A confluent-kafka Consumer for manually assigned partitions: no offset commits, no
    partition EOF events, auto.offset.reset=error; `conf` adds or overrides settings."""
    return Consumer({
        "bootstrap.servers": bootstrap_of(b),
        # Only used for offset commits, which these tests never do.
        "group.id": "sluice-tests",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        **conf,
    })


def read_records(b, topic, partition, start, count, timeout=60, **conf):
    """Assigns one partition at offset `start` and collects records until `count` have
    arrived or `timeout` s have passed; fails on any error event.
    Returns [(offset, key, value)] in the order received."""
    c = consumer(b, **conf)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(num_messages=min(1000, count - len(out)), timeout=1):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def read_partition(b, topic, partition, start, count, timeout=60, **conf):
    """read_records() as {offset: (key, value)}."""
    return {o: (k, v) for o, k, v in read_records(b, topic, partition, start, count, timeout, **conf)}


def watermarks(b, topic, partition, timeout=10):
    """Returns the partition's (low, high) watermark offsets."""
    c = consumer(b)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
    finally:
        c.close()


# ----------------------------------------------------------------------------- metrics, waiting

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)")


def metric(text, name, default=None, **labels):
    """Returns the value (a float) of the sample `name` with exactly `labels`, given in
    exposition order, in Prometheus/OpenMetrics text; `default` if there is none."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return default


def wait_for(predicate, timeout, interval=0.1):
    """Calls `predicate` every `interval` s until it is true or `timeout` s have passed.
    Returns True once it was true, else its last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
