"""Admin APIs against the real broker: CreateTopics, CreatePartitions, DeleteTopics,
auto-creation, Describe/Alter(Incremental)Configs, DeleteRecords, DescribeCluster and
size-based retention, through confluent-kafka, kafka-python and kcat."""

import subprocess
import time

import pytest
from confluent_kafka import (
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType
from kafka.admin import KafkaAdminClient
from kafka.admin import NewPartitions as KNewPartitions
import kafka.errors as kerrors

import rawkafka
from kafkautil import admin, produce, read_records, wait_for, watermarks

pytestmark = pytest.mark.timeout(120)

# Kafka error codes.
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40

BROKER_RESOURCE = 4
SET, DELETE = 0, 1


# ---------------------------------------------------------------- helpers

def code_of(fut, timeout=15):
    """0 if the admin future succeeded, else the Kafka error code it failed with."""
    try:
        fut.result(timeout)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def create(a, *topics, validate_only=False):
    fs = a.create_topics(list(topics), validate_only=validate_only, operation_timeout=10)
    return {name: code_of(f) for name, f in fs.items()}


def topics_in_metadata(a):
    """User topics; `__consumer_offsets` appears once any client used a group."""
    return {name: len(t.partitions) for name, t in a.list_topics(timeout=10).topics.items()
            if not name.startswith("__")}


def partition_dirs(b, topic):
    if not b.data_dir.exists():
        return []
    return sorted(p.name for p in b.data_dir.iterdir() if p.name.startswith(f"{topic}-"))


def consume(b, topic, partition, start, count, timeout=30, **conf):
    """Reads `count` records of one partition from `start`; returns [(offset, value)]."""
    return [(o, v) for o, _k, v in read_records(b, topic, partition, start, count, timeout, **conf)]


def describe(a, rtype, name, keys):
    r = ConfigResource(rtype, name)
    res = a.describe_configs([r])[r].result(15)
    return {k: (res[k].value, ConfigSource(res[k].source)) for k in keys}


def incremental(a, rtype, name, *ops, validate_only=False):
    """ops: (name, value, AlterConfigOpType). Returns 0 or the error code."""
    r = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(n, v, incremental_operation=op) for n, v, op in ops])
    return code_of(a.incremental_alter_configs([r], validate_only=validate_only)[r])


def raw_incremental_alter(b, resource_name, ops):
    """IncrementalAlterConfigs on a broker resource by raw request: neither client lets
    us name the cluster-wide default resource ""."""
    cid, r = rawkafka.call(b.port, rawkafka.incremental_alter_configs_v0(
        41, BROKER_RESOURCE, resource_name, ops))
    assert cid == 41
    [(code, _msg, rtype, rname)] = rawkafka.parse_incremental_alter_configs_v0(r)
    assert (rtype, rname) == (BROKER_RESOURCE, resource_name)
    return code


def raw_describe_broker(b, resource_name):
    cid, r = rawkafka.call(b.port, rawkafka.describe_configs_v1(42, BROKER_RESOURCE, resource_name))
    assert cid == 42
    [(code, rtype, rname, configs)] = rawkafka.parse_describe_configs_v1(r)
    assert (code, rtype, rname) == (0, BROKER_RESOURCE, resource_name)
    return configs


# ---------------------------------------------------------------- CreateTopics

def test_create_topics_confluent(broker):
    a = admin(broker)
    assert create(a, NewTopic("orders", num_partitions=4, replication_factor=1)) == {"orders": 0}
    md = a.list_topics(timeout=10).topics["orders"]
    assert md.error is None
    assert sorted(md.partitions) == [0, 1, 2, 3]
    assert all(p.leader == 0 and p.replicas == [0] and p.isrs == [0] for p in md.partitions.values())
    assert partition_dirs(broker, "orders") == ["orders-0", "orders-1", "orders-2", "orders-3"]

    assert create(a, NewTopic("orders", 2, 1)) == {"orders": TOPIC_ALREADY_EXISTS}
    # The refused re-creation did not change the topic.
    assert topics_in_metadata(a)["orders"] == 4

    bad_names = ["bad name", "a" * 250, ".", ".."]
    assert create(a, *[NewTopic(n, 1, 1) for n in bad_names]) == {
        n: INVALID_TOPIC_EXCEPTION for n in bad_names}
    # 249 characters is the longest legal name.
    assert create(a, NewTopic("b" * 249, 1, 1)) == {"b" * 249: 0}

    assert create(a, NewTopic("rf3", 1, 3)) == {"rf3": INVALID_REPLICATION_FACTOR}
    assert create(
        a,
        NewTopic("badvalue", 1, 1, config={"retention.ms": "abc"}),
        NewTopic("unknowncfg", 1, 1, config={"no.such.config": "1"}),
        NewTopic("compacted", 1, 1, config={"cleanup.policy": "archive"}),
    ) == {"badvalue": INVALID_CONFIG, "unknowncfg": INVALID_CONFIG, "compacted": INVALID_CONFIG}

    assert create(a, NewTopic("validated", 3, 1), validate_only=True) == {"validated": 0}
    # validate_only still runs the checks.
    assert create(a, NewTopic("orders", 1, 1), validate_only=True) == {"orders": TOPIC_ALREADY_EXISTS}

    assert create(a, NewTopic("a.b", 1, 1)) == {"a.b": 0}
    assert create(a, NewTopic("a_b", 1, 1)) == {"a_b": INVALID_TOPIC_EXCEPTION}

    assert topics_in_metadata(a) == {"orders": 4, "b" * 249: 1, "a.b": 1}
    for name in ["validated", "rf3", "badvalue", "unknowncfg", "compacted", "a_b", "bad name"]:
        assert partition_dirs(broker, name) == [], name


def test_create_topics_kafka_python(broker):
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resp = k.create_topics({"kp": {"num_partitions": 3, "replication_factor": 1}})
        [t] = resp["topics"]
        assert (t["name"], t["error_code"], t["num_partitions"], t["replication_factor"]) == ("kp", 0, 3, 1)
        assert t["configs"]["retention.ms"]["value"] == "604800000"

        with pytest.raises(kerrors.TopicAlreadyExistsError):
            k.create_topics({"kp": {"num_partitions": 1, "replication_factor": 1}})

        resp = k.create_topics({
            "bad name": {"num_partitions": 1, "replication_factor": 1},
            "a" * 250: {"num_partitions": 1, "replication_factor": 1},
            ".": {"num_partitions": 1, "replication_factor": 1},
            "..": {"num_partitions": 1, "replication_factor": 1},
            "rf3": {"num_partitions": 1, "replication_factor": 3},
            "badvalue": {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "abc"}},
            "unknowncfg": {"num_partitions": 1, "replication_factor": 1, "configs": {"nope.nope": "1"}},
            "zero-partitions": {"num_partitions": 0, "replication_factor": 1},
            "zero-rf": {"num_partitions": 1, "replication_factor": 0},
        }, raise_errors=False)
        codes = {t["name"]: t["error_code"] for t in resp["topics"]}
        assert codes == {
            "bad name": INVALID_TOPIC_EXCEPTION,
            "a" * 250: INVALID_TOPIC_EXCEPTION,
            ".": INVALID_TOPIC_EXCEPTION,
            "..": INVALID_TOPIC_EXCEPTION,
            "rf3": INVALID_REPLICATION_FACTOR,
            "badvalue": INVALID_CONFIG,
            "unknowncfg": INVALID_CONFIG,
            "zero-partitions": INVALID_PARTITIONS,
            "zero-rf": INVALID_REPLICATION_FACTOR,
        }

        # -1 (omitted) partitions and replication factor: the broker defaults.
        resp = k.create_topics({"defaulted": {}})
        [t] = resp["topics"]
        assert (t["error_code"], t["num_partitions"], t["replication_factor"]) == (0, 1, 1)

        resp = k.create_topics({"kp_validated": {"num_partitions": 2, "replication_factor": 1}},
                               validate_only=True)
        assert [(t["name"], t["error_code"]) for t in resp["topics"]] == [("kp_validated", 0)]

        resp = k.create_topics({"x.y": {"num_partitions": 1, "replication_factor": 1}})
        assert resp["topics"][0]["error_code"] == 0
        resp = k.create_topics({"x_y": {"num_partitions": 1, "replication_factor": 1}}, raise_errors=False)
        assert resp["topics"][0]["error_code"] == INVALID_TOPIC_EXCEPTION

        assert sorted(k.list_topics()) == ["defaulted", "kp", "x.y"]
    finally:
        k.close()
    assert partition_dirs(broker, "kp_validated") == []


# ---------------------------------------------------------------- CreatePartitions

def test_create_partitions_grows_and_refuses_shrink(broker):
    a = admin(broker)
    assert create(a, NewTopic("grow", 2, 1)) == {"grow": 0}
    assert code_of(a.create_partitions([NewPartitions("grow", 4)])["grow"]) == 0
    assert topics_in_metadata(a)["grow"] == 4
    assert partition_dirs(broker, "grow") == ["grow-0", "grow-1", "grow-2", "grow-3"]

    assert produce(broker, "grow", [b"in-new-partition"], partition=3) == [(3, 0)]
    assert consume(broker, "grow", 3, 0, 1) == [(0, b"in-new-partition")]

    assert code_of(a.create_partitions([NewPartitions("grow", 2)])["grow"]) == INVALID_PARTITIONS
    assert code_of(a.create_partitions([NewPartitions("grow", 4)])["grow"]) == INVALID_PARTITIONS
    assert code_of(a.create_partitions([NewPartitions("nosuch", 4)])["nosuch"]) == UNKNOWN_TOPIC_OR_PARTITION
    assert code_of(a.create_partitions([NewPartitions("grow", 6)], validate_only=True)["grow"]) == 0

    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resp = k.create_partitions({"grow": KNewPartitions(5)})
        assert [(r.name, r.error_code) for r in resp.results] == [("grow", 0)]
        resp = k.create_partitions({"grow": KNewPartitions(3)}, raise_errors=False)
        assert [(r.name, r.error_code) for r in resp.results] == [("grow", INVALID_PARTITIONS)]
    finally:
        k.close()
    assert topics_in_metadata(a)["grow"] == 5
    assert produce(broker, "grow", [b"p4"], partition=4) == [(4, 0)]


# ---------------------------------------------------------------- DeleteTopics

def test_delete_topics(broker):
    a = admin(broker)
    assert create(a, NewTopic("doomed", 3, 1)) == {"doomed": 0}
    produce(broker, "doomed", [b"old-%d" % i for i in range(30)], partition=0)
    assert watermarks(broker, "doomed", 0) == (0, 30)
    assert len(partition_dirs(broker, "doomed")) == 3

    assert code_of(a.delete_topics(["doomed"], operation_timeout=10)["doomed"]) == 0
    assert "doomed" not in topics_in_metadata(a)
    # (A Metadata request naming the topic would legitimately auto-create it again, so
    # ask with DescribeTopics, which does not.)
    [fut] = a.describe_topics(TopicCollection(["doomed"])).values()
    assert code_of(fut) == UNKNOWN_TOPIC_OR_PARTITION
    # Directories are renamed and removed in the background (names start "doomed-0.").
    assert wait_for(lambda: partition_dirs(broker, "doomed") == [], 15), partition_dirs(broker, "doomed")

    assert code_of(a.delete_topics(["never-existed"], operation_timeout=10)["never-existed"]) \
        == UNKNOWN_TOPIC_OR_PARTITION
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resp = k.delete_topics(["never-existed"], raise_errors=False)
        assert [(t["name"], t["error_code"]) for t in resp["topics"]] == [
            ("never-existed", UNKNOWN_TOPIC_OR_PARTITION)]
    finally:
        k.close()

    # Same name again: a new, empty topic.
    assert create(a, NewTopic("doomed", 1, 1)) == {"doomed": 0}
    assert watermarks(broker, "doomed", 0) == (0, 0)
    assert produce(broker, "doomed", [b"new-0"], partition=0) == [(0, 0)]
    assert consume(broker, "doomed", 0, 0, 1) == [(0, b"new-0")]
    assert partition_dirs(broker, "doomed") == ["doomed-0"]


# ---------------------------------------------------------------- auto-creation

def test_auto_create_uses_num_partitions(broker_factory):
    b = broker_factory(overrides={"num.partitions": "3"})
    r = subprocess.run(["kcat", "-P", "-b", b.bootstrap, "-t", "auto-kcat", "-p", "0"],
                       input=b"one\ntwo\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    a = admin(b)
    assert topics_in_metadata(a) == {"auto-kcat": 3}
    assert consume(b, "auto-kcat", 0, 0, 2) == [(0, b"one"), (1, b"two")]

    reports = produce(b, "auto-confluent", [b"x"])
    assert len(reports) == 1 and reports[0][1] == 0 and reports[0][0] in (0, 1, 2)
    assert topics_in_metadata(a) == {"auto-kcat": 3, "auto-confluent": 3}
    assert partition_dirs(b, "auto-confluent") == ["auto-confluent-0", "auto-confluent-1", "auto-confluent-2"]
    # Auto-created topics get no overrides: the broker default applies.
    assert describe(a, "topic", "auto-confluent", ["retention.ms"]) == {
        "retention.ms": ("604800000", ConfigSource.DEFAULT_CONFIG)}


def test_auto_create_disabled(broker_factory):
    b = broker_factory(overrides={"auto.create.topics.enable": "false"})
    r = subprocess.run(
        ["kcat", "-P", "-b", b.bootstrap, "-t", "nope-kcat", "-p", "0",
         "-X", "topic.metadata.propagation.max.ms=1000"],
        input=b"one\n", capture_output=True, timeout=60)
    assert r.returncode != 0
    assert b"Unknown topic or partition" in r.stderr, r.stderr

    p = Producer({"bootstrap.servers": b.bootstrap, "topic.metadata.propagation.max.ms": 1000})
    errors = []
    p.produce("nope-confluent", b"v", callback=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert [e.code() for e in errors] == [KafkaError.UNKNOWN_TOPIC_OR_PART]

    a = admin(b)
    md = a.list_topics(topic="nope-metadata", timeout=10).topics["nope-metadata"]
    assert md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topics_in_metadata(a) == {}
    assert not any(partition_dirs(b, t) for t in ["nope-kcat", "nope-confluent", "nope-metadata"])
    # Explicit creation still works.
    assert create(a, NewTopic("explicit", 1, 1)) == {"explicit": 0}
    assert produce(b, "explicit", [b"v"]) == [(0, 0)]


# ---------------------------------------------------------------- configs

def test_topic_configs_describe_and_incremental_alter(broker):
    a = admin(broker)
    assert create(a, NewTopic("cfg", 1, 1)) == {"cfg": 0}
    keys = ["retention.ms", "cleanup.policy", "segment.bytes"]
    defaults = {
        "retention.ms": ("604800000", ConfigSource.DEFAULT_CONFIG),
        "cleanup.policy": ("delete", ConfigSource.DEFAULT_CONFIG),
        "segment.bytes": ("1073741824", ConfigSource.DEFAULT_CONFIG),
    }
    assert describe(a, "topic", "cfg", keys) == defaults

    assert incremental(a, "topic", "cfg", ("retention.ms", "12345", AlterConfigOpType.SET)) == 0
    assert describe(a, "topic", "cfg", keys) == {
        **defaults, "retention.ms": ("12345", ConfigSource.DYNAMIC_TOPIC_CONFIG)}

    # Refused changes leave everything as it was.
    assert incremental(a, "topic", "cfg", ("retention.ms", "abc", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert incremental(a, "topic", "cfg", ("cleanup.policy", "archive", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert incremental(a, "topic", "cfg", ("segment.bytes", "1000", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert incremental(a, "topic", "cfg", ("no.such.config", "1", AlterConfigOpType.SET)) == INVALID_CONFIG
    # One bad entry fails the whole resource: the good one is not applied either.
    assert incremental(a, "topic", "cfg",
                       ("segment.bytes", "2097152", AlterConfigOpType.SET),
                       ("retention.ms", "-5", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert describe(a, "topic", "cfg", keys) == {
        **defaults, "retention.ms": ("12345", ConfigSource.DYNAMIC_TOPIC_CONFIG)}

    # validate_only changes nothing.
    assert incremental(a, "topic", "cfg", ("retention.ms", "777", AlterConfigOpType.SET),
                       validate_only=True) == 0
    assert describe(a, "topic", "cfg", ["retention.ms"]) == {
        "retention.ms": ("12345", ConfigSource.DYNAMIC_TOPIC_CONFIG)}

    assert incremental(a, "topic", "cfg", ("retention.ms", None, AlterConfigOpType.DELETE)) == 0
    assert describe(a, "topic", "cfg", keys) == defaults

    assert incremental(a, "topic", "missing", ("retention.ms", "1", AlterConfigOpType.SET)) \
        == UNKNOWN_TOPIC_OR_PARTITION
    r = ConfigResource("topic", "missing")
    assert code_of(a.describe_configs([r])[r]) == UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_legacy_alter_configs_replaces_the_set(broker):
    a = admin(broker)
    assert create(a, NewTopic("legacy", 1, 1, config={"retention.ms": "5555"})) == {"legacy": 0}
    keys = ["retention.ms", "max.message.bytes"]
    assert describe(a, "topic", "legacy", keys) == {
        "retention.ms": ("5555", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        "max.message.bytes": ("1048588", ConfigSource.DEFAULT_CONFIG),
    }

    # AlterConfigs (non-incremental) replaces all overrides: retention.ms goes back to default.
    r = ConfigResource("topic", "legacy", set_config={"max.message.bytes": "2000000"})
    assert code_of(a.alter_configs([r])[r]) == 0
    after_replace = {
        "retention.ms": ("604800000", ConfigSource.DEFAULT_CONFIG),
        "max.message.bytes": ("2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
    }
    assert describe(a, "topic", "legacy", keys) == after_replace

    # Invalid values are refused and the current set stays.
    for bad in [{"retention.ms": "abc"}, {"cleanup.policy": "archive"}, {"bogus.name": "1"}]:
        r = ConfigResource("topic", "legacy", set_config=bad)
        assert code_of(a.alter_configs([r])[r]) == INVALID_CONFIG, bad
    assert describe(a, "topic", "legacy", keys) == after_replace

    # kafka-python's non-incremental path (AlterConfigs v0+) sends the new value together
    # with the modified ones it read back, so both are set afterwards.
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        res = k.alter_configs([KConfigResource(KConfigResourceType.TOPIC, "legacy", {"retention.ms": "4444"})],
                              incremental=False)
        assert res == {"topic": {"legacy": "OK"}}
        described = k.describe_configs([KConfigResource(KConfigResourceType.TOPIC, "legacy")])
        modified = {n: (c["value"], c["config_source"]) for n, c in described["topic"]["legacy"].items()}
        assert modified == {
            "retention.ms": ("4444", "DYNAMIC_TOPIC_CONFIG"),
            "max.message.bytes": ("2000000", "DYNAMIC_TOPIC_CONFIG"),
        }
        res = k.alter_configs([KConfigResource(KConfigResourceType.TOPIC, "legacy", {"retention.ms": "x"})],
                              incremental=False)
        assert res["topic"]["legacy"].startswith("[Error 40]"), res
    finally:
        k.close()
    assert describe(a, "topic", "legacy", keys) == {
        "retention.ms": ("4444", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        "max.message.bytes": ("2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
    }


def test_broker_configs_and_dynamic_defaults(broker):
    a = admin(broker)
    assert create(a, NewTopic("inherit", 1, 1)) == {"inherit": 0}
    r = ConfigResource("broker", "0")
    configs = a.describe_configs([r])[r].result(15)
    assert (configs["num.partitions"].value, ConfigSource(configs["num.partitions"].source),
            configs["num.partitions"].is_read_only) == ("1", ConfigSource.DEFAULT_CONFIG, True)
    assert (configs["log.retention.hours"].value, configs["log.retention.hours"].is_read_only) == ("168", True)
    assert (configs["log.retention.ms"].value, configs["log.retention.ms"].is_read_only) == ("604800000", False)
    assert configs["log.segment.bytes"].value == "1073741824"

    # Per-broker dynamic value reaches topics without an override.
    assert incremental(a, "broker", "0", ("log.retention.ms", "7777", AlterConfigOpType.SET)) == 0
    assert describe(a, "topic", "inherit", ["retention.ms"]) == {
        "retention.ms": ("7777", ConfigSource.DYNAMIC_BROKER_CONFIG)}
    assert describe(a, "broker", "0", ["log.retention.ms"]) == {
        "log.retention.ms": ("7777", ConfigSource.DYNAMIC_BROKER_CONFIG)}

    # Cluster-wide default ("" resource): the per-broker value still wins until deleted.
    assert raw_incremental_alter(broker, "", [("log.retention.ms", SET, "8888")]) == 0
    assert raw_describe_broker(broker, "") == {
        "log.retention.ms": ("8888", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)}
    assert describe(a, "topic", "inherit", ["retention.ms"]) == {
        "retention.ms": ("7777", ConfigSource.DYNAMIC_BROKER_CONFIG)}
    assert incremental(a, "broker", "0", ("log.retention.ms", None, AlterConfigOpType.DELETE)) == 0
    assert describe(a, "topic", "inherit", ["retention.ms"]) == {
        "retention.ms": ("8888", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)}

    # A topic override beats both broker layers.
    assert incremental(a, "topic", "inherit", ("retention.ms", "999", AlterConfigOpType.SET)) == 0
    assert describe(a, "topic", "inherit", ["retention.ms"]) == {
        "retention.ms": ("999", ConfigSource.DYNAMIC_TOPIC_CONFIG)}

    # Static settings cannot be altered at runtime; invalid dynamic values are refused.
    assert incremental(a, "broker", "0", ("num.partitions", "5", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert raw_incremental_alter(broker, "", [("num.partitions", SET, "5")]) == INVALID_CONFIG
    assert incremental(a, "broker", "0", ("log.retention.ms", "abc", AlterConfigOpType.SET)) == INVALID_CONFIG
    assert describe(a, "broker", "0", ["num.partitions", "log.retention.ms"]) == {
        "num.partitions": ("1", ConfigSource.DEFAULT_CONFIG),
        "log.retention.ms": ("8888", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
    }
    assert raw_incremental_alter(broker, "", [("log.retention.ms", DELETE, None)]) == 0
    assert raw_describe_broker(broker, "") == {}
    assert incremental(a, "topic", "inherit", ("retention.ms", None, AlterConfigOpType.DELETE)) == 0
    assert describe(a, "topic", "inherit", ["retention.ms"]) == {
        "retention.ms": ("604800000", ConfigSource.DEFAULT_CONFIG)}


def test_topics_and_configs_survive_restart(broker):
    a = admin(broker)
    cluster_id = a.describe_cluster().result(15).cluster_id
    assert create(a, NewTopic("kept", 2, 1, config={"retention.ms": "11111"}),
                  NewTopic("gone", 1, 1)) == {"kept": 0, "gone": 0}
    assert incremental(a, "topic", "kept", ("segment.bytes", "2097152", AlterConfigOpType.SET)) == 0
    assert incremental(a, "broker", "0", ("message.max.bytes", "2000000", AlterConfigOpType.SET)) == 0
    assert code_of(a.delete_topics(["gone"], operation_timeout=10)["gone"]) == 0
    assert code_of(a.create_partitions([NewPartitions("kept", 3)])["kept"]) == 0
    produce(broker, "kept", [b"r%d" % i for i in range(10)], partition=1)
    produce(broker, "kept", [b"p2-%d" % i for i in range(3)], partition=2)
    del a

    assert broker.stop() == 0
    broker.start()

    a = admin(broker)
    assert a.describe_cluster().result(15).cluster_id == cluster_id
    assert topics_in_metadata(a) == {"kept": 3}
    assert describe(a, "topic", "kept", ["retention.ms", "segment.bytes", "max.message.bytes"]) == {
        "retention.ms": ("11111", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        "segment.bytes": ("2097152", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        "max.message.bytes": ("2000000", ConfigSource.DYNAMIC_BROKER_CONFIG),
    }
    assert watermarks(broker, "kept", 1) == (0, 10)
    assert consume(broker, "kept", 1, 0, 10) == [(i, b"r%d" % i) for i in range(10)]
    assert consume(broker, "kept", 2, 0, 3) == [(i, b"p2-%d" % i) for i in range(3)]
    assert partition_dirs(broker, "kept") == ["kept-0", "kept-1", "kept-2"]
    assert partition_dirs(broker, "gone") == []


# ---------------------------------------------------------------- DeleteRecords

def test_delete_records(broker_factory):
    # Segments wholly below the new log start are removed by the retention task.
    b = broker_factory(overrides={"log.retention.check.interval.ms": "500"})
    a = admin(b)
    assert create(a, NewTopic("dr", 1, 1, config={"segment.bytes": "1048576"})) == {"dr": 0}
    values = [b"%d:" % i + b"z" * 3000 for i in range(1000)]  # ~3 MB: three or more segments
    reports = produce(b, "dr", values, **{"batch.size": 16384})
    assert sorted(o for _, o in reports) == list(range(1000))
    pdir = b.data_dir / "dr-0"

    def segment_bases():
        return sorted(int(p.stem) for p in pdir.iterdir() if p.suffix == ".log")

    bases = segment_bases()
    assert len(bases) >= 3 and bases[0] == 0 and bases[1] < 400, bases

    [fut] = a.delete_records([TopicPartition("dr", 0, 400)]).values()
    assert fut.result(15).low_watermark == 400
    assert watermarks(b, "dr", 0) == (400, 1000)
    lo = a.list_offsets({TopicPartition("dr", 0): OffsetSpec.earliest()})
    assert [f.result(15).offset for f in lo.values()] == [400]
    hi = a.list_offsets({TopicPartition("dr", 0): OffsetSpec.latest()})
    assert [f.result(15).offset for f in hi.values()] == [1000]

    # Offset 0 is now out of range: auto.offset.reset=earliest restarts at 400. A fetched
    # batch may begin before 400 but clients skip records below the requested offset.
    got = consume(b, "dr", 0, 0, 600, **{"auto.offset.reset": "earliest"})
    assert got == [(i, values[i]) for i in range(400, 1000)]

    # Whole segments below 400 go; the segment holding 400 stays.
    keep = [x for x in bases if x > 400]
    holder = max(x for x in bases if x <= 400)
    assert wait_for(lambda: segment_bases() == [holder] + keep, 15), (segment_bases(), bases)

    [fut] = a.delete_records([TopicPartition("dr", 0, 1001)]).values()
    assert code_of(fut) == OFFSET_OUT_OF_RANGE
    k = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    try:
        with pytest.raises(kerrors.OffsetOutOfRangeError):
            k.delete_records({KTopicPartition("dr", 0): 5000})
        # Deleting below the current start is a no-op reporting the current start.
        res = k.delete_records({KTopicPartition("dr", 0): 100})
        assert [v["low_watermark"] for v in res.values()] == [400]
    finally:
        k.close()
    assert watermarks(b, "dr", 0) == (400, 1000)
    del a

    b.kill()
    b.start()
    assert watermarks(b, "dr", 0) == (400, 1000)
    got = consume(b, "dr", 0, 0, 600, **{"auto.offset.reset": "earliest"})
    assert got == [(i, values[i]) for i in range(400, 1000)]

    # Up to the high watermark exactly (-1 means "the high watermark"): the log is empty
    # but keeps its offsets.
    a = admin(b)
    [fut] = a.delete_records([TopicPartition("dr", 0, -1)]).values()
    assert fut.result(15).low_watermark == 1000
    assert watermarks(b, "dr", 0) == (1000, 1000)
    assert produce(b, "dr", [b"next"]) == [(0, 1000)]
    assert consume(b, "dr", 0, 1000, 1) == [(1000, b"next")]


# ---------------------------------------------------------------- DescribeCluster

def test_describe_cluster(broker):
    a = admin(broker)
    d = a.describe_cluster(request_timeout=15).result(15)
    assert isinstance(d.cluster_id, str) and len(d.cluster_id) >= 16
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(0, "127.0.0.1", broker.port)]
    assert d.controller is not None and (d.controller.id, d.controller.port) == (0, broker.port)
    assert a.list_topics(timeout=10).cluster_id == d.cluster_id


# ---------------------------------------------------------------- retention

def test_size_retention_deletes_old_segments(broker_factory):
    b = broker_factory(overrides={"log.retention.check.interval.ms": "500"})
    a = admin(b)
    assert create(a, NewTopic("ret", 1, 1, config={"segment.bytes": "1048576"})) == {"ret": 0}
    pdir = b.data_dir / "ret-0"
    n, size = 8000, 1000  # ~8 MB
    values = [b"%08d" % i + b"x" * (size - 8) for i in range(n)]
    reports = produce(b, "ret", values, **{"batch.size": 65536})
    assert sorted(o for _, o in reports) == list(range(n))

    def log_files():
        return sorted(p for p in pdir.iterdir() if p.suffix == ".log")

    before = log_files()
    assert len(before) >= 8, before
    assert watermarks(b, "ret", 0) == (0, n)

    # Enable size retention at runtime; the retention check runs every 500 ms.
    assert incremental(a, "topic", "ret", ("retention.bytes", "2097152", AlterConfigOpType.SET)) == 0
    limit = 2097152 + 1048576

    def shrunk():
        files = log_files()
        return len(files) < len(before) and sum(f.stat().st_size for f in files) <= limit

    assert wait_for(shrunk, 30), [(f.name, f.stat().st_size) for f in log_files()]
    low, high = watermarks(b, "ret", 0)
    assert high == n
    assert low > 0
    # The log start is the base offset of the oldest remaining segment.
    assert low == int(log_files()[0].stem)
    got = consume(b, "ret", 0, low, high - low)
    assert [o for o, _ in got] == list(range(low, high))
    assert all(v == values[o] for o, v in got)

    # A crash does not bring deleted data back.
    del a
    b.kill()
    b.start()
    assert watermarks(b, "ret", 0) == (low, high)


def test_time_retention_deletes_expired_segments(broker_factory):
    b = broker_factory(overrides={"log.retention.check.interval.ms": "500"})
    a = admin(b)
    assert create(a, NewTopic("aged", 1, 1, config={"segment.bytes": "1048576"})) == {"aged": 0}
    n = 2500
    two_days_ago = int(time.time() * 1000) - 2 * 86_400_000
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 65536})
    errors = []
    for i in range(n):
        p.produce("aged", value=b"%d" % i + b"o" * 1000, timestamp=two_days_ago + i,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and errors == []
    pdir = b.data_dir / "aged-0"
    assert len([f for f in pdir.iterdir() if f.suffix == ".log"]) >= 3
    # Two-day-old records are within the default seven days.
    time.sleep(1.5)
    assert watermarks(b, "aged", 0) == (0, n)

    # One day: every segment has expired, the active one too (the log rolls first), so
    # the log is empty but keeps its offsets.
    assert incremental(a, "topic", "aged", ("retention.ms", "86400000", AlterConfigOpType.SET)) == 0
    assert wait_for(lambda: watermarks(b, "aged", 0) == (n, n), 30), watermarks(b, "aged", 0)
    logs = sorted(f for f in pdir.iterdir() if f.suffix == ".log")
    assert [(int(f.stem), f.stat().st_size) for f in logs] == [(n, 0)]

    assert produce(b, "aged", [b"fresh"]) == [(0, n)]
    time.sleep(1.5)  # a few more retention passes: fresh data stays
    assert watermarks(b, "aged", 0) == (n, n + 1)
    assert consume(b, "aged", 0, n, 1) == [(n, b"fresh")]
