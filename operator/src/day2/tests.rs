use std::collections::BTreeMap;

use super::*;
use crate::crd::cluster::{RebalanceStatus, RestartStatus, VolumePolicy};

fn pod(ordinal: i32, rev: &str) -> PodView {
    PodView {
        ordinal,
        uid: format!("uid-{ordinal}-{rev}"),
        ready: true,
        terminating: false,
        revision: Some(rev.into()),
        started: true,
        failing: None,
    }
}

fn view(brokers: &[(i32, i32)], voters: &[i32]) -> ClusterView {
    ClusterView {
        brokers: brokers
            .iter()
            .map(|(id, replicas)| {
                (
                    *id,
                    BrokerView {
                        fenced: false,
                        replicas: *replicas,
                        leaders: *replicas / 3,
                    },
                )
            })
            .collect(),
        controller: voters.first().copied().unwrap_or(-1),
        voters: voters.to_vec(),
        max_replication_factor: 3,
        max_replication_factor_topic: "orders".into(),
        ..Default::default()
    }
}

struct Case {
    target: i32,
    current: Option<i32>,
    rev: Option<String>,
    pods: Vec<PodView>,
    claims: Vec<i32>,
    cluster: Option<ClusterView>,
    status: ClusterStatus,
    ops: OperationsSpec,
    now: i64,
}

impl Case {
    fn new(target: i32, current: i32, cluster: ClusterView) -> Self {
        Case {
            target,
            current: Some(current),
            rev: Some("r1".into()),
            pods: (0..current).map(|i| pod(i, "r1")).collect(),
            claims: (0..current).collect(),
            cluster: Some(cluster),
            status: ClusterStatus::default(),
            ops: OperationsSpec::default(),
            now: 1_000_000,
        }
    }

    fn plan(&self) -> Plan {
        plan(&Observed {
            target: self.target,
            current: self.current,
            update_revision: self.rev.clone(),
            pods: &self.pods,
            claims: &self.claims,
            cluster: self.cluster.as_ref(),
            status: &self.status,
            ops: &self.ops,
            now: self.now,
        })
    }
}

#[test]
fn a_new_cluster_just_starts_its_brokers() {
    let mut c = Case::new(3, 0, view(&[], &[]));
    c.current = None;
    c.pods.clear();
    c.cluster = None;
    let p = c.plan();
    assert_eq!((p.replicas, p.step, p.degraded), (3, Step::Wait, None));
}

#[test]
fn scale_up_grows_the_statefulset_then_rebalances_once_every_broker_serves() {
    let mut c = Case::new(5, 3, view(&[(0, 10), (1, 10), (2, 10)], &[0, 1, 2]));
    let p = c.plan();
    assert_eq!((p.replicas, &p.step), (5, &Step::Wait));
    assert!(
        p.scaling
            .as_ref()
            .is_some_and(|s| s.1.contains("broker-3 has no pod")),
        "{p:?}"
    );

    // The new pods run and registered, but are empty.
    c.current = Some(5);
    c.pods.extend([pod(3, "r1"), pod(4, "r1")]);
    c.cluster = Some(view(
        &[(0, 10), (1, 10), (2, 10), (3, 0), (4, 0)],
        &[0, 1, 2],
    ));
    assert_eq!(c.plan().step, Step::Rebalance);

    // Started (recorded in status): no second rebalance, even once moves are done.
    c.status.rebalance = Some(RebalanceStatus {
        reason: "ScaleUp".into(),
        brokers: 5,
        ..Default::default()
    });
    assert_eq!(c.plan().step, Step::Wait);
}

#[test]
fn scale_up_waits_for_new_brokers_to_register_and_unfence() {
    let mut c = Case::new(4, 4, view(&[(0, 10), (1, 10), (2, 10)], &[0, 1, 2]));
    let p = c.plan();
    assert_eq!(p.step, Step::Wait);
    assert!(p.scaling.unwrap().1.contains("broker 3"));
    c.cluster.as_mut().unwrap().brokers.insert(
        3,
        BrokerView {
            fenced: true,
            ..Default::default()
        },
    );
    assert_eq!(c.plan().step, Step::Wait);
    c.cluster
        .as_mut()
        .unwrap()
        .brokers
        .get_mut(&3)
        .unwrap()
        .fenced = false;
    assert_eq!(c.plan().step, Step::Rebalance);
}

#[test]
fn growing_from_one_broker_adds_quorum_voters_first() {
    let c = Case::new(3, 3, view(&[(0, 6), (1, 0), (2, 0)], &[0]));
    assert_eq!(c.plan().step, Step::SetVoters(vec![0, 1, 2]));
}

#[test]
fn scale_down_below_a_replication_factor_is_refused_and_changes_nothing() {
    let c = Case::new(2, 3, view(&[(0, 10), (1, 10), (2, 10)], &[0, 1, 2]));
    let p = c.plan();
    assert_eq!((p.replicas, &p.step), (3, &Step::Wait));
    let (reason, msg) = p.degraded.unwrap();
    assert_eq!(reason, "ScaleDownRefused");
    assert!(
        msg.contains("orders") && msg.contains("replication factor 3"),
        "{msg}"
    );
}

#[test]
fn scale_down_without_a_quorum_leader_is_refused() {
    let mut v = view(&[(0, 1), (1, 1), (2, 1), (3, 1)], &[0, 1, 2]);
    v.controller = -1;
    let p = Case::new(3, 4, v).plan();
    assert_eq!(p.degraded.unwrap().0, "ScaleDownRefused");
    assert_eq!(p.replicas, 4);
}

#[test]
fn scale_down_moves_voters_then_drains_then_stops_one_broker_at_a_time() {
    let mut c = Case::new(
        3,
        5,
        view(&[(0, 6), (1, 6), (2, 6), (3, 6), (4, 6)], &[0, 2, 4]),
    );
    // A voter is being removed: the quorum changes first.
    assert_eq!(c.plan().step, Step::SetVoters(vec![0, 1, 2]));
    c.cluster.as_mut().unwrap().voters = vec![0, 1, 2];
    let p = c.plan();
    assert_eq!((p.replicas, &p.step), (5, &Step::Drain(vec![3, 4])));

    // Moving: wait, keep every broker.
    c.cluster.as_mut().unwrap().reassigning = 12;
    let p = c.plan();
    assert_eq!((p.replicas, &p.step), (5, &Step::Wait));
    assert!(p.scaling.unwrap().1.contains("12 partitions moving"));

    // Drained: the highest broker stops first, and only it.
    let v = c.cluster.as_mut().unwrap();
    v.reassigning = 0;
    for id in [3, 4] {
        *v.brokers.get_mut(&id).unwrap() = BrokerView::default();
    }
    assert_eq!(c.plan().replicas, 4);

    // A staying broker is not ready: nothing stops.
    c.pods[1].ready = false;
    assert_eq!(c.plan().replicas, 5);
    c.pods[1].ready = true;

    // Broker 4's pod is gone and the broker fenced: forget it; then stop broker 3.
    c.current = Some(4);
    c.pods.retain(|p| p.ordinal != 4);
    c.cluster
        .as_mut()
        .unwrap()
        .brokers
        .get_mut(&4)
        .unwrap()
        .fenced = true;
    let p = c.plan();
    assert_eq!((p.replicas, &p.step), (3, &Step::Unregister(4)));
}

#[test]
fn drained_broker_still_serving_is_not_unregistered() {
    let mut c = Case::new(3, 3, view(&[(0, 6), (1, 6), (2, 6), (3, 0)], &[0, 1, 2]));
    // No pod, but the metadata has not fenced it yet.
    assert_eq!(c.plan().step, Step::Wait);
    c.cluster
        .as_mut()
        .unwrap()
        .brokers
        .get_mut(&3)
        .unwrap()
        .fenced = true;
    assert_eq!(c.plan().step, Step::Unregister(3));
}

#[test]
fn volumes_are_deleted_only_by_policy_and_only_when_nothing_refers_to_them() {
    let mut c = Case::new(3, 3, view(&[(0, 6), (1, 6), (2, 6)], &[0, 1, 2]));
    c.claims = vec![0, 1, 2, 3, 4];
    assert_eq!(c.plan().step, Step::Wait, "Retain keeps every claim");
    c.ops.removed_broker_volumes = VolumePolicy::Delete;
    assert_eq!(c.plan().step, Step::DeleteClaim(3));

    // Broker 3 still registered (holding data): not its volume; 4 goes.
    c.cluster.as_mut().unwrap().brokers.insert(
        3,
        BrokerView {
            fenced: true,
            replicas: 2,
            leaders: 0,
        },
    );
    assert_eq!(c.plan().step, Step::DeleteClaim(4));
    // A pod exists for 4 (scale-up raced): leave it.
    c.pods.push(pod(4, "r1"));
    assert_eq!(c.plan().step, Step::Wait);
    // Admin API down: never delete anything.
    c.pods.pop();
    c.cluster = None;
    assert_eq!(c.plan().step, Step::Wait);
}

#[test]
fn roll_restarts_one_stale_broker_with_the_controller_last() {
    let mut c = Case::new(3, 3, view(&[(0, 6), (1, 6), (2, 6)], &[0, 1, 2]));
    c.rev = Some("r2".into());
    c.cluster.as_mut().unwrap().controller = 1;
    let p = c.plan();
    assert_eq!(
        p.step,
        Step::Restart {
            ordinal: 0,
            uid: "uid-0-r1".into()
        }
    );
    c.pods[0] = pod(0, "r2");
    assert_eq!(
        c.plan().step,
        Step::Restart {
            ordinal: 2,
            uid: "uid-2-r1".into()
        }
    );
    c.pods[2] = pod(2, "r2");
    assert_eq!(
        c.plan().step,
        Step::Restart {
            ordinal: 1,
            uid: "uid-1-r1".into()
        }
    );
    c.pods[1] = pod(1, "r2");
    let p = c.plan();
    assert_eq!((p.step, p.rolling), (Step::Wait, None));
}

#[test]
fn roll_waits_for_every_broker_and_full_replication() {
    let mut c = Case::new(3, 3, view(&[(0, 6), (1, 6), (2, 6)], &[0, 1, 2]));
    c.rev = Some("r2".into());
    c.pods[2].terminating = true;
    let p = c.plan();
    assert_eq!(p.step, Step::Wait);
    assert!(p.rolling.unwrap().1.contains("broker-2 is shutting down"));
    c.pods[2].terminating = false;
    c.cluster.as_mut().unwrap().under_replicated = 4;
    let p = c.plan();
    assert_eq!(p.step, Step::Wait);
    assert!(
        p.rolling
            .unwrap()
            .1
            .contains("4 partitions under-replicated")
    );
    c.cluster.as_mut().unwrap().under_replicated = 0;
    c.cluster
        .as_mut()
        .unwrap()
        .brokers
        .get_mut(&1)
        .unwrap()
        .fenced = true;
    assert_eq!(c.plan().step, Step::Wait);
    c.cluster
        .as_mut()
        .unwrap()
        .brokers
        .get_mut(&1)
        .unwrap()
        .fenced = false;
    c.cluster = None;
    assert_eq!(
        c.plan().step,
        Step::Wait,
        "no restart without the admin API"
    );
}

#[test]
fn a_broker_in_log_recovery_is_not_a_stuck_roll_but_a_failing_one_is() {
    let mut c = Case::new(3, 3, view(&[(0, 6), (1, 6), (2, 6)], &[0, 1, 2]));
    c.rev = Some("r2".into());
    c.status.restart = Some(RestartStatus {
        broker: 0,
        pod_uid: "uid-0-r1".into(),
        revision: String::new(),
        started_at: "1970-01-12T13:46:40Z".into(), // 1_000_000 s
    });
    c.pods[0] = PodView {
        ready: false,
        started: false,
        ..pod(0, "r2")
    };
    c.now += 3600;
    let p = c.plan();
    assert_eq!((p.step.clone(), p.degraded.clone()), (Step::Wait, None));
    assert!(p.rolling.unwrap().1.contains("recovering its logs"));

    // Recovered but never ready, past the timeout: stop the roll.
    c.pods[0].started = true;
    let p = c.plan();
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.degraded.unwrap().0, "RollStuck");
    // Within the timeout: just waiting.
    c.now = 1_000_000 + 60;
    assert_eq!(c.plan().degraded, None);

    c.pods[0].failing = Some("CrashLoopBackOff".into());
    let p = c.plan();
    assert_eq!(p.degraded.unwrap().0, "RollStuck");
    assert_eq!(p.step, Step::Wait);
}

#[test]
fn brokers_being_removed_are_not_restarted() {
    let mut c = Case::new(3, 4, view(&[(0, 6), (1, 6), (2, 6), (3, 0)], &[0, 1, 2]));
    c.rev = Some("r2".into());
    for i in 0..3 {
        c.pods[i] = pod(i as i32, "r2");
    }
    // Only broker 3 is stale, and it is leaving: stop it instead of restarting it.
    let p = c.plan();
    assert_eq!((p.replicas, p.step), (3, Step::Wait));
}

/// A tiny deterministic generator, so the simulation needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Property: across random interleavings of pods failing, recovering and the spec
/// changing (scale and roll at once, the operator "restarting" between any two steps
/// since the planner keeps no memory), the operator's own actions never make a second
/// broker unavailable, never stop a broker that holds data, and never delete a volume
/// that a pod or a registered broker still uses.
#[test]
fn simulated_operations_never_take_two_brokers_down() {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut c = Case::new(3, 3, view(&[(0, 9), (1, 9), (2, 9)], &[0, 1, 2]));
        c.ops.removed_broker_volumes = VolumePolicy::Delete;
        c.cluster.as_mut().unwrap().max_replication_factor = 2;
        let mut rev = 1;
        for _ in 0..200 {
            // The world moves on.
            if rng.chance(5) {
                c.target = 2 + (rng.next() % 4) as i32;
            }
            if rng.chance(4) {
                rev += 1;
                c.rev = Some(format!("r{rev}"));
            }
            let v = c.cluster.as_mut().unwrap();
            if v.reassigning > 0 && rng.chance(30) {
                v.reassigning = 0;
                // Moves done: data left the excluded brokers.
                let draining: Vec<i32> = c
                    .status
                    .rebalance
                    .as_ref()
                    .map(|r| r.draining.clone())
                    .unwrap_or_default();
                for id in draining {
                    if let Some(b) = v.brokers.get_mut(&id) {
                        *b = BrokerView {
                            fenced: b.fenced,
                            ..Default::default()
                        };
                    }
                }
            }
            v.under_replicated = if rng.chance(10) { 1 } else { 0 };
            for p in c.pods.iter_mut() {
                if !p.ready && !p.terminating && rng.chance(40) {
                    p.ready = true;
                    p.started = true;
                }
            }
            // Terminated pods go; the StatefulSet recreates missing ones below its size.
            let size = c.current.unwrap_or(0);
            c.pods.retain(|p| !(p.terminating && rng.chance(60)));
            c.pods.retain(|p| p.ordinal < size || p.terminating);
            for i in 0..size {
                if !c.pods.iter().any(|p| p.ordinal == i) && rng.chance(50) {
                    let mut p = pod(i, c.rev.as_deref().unwrap_or("r1"));
                    p.uid = format!("uid-{i}-{}", rng.next());
                    p.ready = false;
                    c.pods.push(p);
                    if !c.claims.contains(&i) {
                        c.claims.push(i);
                    }
                    let v = c.cluster.as_mut().unwrap();
                    v.brokers.entry(i).or_default().fenced = false;
                }
            }
            // Brokers without a pod get fenced.
            let v = c.cluster.as_mut().unwrap();
            for (id, b) in v.brokers.iter_mut() {
                b.fenced = !c.pods.iter().any(|p| p.ordinal == *id && p.ready);
            }
            // A random broker fails by itself sometimes (not the operator's doing).
            if rng.chance(3)
                && let Some(p) = c.pods.iter_mut().find(|p| p.ready)
            {
                p.ready = false;
            }

            let unavailable_before = c.pods.iter().filter(|p| !p.ready || p.terminating).count()
                + (0..size)
                    .filter(|i| !c.pods.iter().any(|p| p.ordinal == *i))
                    .count();
            let p = c.plan();

            // Carry it out.
            if p.replicas < size {
                for id in p.replicas..size {
                    let b = c
                        .cluster
                        .as_ref()
                        .unwrap()
                        .brokers
                        .get(&id)
                        .copied()
                        .unwrap_or_default();
                    assert!(
                        b.replicas == 0 && b.leaders == 0,
                        "seed {seed}: stopped broker {id} that holds data: {b:?}"
                    );
                }
                assert_eq!(
                    p.replicas,
                    size - 1,
                    "seed {seed}: stopped more than one broker"
                );
            }
            if p.replicas < size {
                *seen.entry("stop").or_default() += 1;
            }
            c.current = Some(p.replicas);
            *seen
                .entry(match &p.step {
                    Step::Restart { .. } => "restart",
                    Step::Drain(_) => "drain",
                    Step::Rebalance => "rebalance",
                    Step::SetVoters(_) => "voters",
                    Step::Unregister(_) => "unregister",
                    Step::DeleteClaim(_) => "delete_claim",
                    Step::Wait => "wait",
                })
                .or_default() += 1;
            match &p.step {
                Step::Restart { ordinal, uid } => {
                    assert_eq!(
                        unavailable_before, 0,
                        "seed {seed}: restarted broker {ordinal} while another was down: {:?}",
                        c.pods
                    );
                    let pod = c.pods.iter_mut().find(|p| p.ordinal == *ordinal).unwrap();
                    assert_eq!(&pod.uid, uid);
                    pod.terminating = true;
                    pod.ready = false;
                    c.status.restart = Some(RestartStatus {
                        broker: *ordinal,
                        pod_uid: uid.clone(),
                        revision: String::new(),
                        started_at: "1970-01-12T13:33:20Z".into(),
                    });
                }
                Step::Drain(ids) => {
                    c.cluster.as_mut().unwrap().reassigning = 5;
                    c.status.rebalance = Some(RebalanceStatus {
                        reason: "ScaleDown".into(),
                        brokers: c.target,
                        draining: ids.clone(),
                        ..Default::default()
                    });
                }
                Step::Rebalance => {
                    c.cluster.as_mut().unwrap().reassigning = 5;
                    c.status.rebalance = Some(RebalanceStatus {
                        reason: "ScaleUp".into(),
                        brokers: c.target,
                        ..Default::default()
                    });
                    // The rebalance spreads data onto every broker.
                    for b in c.cluster.as_mut().unwrap().brokers.values_mut() {
                        b.replicas = b.replicas.max(3);
                    }
                }
                Step::SetVoters(v) => c.cluster.as_mut().unwrap().voters = v.clone(),
                Step::Unregister(id) => {
                    assert!(
                        !c.pods.iter().any(|p| p.ordinal == *id),
                        "seed {seed}: unregistered broker {id} with a pod"
                    );
                    let b = c.cluster.as_mut().unwrap().brokers.remove(id).unwrap();
                    assert!(b.fenced && b.replicas == 0, "seed {seed}: {b:?}");
                }
                Step::DeleteClaim(ord) => {
                    assert!(
                        !c.pods.iter().any(|p| p.ordinal == *ord)
                            && !c.cluster.as_ref().unwrap().brokers.contains_key(ord)
                            && *ord >= c.current.unwrap_or(0),
                        "seed {seed}: deleted the volume of broker {ord} still in use"
                    );
                    c.claims.retain(|o| o != ord);
                }
                Step::Wait => {}
            }
            if let Some(r) = &c.status.restart
                && c.pods
                    .iter()
                    .any(|p| p.ordinal == r.broker && p.uid != r.pod_uid && p.ready)
            {
                c.status.restart = None;
            }
        }
    }
    // The property is only worth something if every kind of action happened.
    for kind in [
        "stop",
        "restart",
        "drain",
        "rebalance",
        "voters",
        "unregister",
        "delete_claim",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "never exercised {kind}: {seen:?}"
        );
    }
}

#[test]
fn observe_reads_ordinals_revisions_and_failures() {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "demo-broker-2", "uid": "u2",
                     "labels": {"controller-revision-hash": "demo-broker-7c9", "apps.kubernetes.io/pod-index": "2"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "broker", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
                                   "started": false,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}]
        }
    }))
    .unwrap();
    let v = observe::pod(&pod).unwrap();
    assert_eq!(v.ordinal, 2);
    assert_eq!(v.revision.as_deref(), Some("demo-broker-7c9"));
    assert!(!v.ready && !v.started);
    assert_eq!(
        v.failing.as_deref(),
        Some("CrashLoopBackOff: back-off 5m0s")
    );
    assert_eq!(
        observe::claim_ordinal("data-demo-broker-12", "demo-broker"),
        Some(12)
    );
    assert_eq!(
        observe::claim_ordinal("data-other-broker-1", "demo-broker"),
        None
    );
}
