"""One consumer-group member in its own process, for test_groups.py.

Run as `python group_member.py '<json config>'`; the test kills it with SIGKILL (a real
crash: no commit, no LeaveGroup) or stops it with SIGTERM (finish the current batch,
commit, close: a clean leave). It subscribes to one topic with confluent-kafka or
kafka-python and appends one JSON line per event to the `events` file:

  {"ev": "started", "pid": ...}
  {"ev": "assign" | "revoke" | "lost", "partitions": [...]}   rebalance callbacks
  {"ev": "recs", "recs": [[partition, offset, value], ...]}   a consumed batch
  {"ev": "commit", "offsets": {partition: next offset}}       a commit that succeeded
  {"ev": "commit_failed", "error": ...}
  {"ev": "error", "error": ...}                               a consumer error event
  {"ev": "closed"}

Each line also has "t" (time.time()) and "name". A batch is logged ("recs") before it is
committed, and the commit only after the broker acknowledged it, so the records after
a member's last "commit" line are exactly the ones it consumed but may not have
committed. Lines are written with one os.write() each, so a SIGKILL can cut off at most
the line being written; readers ignore an incomplete last line.

Config keys: client ("confluent" | "kafka-python"), bootstrap, topic, group, name,
events (path), conf (extra client settings), batch (max records per poll),
process_delay (seconds slept between logging a batch and committing it: the
"processing time" that opens the uncommitted window), assignors (kafka-python only:
["range"], ["roundrobin"]), max_runtime (seconds; the member exits by itself after it,
so no test can leave one behind).
"""

import faulthandler
import json
import logging
import os
import signal
import sys
import time


def main():
    cfg = json.loads(sys.argv[1])
    fd = os.open(cfg["events"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(ev, **fields):
        fields.update(ev=ev, t=time.time(), name=cfg["name"])
        os.write(fd, (json.dumps(fields, separators=(",", ":")) + "\n").encode())

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    # The test sends SIGUSR1 before giving up on a group: every thread's stack goes to
    # this member's .out file, so a hung client can be told from a broker that did not answer.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Client warnings and errors (kafka-python logs through `logging`) go to the .out file.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    deadline = time.monotonic() + cfg.get("max_runtime", 240)
    run = run_confluent if cfg["client"] == "confluent" else run_kafka_python
    run(cfg, emit, lambda: bool(stop) or time.monotonic() >= deadline)
    emit("closed")
    os.close(fd)


def run_confluent(cfg, emit, should_stop):
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topic = cfg["topic"]
    c = Consumer({
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg["name"],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **cfg.get("conf", {}),
    })

    def callback(ev):
        def cb(_consumer, partitions):
            emit(ev, partitions=sorted(p.partition for p in partitions))
        return cb

    c.subscribe([topic], on_assign=callback("assign"), on_revoke=callback("revoke"), on_lost=callback("lost"))
    emit("started", pid=os.getpid())
    try:
        while not should_stop():
            recs = []
            for m in c.consume(num_messages=cfg.get("batch", 200), timeout=0.2):
                if m.error() is not None:
                    emit("error", error=str(m.error()))
                    continue
                recs.append([m.partition(), m.offset(), m.value().decode()])
            if not recs:
                continue
            emit("recs", recs=recs)
            time.sleep(cfg.get("process_delay", 0.0))
            offsets = _next_offsets(recs)
            try:
                result = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())],
                                  asynchronous=False)
            except KafkaException as e:
                emit("commit_failed", error=str(e))
                continue
            ok = {tp.partition: tp.offset for tp in result if tp.error is None}
            failed = {tp.partition: str(tp.error) for tp in result if tp.error is not None}
            if ok:
                emit("commit", offsets=ok)
            if failed:
                emit("commit_failed", error=failed)
    finally:
        c.close()


def run_kafka_python(cfg, emit, should_stop):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
    topic = cfg["topic"]
    conf = dict(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg["name"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30000,
    )
    if "assignors" in cfg:
        conf["partition_assignment_strategy"] = [assignors[a] for a in cfg["assignors"]]
    conf.update(cfg.get("conf", {}))
    c = KafkaConsumer(**conf)
    # Have the topic's partitions in the client's metadata before joining. A kafka-python
    # 3.0 leader that joins before its first metadata response assigns without them
    # ("No partition metadata for topic"), then, under CPU load, occasionally goes silent
    # (no heartbeat, no FindCoordinator, no JoinGroup) until its session expires: seen with
    # broker debug logs showing every JoinGroup/SyncGroup answered.
    deadline = time.monotonic() + 30
    while not c.partitions_for_topic(topic) and time.monotonic() < deadline:
        time.sleep(0.1)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoke", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assign", partitions=sorted(tp.partition for tp in assigned))

        def on_partitions_lost(self, lost):
            emit("lost", partitions=sorted(tp.partition for tp in lost))

    c.subscribe([topic], listener=Listener())
    emit("started", pid=os.getpid())
    try:
        while not should_stop():
            recs = []
            for tp, records in c.poll(timeout_ms=200, max_records=cfg.get("batch", 200)).items():
                recs += [[tp.partition, r.offset, r.value.decode()] for r in records]
            if not recs:
                continue
            recs.sort()
            emit("recs", recs=recs)
            time.sleep(cfg.get("process_delay", 0.0))
            offsets = _next_offsets(recs)
            try:
                c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
            except Exception as e:  # CommitFailedError, RebalanceInProgressError, ...: logged, not fatal
                emit("commit_failed", error=repr(e))
                continue
            emit("commit", offsets=offsets)
    finally:
        c.close(autocommit=False)


def _next_offsets(recs):
    """{partition: last consumed offset + 1} of a batch."""
    out = {}
    for p, o, _ in recs:
        out[p] = max(out.get(p, 0), o + 1)
    return out


if __name__ == "__main__":
    main()
