"""Multi-broker clusters: replication, failover, the metadata quorum.

Brokers are real processes on 127.0.0.2, .3, ... (see conftest.Cluster), with failure
detection shortened to seconds. Failures are simulated with SIGKILL (crash) and SIGSTOP
(a hung process: it neither answers nor heartbeats). Network partitions, where the
process keeps running, are in test_partitions.py (a network namespace per broker).
"""

import random
import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition

from conftest import BINARY
from kafkautil import wait_for


def bootstrap(c) -> str:
    """A cluster's, a broker's, or a "host:port,..." bootstrap address."""
    return c if isinstance(c, str) else c.bootstrap


def admin(c) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap(c)})


def create(c, name, partitions=3, rf=3, config=None, timeout=30):
    a = admin(c)
    fs = a.create_topics(
        [NewTopic(name, partitions, rf, config=dict(config or {}))],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    fs[name].result(timeout)
    assert wait_for(lambda: all(p.leader >= 0 for p in partitions_of(c, name).values()), 30)


def partitions_of(c, topic):
    md = admin(c).list_topics(topic=topic, timeout=10)
    return md.topics[topic].partitions


def leader_of(c, topic, partition):
    return partitions_of(c, topic)[partition].leader


def in_sync(c, topic, replicas=3):
    """Every partition has a leader and all `replicas` replicas in its ISR."""
    try:
        return all(p.leader >= 0 and len(p.isrs) == replicas for p in partitions_of(c, topic).values())
    except Exception:
        return False


def controller_of(c):
    return admin(c).list_topics(timeout=10).controller_id


class Writer(threading.Thread):
    """An idempotent acks=all producer writing "<seq>" values round-robin until stopped;
    records every acknowledged (partition, offset, value)."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.acked = []
        self.errors = []
        self.stop_flag = threading.Event()
        self.p = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        })

    def run(self):
        seq = 0
        while not self.stop_flag.is_set():
            value = str(seq).encode()

            def cb(err, msg, value=value):
                if err is None:
                    self.acked.append((msg.partition(), msg.offset(), msg.value()))
                else:
                    self.errors.append(err)

            try:
                self.p.produce(self.topic, value=value, on_delivery=cb)
                seq += 1
            except BufferError:
                pass
            self.p.poll(0.002)
        self.p.flush(60)

    def stop(self):
        self.stop_flag.set()
        self.join(90)
        assert not self.is_alive(), "producer did not finish"


class Reader(threading.Thread):
    """A group consumer counting what it receives, and when."""

    def __init__(self, bootstrap, topic, group):
        super().__init__(daemon=True)
        self.received = 0
        self.last = 0.0
        self.stop_flag = threading.Event()
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000,
        })
        self.c.subscribe([topic])

    def run(self):
        while not self.stop_flag.is_set():
            for m in self.c.consume(500, timeout=0.2):
                if m.error() is None:
                    self.received += 1
                    self.last = time.monotonic()
        self.c.close()

    def stop(self):
        self.stop_flag.set()
        self.join(30)


def read_all(bootstrap, topic, partition, end, timeout=60):
    """(offset, value) of every record below `end`."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "verify",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    })
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        out = []
        deadline = time.monotonic() + timeout
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.value()))
        return out
    finally:
        c.close()


def check_acknowledged(c, w, topic, partitions):
    """Every record `w` had acknowledged is in `topic` where its acknowledgement said,
    exactly once (the idempotent producer's retries left no duplicates), and every
    partition holds the producer's records in the order it sent them."""
    by_partition = {}
    for p, o, v in w.acked:
        by_partition.setdefault(p, []).append((o, v))
    assert len(by_partition) == partitions, sorted(by_partition)
    for p, acked in by_partition.items():
        acked.sort()
        log = read_all(c.bootstrap, topic, p, acked[-1][0] + 1)
        stored = dict(log)
        missing = [(o, v) for o, v in acked if stored.get(o) != v]
        assert not missing, f"partition {p}: {len(missing)} acknowledged records lost, e.g. {missing[:3]}"
        values = [v for _, v in log]
        assert len(values) == len(set(values)), f"partition {p} holds duplicates"
        seqs = [int(v) for v in values]
        assert seqs == sorted(seqs), f"partition {p} is out of order"


def progress(writer, amount, timeout):
    """Waits until the writer got `amount` more acknowledgements."""
    start = len(writer.acked)
    assert wait_for(lambda: len(writer.acked) >= start + amount, timeout), (
        f"producer stalled at {len(writer.acked)} acks; errors: {writer.errors[-3:]}"
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_no_acknowledged_record_is_lost_across_failures(cluster_factory, seed):
    rnd = random.Random(seed)
    c = cluster_factory(3)
    create(c, "orders", partitions=3, rf=3, config={"min.insync.replicas": "2"})
    w = Writer(c.bootstrap, "orders")
    r = Reader(c.bootstrap, "orders", "readers")
    w.start()
    r.start()
    try:
        progress(w, 2000, 60)
        # Crash the leader of a random partition.
        victim_id = leader_of(c, "orders", rnd.randrange(3))
        victim = c.brokers[victim_id]
        victim.kill()
        progress(w, 2000, 60)
        received_after_crash = r.received
        assert wait_for(lambda: r.received > received_after_crash + 500, 60), "consumer stalled"
        victim.start()
        assert wait_for(lambda: in_sync(c, "orders"), 60), partitions_of(c, "orders")
        # Hang another broker past its session timeout, then let it go on.
        hung = c.brokers[rnd.choice([b for b in range(3) if b != victim_id])]
        hung.pause()
        time.sleep(3.5)
        progress(w, 1000, 60)
        hung.resume()
        progress(w, 1000, 60)
    finally:
        w.stop()
        r.stop()
    assert r.received > 0
    assert wait_for(lambda: in_sync(c, "orders"), 60), partitions_of(c, "orders")
    check_acknowledged(c, w, "orders", 3)


def test_restarted_and_wiped_brokers_catch_up(cluster_factory):
    c = cluster_factory(3)
    create(c, "t", partitions=2, rf=3)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})

    def write(n, tag):
        for i in range(n):
            p.produce("t", value=b"%s-%d" % (tag, i) + b"x" * 200, partition=i % 2)
        assert p.flush(60) == 0

    write(2000, b"a")
    b2 = c.brokers[2]
    b2.stop()
    write(3000, b"b")
    assert wait_for(lambda: all(len(x.isrs) == 2 for x in partitions_of(c, "t").values()), 30)
    b2.start()
    assert wait_for(lambda: in_sync(c, "t"), 60), partitions_of(c, "t")

    def log_bytes(b, part):
        return sum(f.stat().st_size for f in (b.data_dir / f"t-{part}").glob("*.log"))

    # Followers store the leader's batches byte for byte.
    for part in range(2):
        assert wait_for(lambda: log_bytes(b2, part) == log_bytes(c.brokers[0], part) > 0, 30)

    # A lost disk: the broker comes back empty and copies everything again.
    b2.kill()
    shutil.rmtree(b2.data_dir)
    write(1000, b"c")
    b2.start()
    assert wait_for(lambda: in_sync(c, "t"), 60), partitions_of(c, "t")
    for part in range(2):
        assert wait_for(lambda: log_bytes(b2, part) == log_bytes(c.brokers[0], part) > 0, 30)
    # It can lead with that copy: moved off broker 0 with broker 2 as the preferred
    # leader, and broker 0 stopped, every record of partition 0 is read back from it.
    k = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    try:
        k.alter_partition_reassignments({KTopicPartition("t", 0): [2, 1]})
    finally:
        k.close()
    assert wait_for(lambda: partitions_of(c, "t")[0].replicas == [2, 1], 30)
    a = admin(c)  # kept alive until the result arrives
    a.elect_leaders(ElectionType.PREFERRED, [TopicPartition("t", 0)]).result(30)
    assert wait_for(lambda: leader_of(c, "t", 0) == 2, 30)
    c.brokers[0].stop()
    log = read_all(b2.bootstrap, "t", 0, 3000)
    assert len(log) == 3000 and log[-1][1].startswith(b"c-")


def test_controller_failover_keeps_admin_working(cluster_factory):
    c = cluster_factory(3)
    create(c, "before", partitions=1, rf=3)
    old = controller_of(c)
    assert 0 <= old <= 2
    c.brokers[old].kill()
    rest = ",".join(b.bootstrap for b in c.alive())

    def new_controller():
        # Elected, and the dead broker fenced (no longer listed) after its session timeout.
        try:
            md = admin(rest).list_topics(timeout=5)
            return md.controller_id not in (old, -1) and old not in md.brokers
        except Exception:
            return False

    assert wait_for(new_controller, 15)
    start = time.monotonic()
    a = AdminClient({"bootstrap.servers": rest})
    fs = a.create_topics([NewTopic("after", 2, 2)], operation_timeout=30, request_timeout=30)
    fs["after"].result(30)
    assert time.monotonic() - start < 15
    md = a.list_topics(topic="after", timeout=10)
    assert all(p.leader >= 0 and p.leader != old for p in md.topics["after"].partitions.values())


def test_controlled_shutdown_moves_leadership_first(cluster_factory):
    c = cluster_factory(3)
    create(c, "t", partitions=6, rf=3)
    b0 = c.brokers[0]
    led = [p for p, x in partitions_of(c, "t").items() if x.leader == 0]
    assert led
    assert b0.stop() == 0
    log = b0.log_text()
    assert "controlled shutdown" in log
    parts = partitions_of(",".join(b.bootstrap for b in c.alive()), "t")
    assert all(x.leader in (1, 2) for x in parts.values()), parts
    # Leadership moved during the shutdown, not after a session timeout.
    assert all(0 not in x.isrs for x in parts.values())


def test_learner_broker_joins_and_hosts_replicas(cluster_factory):
    c = cluster_factory(3)
    b3 = c.add_broker()
    md = admin(c).list_topics(timeout=10)
    assert sorted(md.brokers) == [0, 1, 2, 3]
    a = admin(c)
    fs = a.create_topics([NewTopic("wide", 4, 4)], operation_timeout=30, request_timeout=30)
    fs["wide"].result(30)
    assert wait_for(lambda: in_sync(c, "wide", replicas=4), 30)
    p = Producer({"bootstrap.servers": b3.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("wide", value=b"%d" % i, partition=i % 4)
    assert p.flush(30) == 0
    log = read_all(b3.bootstrap, "wide", 3, 25)
    assert len(log) == 25


def test_quorum_voters_can_be_replaced(cluster_factory):
    from test_rebalance import sluice_admin

    c = cluster_factory(3)
    c.add_broker()
    status = sluice_admin(c, "status")
    assert sorted(status["quorum"]["voters"]) == [0, 1, 2]
    # Broker 3 votes instead of broker 2 (asked through a non-leader: forwarded).
    leader = status["quorum"]["leader"]
    via = next(b for b in (0, 1, 3) if b != leader)
    out = sluice_admin(c, "voters", "0,1,3", broker=via)
    assert sorted(out["voters"]) == [0, 1, 3] and 2 in out["learners"]
    # Broker 2 no longer votes: with 2 and 0 gone, voters 1 and 3 are still a majority of
    # {0, 1, 3}, elect a controller and take changes.
    c.brokers[2].kill()
    c.brokers[0].kill()
    rest = ",".join(b.bootstrap for b in c.alive())

    def topic_created():
        try:
            a = AdminClient({"bootstrap.servers": rest})
            a.create_topics([NewTopic("after", 1, 2)], operation_timeout=10,
                            request_timeout=10)["after"].result(15)
            return True
        except Exception:
            return False

    assert wait_for(topic_created, 30, interval=1)
    bad = subprocess.run(
        [str(BINARY), "admin", "--server", f"{c.brokers[1].host}:{c.internal[1]}", "voters", "1,9"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode != 0 and "not a member" in bad.stderr, bad.stderr


def test_metadata_snapshots_serve_late_learners_and_restarts(cluster_factory):
    # A snapshot every 5 metadata entries, and only 5 kept after it: a broker joining
    # later can only catch up from a snapshot.
    c = cluster_factory(3, overrides={"metadata.log.snapshot.interval.entries": "5"})
    for i in range(8):
        create(c, f"s{i}", partitions=1, rf=2)
    assert wait_for(lambda: all((b.data_dir / "__sluice_metadata" / "snapshot.json").exists()
                                for b in c.brokers), 30)
    b3 = c.add_broker()
    md = admin(b3.bootstrap).list_topics(timeout=10)
    assert all(f"s{i}" in md.topics for i in range(8)) and 3 in md.brokers
    a = admin(c)
    a.create_topics([NewTopic("late", 4, 4)], operation_timeout=30, request_timeout=30)["late"].result(30)
    assert wait_for(lambda: in_sync(c, "late", replicas=4), 30)
    # A voter restarts from its snapshot plus the log after it.
    c.brokers[1].stop()
    c.brokers[1].start()
    md = admin(c.brokers[1].bootstrap).list_topics(timeout=10)
    assert "late" in md.topics and all(f"s{i}" in md.topics for i in range(8))
    assert wait_for(lambda: in_sync(c, "late", replicas=4), 30)
