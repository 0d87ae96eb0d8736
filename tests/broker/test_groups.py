"""The classic consumer group coordinator, through confluent-kafka, kafka-python and raw
protocol requests.

What is proven:
- a group of consumer processes shares a topic so that, whenever the broker calls the
  group Stable, every partition has exactly one owner and each member's own view of its
  partitions is what the broker handed out; a member killed with SIGKILL is dropped after
  its session timeout and its partitions resume at its last committed offsets, so no
  record is lost and the only records delivered twice are ones a member consumed but had
  not committed;
- committed offsets (and their metadata) survive a broker restart, clean or SIGKILL, and
  new members resume exactly there;
- a static member (group.instance.id) that restarts within its session timeout gets its
  partitions back without the other members rebalancing;
- cooperative-sticky rebalances move only the partitions that change owner;
- kafka-python's range and roundrobin assignors produce their documented assignments;
- a non-consumer protocol ("connect") is coordinated with opaque metadata and assignments;
- ListGroups, DescribeGroups, DeleteGroups, OffsetCommit/OffsetFetch through the admin
  APIs and OffsetDelete answer as Kafka does, errors included;
- seeking (by offset and by timestamp) replays records inside a group;
- malformed or out-of-turn group requests get Kafka's error codes.

Consumers that must be killable run as separate processes (group_member.py) that log
their rebalance callbacks, consumed records and acknowledged commits to a file; each is
stopped by PID. Every wait is bounded by a deadline.
"""

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from kafka.protocol.admin.groups import DescribeGroupsRequest
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest

import rawkafka
from clients import HOUR_MS, now_ms
from kafkautil import admin, close_producer, consumer, create_topic, produce, producer, wait_for, watermarks

pytestmark = pytest.mark.timeout(180)

# Group settings for tests: no initial rebalance delay, few offsets partitions, session
# timeouts down to 1 s allowed (the crash test uses 4 s so a killed member goes quickly).
GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "4",
    "offsets.topic.replication.factor": "1",
}

MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")

# Kafka error codes.
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
GROUP_SUBSCRIBED_TO_TOPIC = 86
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16

# Session settings of the subprocess members, per client.
FAST_SESSION = {
    "confluent": {"session.timeout.ms": 4000, "heartbeat.interval.ms": 500},
    "kafka-python": {"session_timeout_ms": 4000, "heartbeat_interval_ms": 500},
}


# ----------------------------------------------------------------------------- member processes


class Member:
    """A group_member.py process. `name` is its client id (what DescribeGroups shows);
    `label` names its files (a restarted instance reuses the name, not the label)."""

    def __init__(self, workdir, name, label=None, **cfg):
        self.name = name
        self.label = label or name
        self.events_path = workdir / f"{self.label}.events.jsonl"
        self.output_path = workdir / f"{self.label}.out"
        cfg = {"name": name, "events": str(self.events_path), **cfg}
        self._out = open(self.output_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(MEMBER_SCRIPT), json.dumps(cfg)],
                                     stdout=self._out, stderr=subprocess.STDOUT)
        self.killed_at = None

    def events(self):
        """The member's events so far; the last line is dropped unless complete (a killed
        member may have been cut off while writing it)."""
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    def assignment(self, events=None):
        """The partitions the member owns according to its rebalance callbacks."""
        owned = set()
        for e in self.events() if events is None else events:
            if e["ev"] == "assign":
                owned |= set(e["partitions"])
            elif e["ev"] in ("revoke", "lost"):
                owned -= set(e["partitions"])
        return owned

    def callbacks(self):
        return [e for e in self.events() if e["ev"] in ("assign", "revoke", "lost")]

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: no commit, no LeaveGroup."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.killed_at = time.time()
        self._out.close()

    def terminate(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=45):
        """Waits for the exit that terminate() asked for; kills the member and fails if
        it does not come. Returns the exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"member {self.label} did not exit within {timeout}s:\n{self.output()}")
        finally:
            self._out.close()

    def output(self):
        try:
            return self.output_path.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return ""


@pytest.fixture
def members(tmp_path):
    """Starts group_member.py processes; every one still running is killed (by PID) at
    teardown."""
    started = []

    def start(name, **cfg):
        m = Member(tmp_path, name, **cfg)
        started.append(m)
        return m

    yield start
    for m in started:
        m.kill()


def stop_members(ms):
    """SIGTERM to all, then waits for each: a clean close (LeaveGroup) with exit code 0."""
    for m in ms:
        m.terminate()
    for m in ms:
        assert m.wait() == 0, f"member {m.label} exited with {m.proc.returncode}:\n{m.output()}"


def describe(a, group):
    return a.describe_consumer_groups([group], request_timeout=10)[group].result(15)


def wait_stable(a, group, live, topic, partitions, timeout=60):
    """Waits until the broker describes `group` as Stable with exactly the members `live`
    (matched by client id), every partition of `topic` assigned, and each member
    reporting through its own rebalance callbacks exactly the partitions the broker lists
    for it. Then asserts no partition has two owners and every member has some.

    Returns {member name: set of partitions}."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            d = describe(a, group)
        except KafkaException as e:
            last = f"DescribeGroups failed: {e}"
        else:
            by_broker = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
                         for m in d.members}
            reported = {m.name: m.assignment() for m in live}
            union = set().union(*reported.values()) if reported else set()
            last = f"state {d.state}, broker: {by_broker}, members report: {reported}"
            if (d.state == ConsumerGroupState.STABLE and len(d.members) == len(live)
                    and by_broker == reported and union == set(range(partitions))):
                break
        if time.monotonic() >= deadline:
            for m in live:
                if m.alive():
                    m.proc.send_signal(signal.SIGUSR1)  # stack dump into its .out file
            time.sleep(0.5)
            raise AssertionError(f"group {group} never settled with members {sorted(m.name for m in live)} "
                                 f"owning all {partitions} partitions within {timeout}s; last: {last}")
        time.sleep(0.2)
    owners = {}
    for name, parts in reported.items():
        assert parts, f"{name} owns no partition in a settled group: {reported}"
        for p in parts:
            assert p not in owners, f"partition {p} owned by both {owners[p]} and {name}"
            owners[p] = name
    return reported


def ownership_intervals(m):
    """[(partition, start, end)] of a member's ownership from its callbacks; an interval
    still open ends when the member was killed or closed."""
    events = m.events()
    end = m.killed_at or next((e["t"] for e in events if e["ev"] == "closed"), time.time())
    open_, out = {}, []
    for e in events:
        if e["ev"] == "assign":
            for p in e["partitions"]:
                open_.setdefault(p, e["t"])
        elif e["ev"] in ("revoke", "lost"):
            for p in e["partitions"]:
                if p in open_:
                    out.append((p, open_.pop(p), e["t"]))
    out += [(p, start, end) for p, start in open_.items()]
    return out


def assert_never_owned_twice(ms):
    """No two members ever held the same partition at the same time (a revoked or killed
    owner's interval ends before the next owner's begins; all processes share a clock)."""
    by_partition = collections.defaultdict(list)
    for m in ms:
        for p, start, end in ownership_intervals(m):
            by_partition[p].append((start, end, m.label))
    for p, ivs in sorted(by_partition.items()):
        ivs.sort()
        for (s1, e1, n1), (s2, _e2, n2) in zip(ivs, ivs[1:]):
            assert s2 >= e1, f"partition {p}: {n1} owned it until {e1:.3f}, {n2} from {s2:.3f}"


def deliveries(ms):
    """Counter {(partition, offset): times consumed} and {(partition, offset): value}
    over all members."""
    counts, values = collections.Counter(), {}
    for m in ms:
        for e in m.events():
            if e["ev"] == "recs":
                for p, o, v in e["recs"]:
                    counts[(p, o)] += 1
                    values[(p, o)] = v
    return counts, values


def uncommitted_windows(m):
    """Counter {(partition, offset)} of the records `m` consumed and never had a
    successful commit cover before it lost the partition (revoke/lost) or died: the
    only records another member may legitimately consume again."""
    pending = collections.defaultdict(list)
    window = collections.Counter()
    for e in m.events():
        if e["ev"] == "recs":
            for p, o, _ in e["recs"]:
                pending[p].append(o)
        elif e["ev"] == "commit":
            for p, o in e["offsets"].items():
                pending[int(p)] = [x for x in pending[int(p)] if x >= o]
        elif e["ev"] in ("revoke", "lost"):
            for p in e["partitions"]:
                window.update((p, o) for o in pending.pop(p, []))
    for p, offsets in pending.items():
        window.update((p, o) for o in offsets)
    return window


def check_consumption(ms, produced, victim=None):
    """Every produced record was consumed with its value; a record consumed more than once
    lies in some member's uncommitted window (the victim's, or, only after a logged
    commit failure, another member's). Prints and returns (extra deliveries, the
    victim's window size, the other members' window sizes summed)."""
    counts, values = deliveries(ms)
    missing = sorted(set(produced) - set(counts))
    assert not missing, f"{len(missing)} produced records never consumed, first {missing[:10]}"
    unknown = sorted(set(counts) - set(produced))
    assert not unknown, f"consumed records that were never produced: {unknown[:10]}"
    wrong = [(k, values[k], produced[k]) for k in sorted(counts) if values[k] != produced[k]]
    assert not wrong, f"consumed values differ from produced ones, first {wrong[:5]}"

    windows = {m.label: uncommitted_windows(m) for m in ms}
    allowed = sum(windows.values(), collections.Counter())
    extra = {k: n - 1 for k, n in counts.items() if n > 1}
    unexplained = {k: n for k, n in extra.items() if n > allowed[k]}
    victim_window = sum(windows[victim.label].values()) if victim else 0
    print(f"duplicates: {sum(extra.values())} extra deliveries of {len(extra)} records; "
          f"uncommitted windows: { {label: sum(w.values()) for label, w in windows.items()} }"
          + (f" (killed member {victim.label}: {victim_window})" if victim else ""))
    assert not unexplained, (
        f"{len(unexplained)} records delivered more often than any member left them uncommitted, "
        f"first {sorted(unexplained.items())[:10]}")
    for m in ms:
        if m is victim or not windows[m.label]:
            continue
        failures = [e for e in m.events() if e["ev"] == "commit_failed"]
        assert failures, (f"{m.label} left {sum(windows[m.label].values())} records uncommitted at a "
                          f"rebalance or close without any commit failing")
    others = sum(sum(w.values()) for label, w in windows.items() if victim is None or label != victim.label)
    return sum(extra.values()), victim_window, others


class BackgroundProducer:
    """Produces keyed records from a thread, about `rate` per second, until stopped (or
    `limit` records); `produced` maps (partition, offset) to the value string."""

    def __init__(self, b, topic, tag, rate=500, limit=200_000):
        self.b, self.topic, self.tag, self.rate, self.limit = b, topic, tag, rate, limit
        self.produced = {}
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        p = producer(self.b)

        def cb(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.produced[(msg.partition(), msg.offset())] = msg.value().decode()

        i = 0
        try:
            while not self._stop.is_set() and i < self.limit:
                for _ in range(self.rate // 10):
                    p.produce(self.topic, key=b"bg-%d" % (i % 777), value=f"{self.tag}-{i:07d}".encode(),
                              on_delivery=cb)
                    i += 1
                p.poll(0)
                self._stop.wait(0.1)
            left = p.flush(30)
            if left:
                self.errors.append(f"{left} records undelivered")
        except Exception as e:  # reported by stop()
            self.errors.append(repr(e))
        finally:
            close_producer(p)

    def stop(self):
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "background producer did not stop"
        assert not self.errors, f"background producer failed: {self.errors[:5]}"
        return self.produced


def produce_upfront(b, topic, n, tag):
    """n keyed records; returns {(partition, offset): value string}."""
    reports = produce(b, topic, [(b"key-%d" % (i % 1000), f"{tag}-{i:07d}".encode()) for i in range(n)],
                      report=lambda m: (m.partition(), m.offset(), m.value().decode()))
    return {(p, o): v for p, o, v in reports}


def wait_consumed(ms, produced, timeout=60):
    def done():
        counts, _ = deliveries(ms)
        return set(produced) <= set(counts)

    assert wait_for(done, timeout, interval=0.5), (
        f"not every produced record consumed within {timeout}s: "
        f"{len(set(produced) - set(deliveries(ms)[0]))} missing")


# ----------------------------------------------------------------------------- crash and join


@pytest.mark.timeout(240)
@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_member_crash_and_join(broker_factory, members, client):
    """Three consumer processes share 12 partitions while a producer keeps writing. One,
    which sleeps between logging a batch and committing it, is SIGKILLed while holding
    such a batch; after its session timeout the other two own everything; then a fourth
    joins. At each settled point ownership is complete, disjoint and agreed between broker
    and members; across the whole run no partition ever had two owners at once; every
    produced record was consumed with its value; and duplicates only come from
    uncommitted windows (the killed member's)."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    topic, group = "work", f"workers-{client}"
    create_topic(b, topic, 12)
    produced = produce_upfront(b, topic, 12_000, "up")
    bg = BackgroundProducer(b, topic, "bg").start()
    common = dict(client=client, bootstrap=b.bootstrap, topic=topic, group=group, conf=FAST_SESSION[client])
    try:
        m_a = members("member-a", **common)
        m_b = members("member-b", **common)
        victim = members("member-c", process_delay=0.25, **common)
        wait_stable(a, group, [m_a, m_b, victim], topic, 12)

        # SIGKILL while the victim holds a logged batch it has not committed yet.
        def victim_in_window():
            evs = victim.events()
            return bool(evs) and evs[-1]["ev"] == "recs"

        assert wait_for(victim_in_window, 30, interval=0.01), "the victim never consumed a batch"
        victim.kill()
        wait_stable(a, group, [m_a, m_b], topic, 12)

        m_d = members("member-d", **common)
        wait_stable(a, group, [m_a, m_b, m_d], topic, 12)
        time.sleep(1)  # some records produced under the final assignment
    finally:
        produced.update(bg.stop())

    everyone = [m_a, m_b, victim, m_d]
    wait_consumed(everyone, produced)
    stop_members([m_a, m_b, m_d])
    assert_never_owned_twice(everyone)
    extra, window, others = check_consumption(everyone, produced, victim=victim)
    # Duplicates only from the killed member's consumed-but-uncommitted batch (plus, if a
    # commit of a live member failed, that member's batch).
    assert extra <= window + others
    assert not [e for m in everyone for e in m.events() if e["ev"] == "error"], "consumer error events"


# ----------------------------------------------------------------------------- offsets across restarts


def wait_assignment(c, n, timeout=30):
    """Polls a subscribed confluent consumer until it has n partitions; returns the
    messages polled meanwhile as [(partition, offset)]."""
    seen = []
    deadline = time.monotonic() + timeout
    while len(c.assignment()) < n:
        assert time.monotonic() < deadline, f"assignment {c.assignment()} after {timeout}s, want {n} partitions"
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            seen.append((m.partition(), m.offset()))
    return seen


def group_consumer(b, group, **conf):
    return Consumer({
        "bootstrap.servers": b.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **conf,
    })


def kp_group_consumer(b, group, **conf):
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000, **conf)


def kp_wait_assignment(kc, n, timeout=30):
    deadline = time.monotonic() + timeout
    while len(kc.assignment()) < n:
        assert time.monotonic() < deadline, f"kafka-python assignment {kc.assignment()} after {timeout}s"
        kc.poll(timeout_ms=200, max_records=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_committed_offsets_survive_broker_restart(broker_factory, stop):
    """Members of two groups (confluent-kafka and kafka-python) commit offsets with
    metadata, the confluent group twice per partition (the second commit wins), and
    close. After a broker restart (clean, or SIGKILL: acknowledged commits are on disk)
    committed() returns exactly the last commits with their metadata, a partition never
    committed has none, and new members start consuming each partition at precisely its
    committed offset (0 for the uncommitted one, under auto.offset.reset=earliest; at
    the end, the next record produced)."""
    from kafka import OffsetAndMetadata
    from kafka import TopicPartition as KTP

    b = broker_factory(overrides=GROUP_OVERRIDES)
    topic = "resume"
    create_topic(b, topic, 6)
    for p in range(6):
        produce(b, topic, [b"p%d-%03d" % (p, i) for i in range(100)], partition=p)
    want = {1: 17, 2: 27, 3: 37, 4: 47, 5: 100}  # partition 0: never committed; 5: at the end

    c = group_consumer(b, "resume-ck")
    try:
        c.subscribe([topic])
        wait_assignment(c, 6)
        for offsets in ([TopicPartition(topic, p, 3, "first") for p in want],
                        [TopicPartition(topic, p, o, f"meta-{p}") for p, o in want.items()]):
            result = c.commit(offsets=offsets, asynchronous=False)
            assert [tp.error for tp in result] == [None] * len(want), result
    finally:
        c.close()
    kc = kp_group_consumer(b, "resume-kp")
    try:
        kc.subscribe([topic])
        kp_wait_assignment(kc, 6)
        kc.commit({KTP(topic, p): OffsetAndMetadata(o - 1, f"kp-{p}", -1) for p, o in want.items()})
    finally:
        kc.close(autocommit=False)

    if stop == "sigterm":
        assert b.stop() == 0
    else:
        b.kill()
    b.start()

    c = group_consumer(b, "resume-ck")
    p5 = producer(b)
    try:
        got = {tp.partition: tp for tp in c.committed([TopicPartition(topic, p) for p in range(6)], timeout=20)}
        assert {p: tp.offset for p, tp in got.items()} == {0: OFFSET_INVALID, **want}
        assert {p: got[p].metadata for p in want} == {p: f"meta-{p}" for p in want}
        c.subscribe([topic])
        first = {}
        extra_sent = False
        deadline = time.monotonic() + 40
        while len(first) < 6 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                first.setdefault(m.partition(), m.offset())
            if not extra_sent and len(c.assignment()) == 6:
                # Partition 5 is committed at its end: only a new record shows where it resumes.
                p5.produce(topic, value=b"p5-after-restart", partition=5)
                assert p5.flush(15) == 0
                extra_sent = True
        assert first == {0: 0, **want}, f"first consumed offset per partition {first}"
    finally:
        c.close()
        close_producer(p5)

    kc = kp_group_consumer(b, "resume-kp")
    try:
        for p, o in want.items():
            om = kc.committed(KTP(topic, p), metadata=True)
            assert (om.offset, om.metadata) == (o - 1, f"kp-{p}"), (p, om)
        assert kc.committed(KTP(topic, 0)) is None
        kc.subscribe([topic])
        first = {}
        deadline = time.monotonic() + 40
        while len(first) < 6 and time.monotonic() < deadline:
            for tp, records in kc.poll(timeout_ms=300).items():
                first.setdefault(tp.partition, records[0].offset)
        assert first == {0: 0, **{p: o - 1 for p, o in want.items()}}, first
    finally:
        kc.close(autocommit=False)


# ----------------------------------------------------------------------------- static membership


@pytest.mark.timeout(150)
def test_static_member_restart_keeps_its_partitions(broker_factory, members):
    """Three confluent-kafka members with group.instance.id and a 10 s session. The third
    is SIGKILLed and restarted at once with the same group.instance.id: it gets exactly
    its old partitions back under a new member id, and the other two see no rebalance
    (no assign/revoke callback) even after the killed instance's session timeout has
    passed."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    topic, group = "static", "static-group"
    create_topic(b, topic, 12)
    produce_upfront(b, topic, 1200, "st")

    def start(i, label=None):
        conf = {"group.instance.id": f"static-{i}", "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000}
        return members(f"static-{i}", label=label, client="confluent", bootstrap=b.bootstrap, topic=topic,
                       group=group, conf=conf)

    s1 = start(1)  # alone first: it is the leader, and stays the leader
    wait_stable(a, group, [s1], topic, 12)
    s2, s3 = start(2), start(3)
    before = wait_stable(a, group, [s1, s2, s3], topic, 12)
    old_id = {m.group_instance_id: m.member_id for m in describe(a, group).members}
    calls = {m.name: len(m.callbacks()) for m in (s1, s2)}

    s3.kill()
    s3b = start(3, label="static-3-restarted")
    assert wait_for(lambda: s3b.assignment(), 30), f"restarted static member got nothing:\n{s3b.output()}"
    assert s3b.assignment() == before["static-3"]
    # Past the killed instance's session timeout: a coordinator that still tracked it
    # separately would expire it now and rebalance.
    time.sleep(max(0.0, s3.killed_at + 10 + 3 - time.time()))
    after = wait_stable(a, group, [s1, s2, s3b], topic, 12)
    assert after == before
    assert [e["ev"] for e in s3b.callbacks()] == ["assign"]
    for m in (s1, s2):
        assert len(m.callbacks()) == calls[m.name], f"{m.name} saw a rebalance: {m.callbacks()[calls[m.name]:]}"
    now_id = {m.group_instance_id: m.member_id for m in describe(a, group).members}
    assert set(now_id) == {"static-1", "static-2", "static-3"}
    assert now_id["static-1"] == old_id["static-1"] and now_id["static-2"] == old_id["static-2"]
    assert now_id["static-3"] != old_id["static-3"], "a restarted static member gets a new member id"
    stop_members([s1, s2, s3b])


# ----------------------------------------------------------------------------- cooperative-sticky


@pytest.mark.timeout(150)
def test_cooperative_sticky_rebalance_is_incremental(broker_factory, members):
    """Two confluent-kafka members with partition.assignment.strategy=cooperative-sticky
    share 12 partitions, then a third joins while a producer keeps writing. The first two
    only give up partitions (incremental revokes, never their whole assignment, nothing
    new assigned to them), end with subsets of what they had, the newcomer gets 4; no
    partition ever has two owners; every record is consumed."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    topic, group = "coop", "coop-group"
    create_topic(b, topic, 12)
    produced = produce_upfront(b, topic, 6000, "co")
    conf = {"partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500}
    common = dict(client="confluent", bootstrap=b.bootstrap, topic=topic, group=group, conf=conf)
    bg = BackgroundProducer(b, topic, "cobg").start()
    try:
        m1, m2 = members("coop-1", **common), members("coop-2", **common)
        before = wait_stable(a, group, [m1, m2], topic, 12)
        seen = {m.name: len(m.events()) for m in (m1, m2)}
        m3 = members("coop-3", **common)
        after = wait_stable(a, group, [m1, m2, m3], topic, 12)
        time.sleep(1)
    finally:
        produced.update(bg.stop())

    assert len(after["coop-3"]) == 4, after
    for m in (m1, m2):
        assert after[m.name] < before[m.name], f"{m.name}: {before[m.name]} -> {after[m.name]}"
        new = m.events()[seen[m.name]:]
        revoked = [set(e["partitions"]) for e in new if e["ev"] == "revoke"]
        assert revoked and all(r < before[m.name] for r in revoked), f"{m.name} revokes {revoked}"
        assert set().union(*revoked) == before[m.name] - after[m.name]
        assert not [e for e in new if e["ev"] == "assign" and e["partitions"]], f"{m.name} got new partitions"
        assert not [e for e in new if e["ev"] == "lost"]
    d = describe(a, group)
    assert d.partition_assignor == "cooperative-sticky"

    everyone = [m1, m2, m3]
    wait_consumed(everyone, produced)
    stop_members(everyone)
    assert_never_owned_twice(everyone)
    check_consumption(everyone, produced)


# ----------------------------------------------------------------------------- kafka-python assignors


@pytest.mark.timeout(120)
@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_kafka_python_assignors(broker_factory, members, assignor):
    """Three kafka-python members with one assignor each get its documented assignment of
    12 partitions (range: three contiguous blocks of four; roundrobin: every third
    partition), the broker reports that assignor as the group's protocol, and together
    they consume every record exactly once (no member fails)."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    topic, group = "kp-assign", f"kp-{assignor}"
    create_topic(b, topic, 12)
    produced = produce_upfront(b, topic, 3000, "kp")
    conf = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
    ms = [members(f"kp-{assignor}-{i}", client="kafka-python", bootstrap=b.bootstrap, topic=topic,
                  group=group, conf=conf, assignors=[assignor]) for i in range(3)]
    final = wait_stable(a, group, ms, topic, 12)
    shapes = sorted(sorted(parts) for parts in final.values())
    if assignor == "range":
        assert shapes == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    else:
        assert shapes == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    assert describe(a, group).partition_assignor == assignor
    wait_consumed(ms, produced)
    stop_members(ms)
    assert_never_owned_twice(ms)
    check_consumption(ms, produced)


# ----------------------------------------------------------------------------- admin


def code_of(fut, timeout=20):
    try:
        fut.result(timeout)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def offsets_codes(fut):
    """Error codes of an alter/list offsets future: {"group": code} for a request-level
    failure, else {partition: code}."""
    try:
        res = fut.result(20)
    except KafkaException as e:
        return {"group": e.args[0].code()}
    return {tp.partition: (tp.error.code() if tp.error else 0) for tp in res.topic_partitions}


def listed_offsets(a, group, topic, partitions):
    [fut] = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])],
        request_timeout=15).values()
    res = fut.result(20)
    assert res.group_id == group
    return {tp.partition: tp.offset for tp in res.topic_partitions}


@pytest.mark.timeout(120)
def test_group_admin_apis(broker_factory):
    """ListGroups, DescribeGroups, OffsetFetch/OffsetCommit through the admin API,
    OffsetDelete and DeleteGroups, with confluent-kafka's AdminClient (and kafka-python
    where confluent-kafka has no call): an active group is Stable with its member and
    assignment, an emptied one Empty; offsets can be listed and altered only while a group
    is empty (UNKNOWN_MEMBER_ID otherwise); offsets of a topic the active group subscribes
    to cannot be deleted (GROUP_SUBSCRIBED_TO_TOPIC); a non-empty group cannot be deleted
    (NON_EMPTY_GROUP); deleting an unknown group gives GROUP_ID_NOT_FOUND."""
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    import kafka.errors as kerrors

    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    topic = "adm"
    create_topic(b, topic, 3)
    for p in range(3):
        produce(b, topic, [b"v%d" % i for i in range(10)], partition=p)

    active = group_consumer(b, "adm-active", **{"client.id": "adm-client"})
    k = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    try:
        active.subscribe([topic])
        wait_assignment(active, 3)
        active.commit(offsets=[TopicPartition(topic, p, 5) for p in range(3)], asynchronous=False)
        leaver = group_consumer(b, "adm-empty")
        try:
            leaver.subscribe([topic])
            wait_assignment(leaver, 3)
            leaver.commit(offsets=[TopicPartition(topic, p, 7) for p in range(3)], asynchronous=False)
        finally:
            leaver.close()  # leaves: the group is Empty but keeps its offsets

        listing = a.list_consumer_groups(request_timeout=15).result(20)
        assert not listing.errors, listing.errors
        states = {g.group_id: g.state for g in listing.valid}
        assert states.get("adm-active") == ConsumerGroupState.STABLE, states
        assert states.get("adm-empty") == ConsumerGroupState.EMPTY, states
        stable_only = a.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=15).result(20)
        assert [g.group_id for g in stable_only.valid] == ["adm-active"]
        assert {"adm-active", "adm-empty"} <= {g["group_id"] for g in k.list_groups()}

        descs = a.describe_consumer_groups(["adm-active", "adm-empty"], request_timeout=15)
        d = descs["adm-active"].result(20)
        assert d.state == ConsumerGroupState.STABLE and not d.is_simple_consumer_group
        assert d.partition_assignor == "range"
        assert d.coordinator is not None and d.coordinator.port == b.port
        [member] = d.members
        assert member.client_id == "adm-client" and member.member_id
        assert sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions) == \
            [(topic, 0), (topic, 1), (topic, 2)]
        d = descs["adm-empty"].result(20)
        assert (d.state, d.members) == (ConsumerGroupState.EMPTY, [])

        # An unknown group: Dead (DescribeGroups up to v5) or GROUP_ID_NOT_FOUND (v6).
        try:
            d = a.describe_consumer_groups(["adm-nope"], request_timeout=15)["adm-nope"].result(20)
            assert (d.state, d.members) == (ConsumerGroupState.DEAD, [])
        except KafkaException as e:
            assert e.args[0].code() == GROUP_ID_NOT_FOUND, e

        assert listed_offsets(a, "adm-active", topic, range(3)) == {0: 5, 1: 5, 2: 5}
        assert listed_offsets(a, "adm-empty", topic, range(3)) == {0: 7, 1: 7, 2: 7}

        # Altering offsets: only while the group has no members.
        [fut] = a.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("adm-empty", [TopicPartition(topic, p, 2 + p) for p in range(3)])],
            request_timeout=15).values()
        assert offsets_codes(fut) == {0: 0, 1: 0, 2: 0}
        assert listed_offsets(a, "adm-empty", topic, range(3)) == {0: 2, 1: 3, 2: 4}
        [fut] = a.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("adm-active", [TopicPartition(topic, 0, 1)])], request_timeout=15).values()
        codes = offsets_codes(fut)
        assert set(codes.values()) == {kerrors.UnknownMemberIdError.errno}, codes
        assert listed_offsets(a, "adm-active", topic, range(3)) == {0: 5, 1: 5, 2: 5}

        # OffsetDelete (kafka-python: confluent-kafka has no binding for it).
        res = k.delete_group_offsets("adm-empty", [KTP(topic, 0)])
        assert res == {KTP(topic, 0): kerrors.NoError}, res
        assert listed_offsets(a, "adm-empty", topic, range(3)) == {0: OFFSET_INVALID, 1: 3, 2: 4}
        res = k.delete_group_offsets("adm-active", [KTP(topic, 1)])
        assert res == {KTP(topic, 1): kerrors.GroupSubscribedToTopicError}, res
        assert listed_offsets(a, "adm-active", topic, range(3)) == {0: 5, 1: 5, 2: 5}

        fs = a.delete_consumer_groups(["adm-active", "adm-empty", "adm-nope"], request_timeout=15)
        assert {g: code_of(f) for g, f in fs.items()} == {
            "adm-active": NON_EMPTY_GROUP, "adm-empty": 0, "adm-nope": GROUP_ID_NOT_FOUND}
        listing = a.list_consumer_groups(request_timeout=15).result(20)
        assert "adm-empty" not in {g.group_id for g in listing.valid}
        assert listed_offsets(a, "adm-empty", topic, range(3)) == {p: OFFSET_INVALID for p in range(3)}
    finally:
        active.close()
        k.close()

    # Once its member left, the other group can go too.
    fs = a.delete_consumer_groups(["adm-active"], request_timeout=15)
    assert code_of(fs["adm-active"]) == 0
    assert listed_offsets(a, "adm-active", topic, range(3)) == {p: OFFSET_INVALID for p in range(3)}


# ----------------------------------------------------------------------------- seek and replay


def poll_records(c, count, timeout=30):
    """[(partition, offset, value)] of the next `count` records of a confluent consumer."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=count - len(out), timeout=0.5):
            assert m.error() is None, m.error()
            out.append((m.partition(), m.offset(), m.value()))
    return out


@pytest.mark.timeout(120)
def test_seek_and_replay_in_a_group(broker_factory):
    """Group members (confluent-kafka, then kafka-python) consume two partitions of 400
    records with CreateTime timestamps, then seek one partition back to an offset and the
    other to the offset offsets_for_times() finds for a timestamp, and get exactly the same
    records again. Seeking changes no committed offset, and consumed records stay in the
    log (the log start is still 0)."""
    from kafka import OffsetAndMetadata
    from kafka import TopicPartition as KTP

    b = broker_factory(overrides=GROUP_OVERRIDES)
    topic = "replay"
    create_topic(b, topic, 2)
    n = 400
    base_ts = now_ms() - HOUR_MS
    for p in (0, 1):
        produce(b, topic, [(b"k%d" % i, b"p%d-v%03d" % (p, i)) for i in range(n)], partition=p,
                timestamps=[base_ts + 10 * i for i in range(n)])
    want = {(p, i): b"p%d-v%03d" % (p, i) for p in (0, 1) for i in range(n)}

    def records(p, start):
        return [(p, i, want[(p, i)]) for i in range(start, n)]

    lookup = consumer(b)  # ListOffsets on a consumer without fetches in flight
    c = group_consumer(b, "replayers")
    try:
        c.subscribe([topic])
        first = poll_records(c, 2 * n)
        assert {(p, o): v for p, o, v in first} == want and len(first) == 2 * n
        c.commit(offsets=[TopicPartition(topic, p, n) for p in (0, 1)], asynchronous=False)

        c.seek(TopicPartition(topic, 0, 100))
        assert poll_records(c, n - 100) == records(0, 100)
        [tp] = lookup.offsets_for_times([TopicPartition(topic, 1, base_ts + 2500)], timeout=15)
        assert tp.offset == 250
        c.seek(tp)
        assert poll_records(c, n - 250) == records(1, 250)
        assert poll_records(c, 1, timeout=1) == [], "records beyond the replayed ones"
        committed = c.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=15)
        assert [tp.offset for tp in committed] == [n, n]
    finally:
        c.close()
        lookup.close()
    for p in (0, 1):
        assert watermarks(b, topic, p) == (0, n)

    kc = kp_group_consumer(b, "replayers-kp")
    try:
        kc.subscribe([topic])
        got = []
        deadline = time.monotonic() + 40
        while len(got) < 2 * n and time.monotonic() < deadline:
            for ktp, recs in kc.poll(timeout_ms=300).items():
                got += [(ktp.partition, r.offset, r.value) for r in recs]
        assert sorted(got) == sorted((p, o, v) for (p, o), v in want.items())
        kc.commit({KTP(topic, p): OffsetAndMetadata(n, "", -1) for p in (0, 1)})

        def replay(count):
            out = []
            deadline = time.monotonic() + 30
            while len(out) < count and time.monotonic() < deadline:
                for ktp, recs in kc.poll(timeout_ms=300, max_records=count - len(out)).items():
                    out += [(ktp.partition, r.offset, r.value) for r in recs]
            return out

        kc.seek(KTP(topic, 0), 300)
        assert replay(n - 300) == records(0, 300)
        found = kc.offsets_for_times({KTP(topic, 1): base_ts + 3005})
        assert found[KTP(topic, 1)].offset == 301
        kc.seek(KTP(topic, 1), found[KTP(topic, 1)].offset)
        assert replay(n - 301) == records(1, 301)
        assert kc.committed(KTP(topic, 0)) == n and kc.committed(KTP(topic, 1)) == n
    finally:
        kc.close(autocommit=False)


# ----------------------------------------------------------------------------- raw protocol

JOIN_V, SYNC_V, HEARTBEAT_V, LEAVE_V, COMMIT_V, FETCH_V, DESCRIBE_V = 7, 5, 3, 3, 7, 5, 4


def find_coordinator(port, group, timeout=30):
    """FindCoordinator v2 until the broker names a coordinator (the first lookup creates
    __consumer_offsets; COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS meanwhile).
    Returns (node_id, host, port)."""
    deadline = time.monotonic() + timeout
    with rawkafka.Connection(port) as conn:
        while True:
            r = conn.call(FindCoordinatorRequest(version=2, key=group, key_type=0))
            if r.error_code == rawkafka.NONE:
                return r.node_id, r.host, r.port
            assert r.error_code in (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR), r
            assert time.monotonic() < deadline, f"no coordinator for {group} within {timeout}s: {r}"
            time.sleep(0.2)


class RawMember:
    """A group member speaking the classic protocol by hand, on its own connection (a
    JoinGroup the broker parks until the others rejoin blocks only this connection).
    Looks up the coordinator first, as clients do."""

    def __init__(self, port, group, protocol_type="consumer", protocols=(("range", b"meta"),),
                 session_ms=30000, rebalance_ms=30000):
        find_coordinator(port, group)
        self.conn = rawkafka.Connection(port, client_id=f"raw-{group}")
        self.group, self.protocol_type, self.protocols = group, protocol_type, list(protocols)
        self.session_ms, self.rebalance_ms = session_ms, rebalance_ms
        self.member_id, self.generation = "", -1

    def join_request(self, version=JOIN_V, member_id=None, session_ms=None, protocol_type=None, protocols=None):
        proto = JoinGroupRequest.JoinGroupRequestProtocol
        return JoinGroupRequest(
            version=version, group_id=self.group,
            session_timeout_ms=self.session_ms if session_ms is None else session_ms,
            rebalance_timeout_ms=self.rebalance_ms,
            member_id=self.member_id if member_id is None else member_id, group_instance_id=None,
            protocol_type=self.protocol_type if protocol_type is None else protocol_type,
            protocols=[proto(name=n, metadata=m) for n, m in (self.protocols if protocols is None else protocols)],
            reason=None)

    def get_member_id(self):
        """The first JoinGroup (v4+) of a new member: MEMBER_ID_REQUIRED with its id."""
        r = self.conn.call(self.join_request(member_id=""))
        assert r.error_code == rawkafka.MEMBER_ID_REQUIRED and r.member_id, r
        self.member_id = r.member_id

    def send_join(self):
        return self.conn.send(self.join_request())

    def finish_join(self, ticket, timeout=30):
        r = self.conn.recv(ticket, timeout)
        assert r.error_code == rawkafka.NONE, r
        assert r.member_id == self.member_id
        self.generation = r.generation_id
        return r

    def join(self, timeout=30):
        if not self.member_id:
            self.get_member_id()
        return self.finish_join(self.send_join(), timeout)

    def sync_request(self, assignments=None, generation=None, member_id=None):
        a = SyncGroupRequest.SyncGroupRequestAssignment
        return SyncGroupRequest(
            version=SYNC_V, group_id=self.group,
            generation_id=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id, group_instance_id=None,
            assignments=[a(member_id=m, assignment=v) for m, v in (assignments or {}).items()])

    def sync(self, assignments=None, **kw):
        return self.conn.call(self.sync_request(assignments, **kw), timeout=30)

    def heartbeat(self, generation=None, member_id=None):
        return self.conn.call(HeartbeatRequest(
            version=HEARTBEAT_V, group_id=self.group,
            generation_id=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id, group_instance_id=None)).error_code

    def commit(self, topic, offset, generation=None, member_id=None):
        """OffsetCommit of partition 0; returns its error code."""
        t = OffsetCommitRequest.OffsetCommitRequestTopic
        r = self.conn.call(OffsetCommitRequest(
            version=COMMIT_V, group_id=self.group,
            generation_id_or_member_epoch=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id, group_instance_id=None,
            topics=[t(name=topic, partitions=[t.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_metadata="")])]))
        [[code]] = [[p.error_code for p in tr.partitions] for tr in r.topics]
        return code

    def leave(self, member_id=None):
        """LeaveGroup v3; returns (top-level error, member error)."""
        mi = LeaveGroupRequest.MemberIdentity
        r = self.conn.call(LeaveGroupRequest(version=LEAVE_V, group_id=self.group, members=[
            mi(member_id=self.member_id if member_id is None else member_id, group_instance_id=None)]))
        [m] = r.members
        return r.error_code, m.error_code

    def close(self):
        self.conn.close()


def fetch_offset(port, group, topic):
    """OffsetFetch of partition 0: (committed offset, metadata, error)."""
    t = OffsetFetchRequest.OffsetFetchRequestTopic
    with rawkafka.Connection(port) as conn:
        r = conn.call(OffsetFetchRequest(version=FETCH_V, group_id=group,
                                         topics=[t(name=topic, partition_indexes=[0])]))
    assert r.error_code == rawkafka.NONE, r
    [[p]] = [tr.partitions for tr in r.topics]
    return p.committed_offset, p.metadata, p.error_code


def describe_raw(port, group):
    with rawkafka.Connection(port) as conn:
        r = conn.call(DescribeGroupsRequest(version=DESCRIBE_V, groups=[group], include_authorized_operations=False))
    [g] = r.groups
    assert g.error_code == rawkafka.NONE, g
    return g


@pytest.mark.timeout(90)
def test_connect_protocol_group(broker_factory):
    """Two members join a group with protocol type "connect" (Kafka Connect's workers),
    offering protocols sessioned and compatible with their own metadata. The coordinator
    treats metadata and assignments as opaque bytes: the group settles on "sessioned", the
    leader gets both members' metadata for it, the leader's SyncGroup assignments reach
    each member byte for byte, DescribeGroups shows them, and leaving empties the group."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    group = "connect-cluster"
    assert find_coordinator(b.port, group) == (0, "127.0.0.1", b.port)
    meta1, meta2 = b"\x00\x01worker-1:8083\x00\x00\x00\x07", b"\x00\x01worker-2:8083\x00\x00\x00\x07"
    m1 = RawMember(b.port, group, "connect", [("sessioned", meta1), ("compatible", b"c1")])
    m2 = RawMember(b.port, group, "connect", [("sessioned", meta2), ("compatible", b"c2"), ("default", b"d2")])
    try:
        r = m1.join()
        assert (r.protocol_type, r.protocol_name, r.leader) == ("connect", "sessioned", m1.member_id)
        assert [(x.member_id, x.metadata) for x in r.members] == [(m1.member_id, meta1)]
        first_generation = r.generation_id
        assert m1.sync({m1.member_id: b"solo"}).assignment == b"solo"

        m2.get_member_id()
        t2 = m2.send_join()  # parked until m1 rejoins
        assert wait_for(lambda: m1.heartbeat() == rawkafka.REBALANCE_IN_PROGRESS, 10), \
            "heartbeat of the old member never reported the rebalance"
        r1 = m1.finish_join(m1.send_join())
        r2 = m2.finish_join(t2)
        assert r1.generation_id == r2.generation_id == first_generation + 1
        assert r1.leader == r2.leader == m1.member_id
        assert (r2.protocol_type, r2.protocol_name) == ("connect", "sessioned")
        assert sorted((x.member_id, x.metadata) for x in r1.members) == sorted(
            [(m1.member_id, meta1), (m2.member_id, meta2)])
        assert r2.members == []

        a1, a2 = b"\x00\x01assignment for worker 1 \xff", b"\x00\x01assignment for worker 2 \x00"
        t2 = m2.conn.send(m2.sync_request({}))  # a follower's SyncGroup waits for the leader's
        s1 = m1.sync({m1.member_id: a1, m2.member_id: a2})
        s2 = m2.conn.recv(t2, 30)
        assert (s1.error_code, s1.assignment) == (0, a1)
        assert (s2.error_code, s2.assignment) == (0, a2)
        assert (s2.protocol_type, s2.protocol_name) == ("connect", "sessioned")
        assert m1.heartbeat() == m2.heartbeat() == rawkafka.NONE

        g = describe_raw(b.port, group)
        assert (g.group_state, g.protocol_type, g.protocol_data) == ("Stable", "connect", "sessioned")
        assert sorted((x.member_id, x.member_metadata, x.member_assignment) for x in g.members) == sorted(
            [(m1.member_id, meta1, a1), (m2.member_id, meta2, a2)])

        assert m2.leave() == (0, 0)
        assert wait_for(lambda: m1.heartbeat() == rawkafka.REBALANCE_IN_PROGRESS, 10)
        r = m1.join()
        assert r.generation_id == first_generation + 2 and [x.member_id for x in r.members] == [m1.member_id]
        assert m1.sync({m1.member_id: a1}).assignment == a1
        assert m1.leave() == (0, 0)
        assert describe_raw(b.port, group).group_state == "Empty"
    finally:
        m1.close()
        m2.close()


@pytest.mark.timeout(90)
def test_group_requests_out_of_turn_get_kafka_errors(broker_factory):
    """Group requests that are malformed or out of turn, answered as Kafka's classic
    coordinator answers them:
    - JoinGroup v4+ without a member id: MEMBER_ID_REQUIRED with a fresh member id, on
      every version the broker offers (v0-v3 join directly);
    - a session timeout outside group.min/max.session.timeout.ms: INVALID_SESSION_TIMEOUT;
    - a protocol type, or only protocols, the group's members do not share, or none at
      all: INCONSISTENT_GROUP_PROTOCOL;
    - OffsetCommit / Heartbeat / SyncGroup with a stale generation: ILLEGAL_GENERATION;
      from an unknown member: UNKNOWN_MEMBER_ID;
    - Heartbeat while the group rebalances: REBALANCE_IN_PROGRESS; OffsetCommit then is
      still accepted (what eager consumers do in their revoke callback), but not between
      the join and the sync (REBALANCE_IN_PROGRESS);
    - LeaveGroup of an unknown member: UNKNOWN_MEMBER_ID for that member.
    No rejected commit changes the committed offset."""
    b = broker_factory(overrides={**GROUP_OVERRIDES, "group.min.session.timeout.ms": "6000",
                                  "group.max.session.timeout.ms": "60000"})
    port = b.port
    apis = rawkafka.api_versions(port)
    for key in (8, 9, 10, 11, 12, 13, 14, 15, 16, 42, 47):  # OffsetCommit .. OffsetDelete
        assert key in apis, f"ApiVersions lacks API {key}: {sorted(apis)}"
    join_max = apis[rawkafka.JOIN_GROUP][1]
    assert join_max >= 5, f"JoinGroup up to v{join_max} only: static membership needs v5"
    topic = "raw-commits"
    create_topic(b, topic)
    find_coordinator(port, "gen")

    # MEMBER_ID_REQUIRED on every version from 4; one group per version, since a pending
    # member holds up the others' join until it joins or its session expires.
    ids = []
    for v in range(0, min(join_max, JoinGroupRequest.max_version) + 1):
        m = RawMember(port, f"mir-v{v}")
        try:
            r = m.conn.call(m.join_request(version=v, member_id=""))
            if v >= 4:
                assert r.error_code == rawkafka.MEMBER_ID_REQUIRED and r.member_id, (v, r)
                m.member_id = r.member_id
                r = m.conn.call(m.join_request(version=v), timeout=30)
            assert r.error_code == rawkafka.NONE and r.member_id and r.generation_id >= 1, (v, r)
            assert r.leader == r.member_id
            ids.append(r.member_id)
        finally:
            m.close()
    assert len(set(ids)) == len(ids), ids

    for session_ms in (5999, 60001):
        m = RawMember(port, "sess", session_ms=session_ms)
        try:
            r = m.conn.call(m.join_request(member_id=""))
            assert r.error_code == rawkafka.INVALID_SESSION_TIMEOUT, (session_ms, r)
        finally:
            m.close()

    first = RawMember(port, "proto")
    other = RawMember(port, "proto")
    try:
        first.join()
        first.sync({first.member_id: b""})
        for protocol_type, protocols in [("consumer", [("no-such-assignor", b"x")]),
                                         ("connect", [("range", b"meta")]),
                                         ("consumer", [])]:
            r = other.conn.call(other.join_request(member_id="", protocol_type=protocol_type, protocols=protocols))
            assert r.error_code == rawkafka.INCONSISTENT_GROUP_PROTOCOL, (protocol_type, protocols, r)
        assert first.heartbeat() == rawkafka.NONE, "a refused join must not disturb the group"
    finally:
        first.close()
        other.close()
    lone = RawMember(port, "proto-empty")
    try:
        r = lone.conn.call(lone.join_request(member_id="", protocols=[]))
        assert r.error_code == rawkafka.INCONSISTENT_GROUP_PROTOCOL, r
    finally:
        lone.close()

    a, c = RawMember(port, "gen"), RawMember(port, "gen")
    try:
        a.join()
        g1 = a.generation
        assert a.sync({a.member_id: b"x"}).error_code == rawkafka.NONE
        assert a.commit(topic, 10) == rawkafka.NONE
        # The leader rejoining a Stable group starts a new generation; until its SyncGroup
        # the group is between join and sync.
        a.finish_join(a.send_join())
        g2 = a.generation
        assert g2 == g1 + 1
        assert a.commit(topic, 11) == rawkafka.REBALANCE_IN_PROGRESS
        assert a.sync({a.member_id: b"x"}, generation=g1).error_code == rawkafka.ILLEGAL_GENERATION
        assert a.sync({a.member_id: b"x"}, member_id="ghost").error_code == rawkafka.UNKNOWN_MEMBER_ID
        assert a.sync({a.member_id: b"x"}).error_code == rawkafka.NONE

        assert a.commit(topic, 12, generation=g1) == rawkafka.ILLEGAL_GENERATION
        assert a.heartbeat(generation=g1) == rawkafka.ILLEGAL_GENERATION
        assert a.commit(topic, 13, member_id="ghost") == rawkafka.UNKNOWN_MEMBER_ID
        assert a.heartbeat(member_id="ghost") == rawkafka.UNKNOWN_MEMBER_ID
        assert a.commit(topic, 14) == rawkafka.NONE
        assert fetch_offset(port, "gen", topic) == (14, "", 0)

        c.get_member_id()
        tc = c.send_join()  # parked: the group rebalances until a rejoins
        assert wait_for(lambda: a.heartbeat() == rawkafka.REBALANCE_IN_PROGRESS, 10)
        assert a.commit(topic, 15) == rawkafka.NONE, "commits of the current generation go on while rebalancing"
        a.finish_join(a.send_join())
        c.finish_join(tc)
        assert a.generation == c.generation == g2 + 1
        tc = c.conn.send(c.sync_request({}))
        assert a.sync({a.member_id: b"a", c.member_id: b"c"}).assignment == b"a"
        assert c.conn.recv(tc, 30).assignment == b"c"
        assert a.commit(topic, 16, generation=g2) == rawkafka.ILLEGAL_GENERATION
        assert fetch_offset(port, "gen", topic) == (15, "", 0)

        assert a.leave(member_id="ghost") == (0, rawkafka.UNKNOWN_MEMBER_ID)
        assert c.leave() == (0, 0)
        assert c.heartbeat() == rawkafka.UNKNOWN_MEMBER_ID, "a member that left is unknown"
    finally:
        a.close()
        c.close()


@pytest.mark.timeout(90)
def test_offsets_of_a_deleted_topic_are_removed(broker_factory):
    """Committed offsets of a topic go when the topic is deleted, as in Kafka, and stay
    gone after a restart (tombstones in __consumer_offsets); offsets of other topics of
    the same group stay."""
    b = broker_factory(overrides=GROUP_OVERRIDES)
    a = admin(b)
    create_topic(b, "doomed-t", 2)
    create_topic(b, "kept-t", 1)
    group = "deleted-topic-group"
    fut = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [
        TopicPartition("doomed-t", 0, 5), TopicPartition("doomed-t", 1, 7), TopicPartition("kept-t", 0, 3)])],
        request_timeout=15)[group]
    fut.result(20)
    assert listed_offsets(a, group, "doomed-t", [0, 1]) == {0: 5, 1: 7}
    a.delete_topics(["doomed-t"], operation_timeout=15)["doomed-t"].result(20)
    assert wait_for(lambda: fetch_offset(b.port, group, "doomed-t")[0] == -1, 15), \
        "the offsets of the deleted topic are still committed"
    assert fetch_offset(b.port, group, "kept-t")[0] == 3
    b.stop()
    b.start()
    assert fetch_offset(b.port, group, "doomed-t")[0] == -1
    assert fetch_offset(b.port, group, "kept-t")[0] == 3
