"""Moving replicas: Kafka's reassignment and leader election APIs, the admin API's
Rebalance and DrainBroker (through `sluice-broker admin`), the replication throttle, and
tiered storage (a new replica copies only the local tail).

Clusters are real broker processes on 127.0.0.2, .3, ... (conftest.Cluster) driven by
kafka-python and confluent-kafka while they move.
"""

import json
import subprocess
import time
from collections import Counter

from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition

from conftest import BINARY
from kafkautil import wait_for
from test_replication import Reader, Writer, admin, create, in_sync, partitions_of, read_all

MIB = 1 << 20

# Leadership returns to preferred replicas within a second (Kafka checks every 300 s).
FAST = {"leader.imbalance.check.interval.seconds": "1"}


def sluice_admin(c, *args, broker=0):
    """`sluice-broker admin` against a broker's internal listener; returns the JSON."""
    b = c.brokers[broker]
    out = subprocess.run(
        [str(BINARY), "admin", "--server", f"{b.host}:{c.internal[broker]}", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def moves_done(c):
    return sluice_admin(c, "progress")["moving"] == []


def spread(c, topics):
    """(replicas per broker, preferred leaders per broker, leaders per broker)."""
    replicas, preferred, leaders = Counter(), Counter(), Counter()
    for t in topics:
        for p in partitions_of(c, t).values():
            replicas.update(p.replicas)
            preferred[p.replicas[0]] += 1
            leaders[p.leader] += 1
    return replicas, preferred, leaders


def within_one(counter, brokers):
    values = [counter.get(b, 0) for b in brokers]
    return max(values) - min(values) <= 1


def test_rebalance_onto_a_new_broker(cluster_factory):
    c = cluster_factory(3, overrides=FAST)
    create(c, "a", partitions=12, rf=3)
    create(c, "b", partitions=5, rf=2)
    w = Writer(c.bootstrap, "a")
    r = Reader(c.bootstrap, "a", "g")
    w.start()
    r.start()
    try:
        wait_for(lambda: len(w.acked) > 2000, 60)
        c.add_broker()
        dry = sluice_admin(c, "rebalance", "--dry-run")
        assert not dry["executed"] and dry["moves"]
        # Every topic counts, __consumer_offsets included: within one of each other.
        after = [dry["after"][b]["replicas"] for b in ("0", "1", "2", "3")]
        assert max(after) - min(after) <= 1 and dry["before"]["3"]["replicas"] == 0, dry["after"]
        plan = sluice_admin(c, "rebalance", broker=1)
        assert plan["executed"]
        assert wait_for(lambda: moves_done(c), 90), sluice_admin(c, "progress")
        brokers = [0, 1, 2, 3]
        assert wait_for(lambda: within_one(spread(c, ["a", "b"])[0], brokers), 30), spread(c, ["a", "b"])
        assert wait_for(lambda: within_one(spread(c, ["a", "b"])[2], brokers), 30), spread(c, ["a", "b"])
        assert within_one(spread(c, ["a", "b"])[1], brokers)
        assert wait_for(lambda: in_sync(c, "a") and in_sync(c, "b", replicas=2), 60)
        # Clients were unaffected: both kept going through the moves.
        acked, received = len(w.acked), r.received
        assert wait_for(lambda: len(w.acked) > acked + 1000 and r.received > received + 1000, 60)
        # A second run finds nothing to do.
        assert sluice_admin(c, "rebalance", "--dry-run")["moves"] == []
    finally:
        w.stop()
        r.stop()
    assert not [e for e in w.errors if not e.retriable()], w.errors[:3]
    # Nothing acknowledged was lost in the moves.
    for p in range(12):
        acked = sorted((o, v) for q, o, v in w.acked if q == p and o is not None)
        # librdkafka may report a delivery without its offset (seen once in a rebalance
        # run, not reproduced): such records must still be in the partition, by value.
        unplaced = [v for q, o, v in w.acked if q == p and o is None]
        if acked or unplaced:
            end = acked[-1][0] + 1 if acked else 0
            if unplaced:
                probe = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "verify"})
                try:
                    end = probe.get_watermark_offsets(TopicPartition("a", p), timeout=30)[1]
                finally:
                    probe.close()
            stored = dict(read_all(c.bootstrap, "a", p, end))
            assert all(stored.get(o) == v for o, v in acked), f"partition {p} lost records"
            values = set(stored.values())
            assert all(v in values for v in unplaced), f"partition {p} lost records acknowledged without an offset"


def test_drain_broker(cluster_factory):
    c = cluster_factory(3, overrides=FAST)
    c.add_broker()
    create(c, "t", partitions=8, rf=3)
    replicas, _, _ = spread(c, ["t"])
    assert replicas[3] > 0
    w = Writer(c.bootstrap, "t")
    r = Reader(c.bootstrap, "t", "g")
    w.start()
    r.start()
    try:
        wait_for(lambda: len(w.acked) > 2000, 60)
        plan = sluice_admin(c, "drain", "3")
        assert plan["executed"] and plan["after"].get("3", {"replicas": 0})["replicas"] == 0
        assert wait_for(lambda: moves_done(c), 90), sluice_admin(c, "progress")
        replicas, _, leaders = spread(c, ["t"])
        assert replicas[3] == 0 and leaders[3] == 0, (replicas, leaders)
        assert within_one(replicas, [0, 1, 2])
        # Its copies are deleted from its disk.
        assert wait_for(lambda: not list(c.brokers[3].data_dir.glob("t-*")), 30)
        acked, received = len(w.acked), r.received
        assert wait_for(lambda: len(w.acked) > acked + 1000 and r.received > received + 1000, 60)
    finally:
        w.stop()
        r.stop()
    status = sluice_admin(c, "status")
    assert status["under_replicated"] == [] and status["offline"] == []
    assert status["quorum"]["leader"] in (0, 1, 2)
    assert sorted(status["quorum"]["voters"]) == [0, 1, 2] and status["quorum"]["learners"] == [3]


def test_kafka_reassignment_and_election_apis(cluster_factory):
    c = cluster_factory(3)
    create(c, "t", partitions=2, rf=2)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(2000):
        p.produce("t", value=b"%d" % i, partition=0)
    assert p.flush(30) == 0
    before = partitions_of(c, "t")[0].replicas
    target = [b for b in (0, 1, 2) if b not in before] + [before[0]]
    k = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    try:
        # A throttle keeps the move slow enough to see it in progress.
        a = admin(c)
        # (Per broker here: the new replica's; `sluice-broker admin rebalance --throttle`
        # sets the cluster-wide default.)
        res = ConfigResource("broker", str(target[0]), incremental_configs=[ConfigEntry(
            "follower.replication.throttled.rate", "2000",
            incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([res])[res].result(15)
        assert k.alter_partition_reassignments({KTopicPartition("t", 0): target}) == {
            KTopicPartition("t", 0): None}
        listed = k.list_partition_reassignments()
        assert KTopicPartition("t", 0) in listed, listed
        # Lift the throttle: the move completes.
        res = ConfigResource("broker", str(target[0]), incremental_configs=[ConfigEntry(
            "follower.replication.throttled.rate", "1000000000",
            incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([res])[res].result(15)
        assert wait_for(lambda: partitions_of(c, "t")[0].replicas == target, 60), partitions_of(c, "t")[0]
        assert k.list_partition_reassignments() == {}
        assert len(read_all(c.bootstrap, "t", 0, 2000)) == 2000
        # Preferred leader election puts the first replica in charge.
        assert wait_for(lambda: in_sync(c, "t", replicas=2), 30)
        a.elect_leaders(ElectionType.PREFERRED, [TopicPartition("t", 0)]).result(30)
        assert wait_for(lambda: partitions_of(c, "t")[0].leader == target[0], 30)
        # Bad targets are refused per partition; nothing changes.
        res = k.alter_partition_reassignments({KTopicPartition("t", 1): [0, 0]})
        assert res[KTopicPartition("t", 1)] is not None
        res = k.alter_partition_reassignments({KTopicPartition("t", 1): [0, 7]})
        assert res[KTopicPartition("t", 1)] is not None
        res = k.alter_partition_reassignments({KTopicPartition("t", 1): None})
        assert res[KTopicPartition("t", 1)].__name__ == "NoReassignmentInProgressError"
    finally:
        k.close()


def test_new_replica_copies_only_the_local_tail(cluster_factory, tmp_path):
    bucket = tmp_path / "bucket"
    c = cluster_factory(3, overrides={
        "remote.log.storage.url": str(bucket),
        "remote.log.manager.task.interval.ms": "300",
        "log.retention.check.interval.ms": "300",
    })
    create(c, "cold", partitions=1, rf=2, config={
        "remote.storage.enable": "true",
        "segment.bytes": str(MIB),
        "local.retention.bytes": str(2 * MIB),
    })
    first, second = partitions_of(c, "cold")[0].replicas
    new = ({0, 1, 2} - {first, second}).pop()
    assert wait_for(lambda: partitions_of(c, "cold")[0].leader == first, 30)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 20})
    for i in range(20000):
        p.produce("cold", value=b"%08d" % i + b"v" * 992, partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0

    def local_bytes(b):
        return sum(f.stat().st_size for f in (c.brokers[b].data_dir / "cold-0").glob("*.log"))

    # ~20 MB written, at most a few MiB kept locally once uploaded.
    assert wait_for(lambda: local_bytes(first) < 6 * MIB, 60), local_bytes(first)
    k = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    try:
        k.alter_partition_reassignments({KTopicPartition("cold", 0): [first, new]})
    finally:
        k.close()
    assert wait_for(lambda: partitions_of(c, "cold")[0].replicas == [first, new], 60)
    # The new replica copied the hot tail only, not the 20 MB in the bucket...
    assert local_bytes(new) < 6 * MIB, local_bytes(new)
    starts = sorted(int(f.stem) for f in (c.brokers[new].data_dir / "cold-0").glob("*.log"))
    assert starts and starts[0] > 0
    # ...and, once it leads, it serves the whole log through the shared bucket.
    c.brokers[first].stop()
    assert wait_for(lambda: partitions_of(c, "cold")[0].leader == new, 30)
    log = read_all(c.bootstrap, "cold", 0, 20000, timeout=120)
    assert len(log) == 20000 and log[0][1].startswith(b"00000000")


def test_remove_a_broker_and_restart_safety(cluster_factory):
    """What the operator's scale-down and rolling restarts rely on: per-broker replica
    counts, a broker that holds data or still runs cannot be forgotten, a drained and
    stopped one can; restart safety names partitions that a restart would take below
    min.insync.replicas."""
    c = cluster_factory(3, overrides=FAST)
    c.add_broker()
    create(c, "t", partitions=4, rf=3, config={"min.insync.replicas": "2"})
    status = sluice_admin(c, "status")
    assert status["max_replication_factor"] == 3 and status["max_replication_factor_topic"] == "t"
    hosted = {b["id"]: b["replicas"] for b in status["brokers"]}
    assert sum(hosted.values()) == 12, status

    # Running, or still holding replicas: refused with a reason.
    out = subprocess.run([str(BINARY), "admin", "--server", f"{c.brokers[0].host}:{c.internal[0]}",
                          "unregister", "3"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "INVALID_REQUEST" in out.stderr, out.stderr
    # A voter cannot be forgotten at all.
    out = subprocess.run([str(BINARY), "admin", "--server", f"{c.brokers[0].host}:{c.internal[0]}",
                          "unregister", "2"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "voter" in out.stderr, out.stderr

    # Every replica in sync: any broker may restart.
    assert wait_for(lambda: sluice_admin(c, "status")["under_replicated"] == [], 60)
    assert sluice_admin(c, "restart-safety", "1")["safe"] is True

    sluice_admin(c, "drain", "3")
    assert wait_for(lambda: moves_done(c), 90), sluice_admin(c, "progress")
    drained = {b["id"]: b for b in sluice_admin(c, "status")["brokers"]}[3]
    assert drained["replicas"] == 0 and drained["leaders"] == 0, drained
    c.brokers[3].stop()
    assert wait_for(lambda: {b["id"]: b for b in sluice_admin(c, "status")["brokers"]}[3]["fenced"], 30)
    assert sluice_admin(c, "unregister", "3") == {"unregistered": 3}
    assert sorted(b["id"] for b in sluice_admin(c, "status")["brokers"]) == [0, 1, 2]

    # With broker 2 down, stopping broker 1 would leave the partitions it shares with 0
    # below min.insync.replicas=2.
    c.brokers[2].stop()
    assert wait_for(lambda: sluice_admin(c, "status")["under_replicated"] != [], 30)
    safety = sluice_admin(c, "restart-safety", "1")
    assert safety["safe"] is False and safety["blocking"], safety
    risk = safety["blocking"][0]
    assert risk["topic"] == "t" and risk["min_insync_replicas"] == 2 and 1 in risk["isr"], risk
