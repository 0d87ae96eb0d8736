"""Network partitions between brokers, with one network namespace per broker joined by a
bridge (conftest.Netns): a broker cut off from everyone while it keeps running, and two
brokers cut off from each other only. Skipped, saying why, where network namespaces or
bridges are not available (they need root).
"""

import time

import pytest

from conftest import netns_unavailable
from kafkautil import wait_for
from test_replication import (Reader, Writer, check_acknowledged, create, in_sync, leader_of,
                              partitions_of)

WHY = netns_unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"network namespaces unavailable: {WHY}")


def test_isolated_leader_keeps_running_but_loses_nothing(cluster_factory):
    c = cluster_factory(3, netns=True)
    create(c, "t", partitions=3, rf=3, config={"min.insync.replicas": "2"})
    w = Writer(c.bootstrap, "t")
    r = Reader(c.bootstrap, "t", "g")
    w.start()
    r.start()
    try:
        assert wait_for(lambda: len(w.acked) > 2000, 60)
        old = leader_of(c, "t", 0)
        others = ",".join(b.bootstrap for i, b in enumerate(c.brokers) if i != old)
        c.netns.isolate(old)
        # The rest of the cluster fences it and carries on without it...
        assert wait_for(lambda: leader_of(others, "t", 0) not in (old, -1), 30)
        acked = len(w.acked)
        assert wait_for(lambda: len(w.acked) > acked + 2000, 60), w.errors[-3:]
        # ...while it still runs, unable to commit anything on its own.
        assert c.brokers[old].alive()
        time.sleep(2)
        c.netns.heal(old)
        assert wait_for(lambda: in_sync(c, "t"), 60), partitions_of(c, "t")
        acked = len(w.acked)
        assert wait_for(lambda: len(w.acked) > acked + 1000, 60)
    finally:
        w.stop()
        r.stop()
    assert r.received > 0
    check_acknowledged(c, w, "t", 3)


def test_leader_cut_off_from_one_follower(cluster_factory):
    c = cluster_factory(3, netns=True)
    create(c, "t", partitions=1, rf=3, config={"min.insync.replicas": "2"})
    w = Writer(c.bootstrap, "t")
    w.start()
    try:
        assert wait_for(lambda: len(w.acked) > 2000, 60)
        p = partitions_of(c, "t")[0]
        follower = next(b for b in p.replicas if b != p.leader)
        c.netns.cut(p.leader, follower)
        # Writes go on with the other follower (min.insync.replicas=2), and the cut one
        # leaves the ISR: by lag (replica.lag.time.max.ms) or, if the cut also separates it
        # from the controller, by fencing.
        assert wait_for(lambda: len(partitions_of(c, "t")[0].isrs) == 2, 30), partitions_of(c, "t")
        acked = len(w.acked)
        assert wait_for(lambda: len(w.acked) > acked + 2000, 60), w.errors[-3:]
        c.netns.uncut(p.leader, follower)
        assert wait_for(lambda: in_sync(c, "t"), 60), partitions_of(c, "t")
    finally:
        w.stop()
    check_acknowledged(c, w, "t", 1)
