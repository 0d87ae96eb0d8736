//! Day-2 decisions — scale up, scale down, rolling restarts — as pure functions of what
//! the Cluster controller observed. The controller carries out at most one step per
//! reconcile and observes again, so an operator restart in the middle of anything picks
//! up from the world (pods, StatefulSet, broker metadata) and the Cluster's status.

pub mod observe;
pub mod roll;
pub mod scale;

use std::collections::BTreeMap;

use crate::crd::ClusterStatus;
use crate::crd::cluster::OperationsSpec;

/// One broker pod as the controller saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub ordinal: i32,
    pub uid: String,
    /// The Ready condition is True.
    pub ready: bool,
    /// Deleted, still shutting down.
    pub terminating: bool,
    /// StatefulSet revision the pod was created from (`controller-revision-hash`).
    pub revision: Option<String>,
    /// The startup probe passed: log recovery is over. A running broker that has not
    /// started is recovering, not failing.
    pub started: bool,
    /// The broker container is waiting in CrashLoopBackOff (or a config/image error).
    pub failing: Option<String>,
}

/// One registered broker as the cluster metadata has it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BrokerView {
    pub fenced: bool,
    /// Partition replicas assigned to it (including ones being added).
    pub replicas: i32,
    pub leaders: i32,
}

/// What the admin API said about the whole cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterView {
    pub brokers: BTreeMap<i32, BrokerView>,
    /// The metadata quorum leader (the controller); -1 if unknown.
    pub controller: i32,
    pub voters: Vec<i32>,
    pub under_replicated: i32,
    pub offline: i32,
    pub reassigning: i32,
    pub max_replication_factor: i32,
    pub max_replication_factor_topic: String,
}

/// Everything a decision needs.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// `spec.replicas`: the broker count asked for.
    pub target: i32,
    /// The StatefulSet's replicas now; `None` before it exists.
    pub current: Option<i32>,
    /// The StatefulSet's update revision; pods on another revision need a restart.
    pub update_revision: Option<String>,
    pub pods: &'a [PodView],
    /// Ordinals with a PersistentVolumeClaim.
    pub claims: &'a [i32],
    /// `None` when the admin API did not answer.
    pub cluster: Option<&'a ClusterView>,
    pub status: &'a ClusterStatus,
    pub ops: &'a OperationsSpec,
    /// Unix seconds.
    pub now: i64,
}

/// The one thing to do in this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Make these brokers the metadata quorum's voters.
    SetVoters(Vec<i32>),
    /// Start moving every replica off these brokers (scale-down).
    Drain(Vec<i32>),
    /// Start a rebalance onto brokers added by a scale-up.
    Rebalance,
    /// Forget a removed broker in the cluster metadata.
    Unregister(i32),
    /// Delete a removed broker's PersistentVolumeClaim (`removedBrokerVolumes: Delete`).
    DeleteClaim(i32),
    /// Restart this broker (delete its pod) once the broker confirms it is safe.
    Restart { ordinal: i32, uid: String },
    /// Nothing to do now.
    Wait,
}

/// A condition the plan wants reported: (reason, message).
pub type Note = (&'static str, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Replicas to apply to the StatefulSet.
    pub replicas: i32,
    pub step: Step,
    /// Scale state for the `Progressing` condition, when scaling.
    pub scaling: Option<Note>,
    /// Roll state for the `Progressing` condition, when brokers need a restart.
    pub rolling: Option<Note>,
    /// Something only a human can fix (`Degraded`): a refused scale-down, a stuck roll.
    pub degraded: Option<Note>,
}

/// Decides the StatefulSet size and the next step.
pub fn plan(o: &Observed) -> Plan {
    let current = o.current.unwrap_or(o.target);
    let mut p = Plan {
        replicas: current.max(o.target),
        step: Step::Wait,
        scaling: None,
        rolling: None,
        degraded: None,
    };
    if o.target < current {
        scale::down(o, current, &mut p);
    } else {
        scale::up(o, &mut p);
    }
    // Removed brokers are tidied up whatever else happens.
    if p.step == Step::Wait {
        scale::tidy(o, p.replicas, &mut p);
    }
    roll::restart(o, &mut p);
    p
}

/// Brokers below `count` that are registered, unfenced and have a ready pod.
pub(crate) fn healthy(o: &Observed, count: i32) -> Vec<i32> {
    let Some(c) = o.cluster else {
        return Vec::new();
    };
    (0..count)
        .filter(|id| c.brokers.get(id).is_some_and(|b| !b.fenced))
        .filter(|id| {
            o.pods
                .iter()
                .any(|p| p.ordinal == *id && p.ready && !p.terminating)
        })
        .collect()
}

/// Every pod below `count` exists, is ready and is not shutting down.
pub(crate) fn all_ready(o: &Observed, count: i32) -> Result<(), String> {
    for id in 0..count {
        match o.pods.iter().find(|p| p.ordinal == id) {
            None => return Err(format!("broker-{id} has no pod yet")),
            Some(p) if p.terminating => return Err(format!("broker-{id} is shutting down")),
            Some(p) if !p.ready => return Err(format!("broker-{id} is not ready")),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The voters a cluster of `count` brokers should have: the current voters that stay,
/// topped up with the lowest healthy brokers, up to three.
pub(crate) fn desired_voters(o: &Observed, count: i32) -> Vec<i32> {
    let want = count.clamp(1, 3) as usize;
    let healthy = healthy(o, count);
    let mut voters: Vec<i32> = o
        .cluster
        .map(|c| c.voters.iter().copied().filter(|v| *v < count).collect())
        .unwrap_or_default();
    for id in healthy {
        if voters.len() >= want {
            break;
        }
        if !voters.contains(&id) {
            voters.push(id);
        }
    }
    voters.sort_unstable();
    voters
}

#[cfg(test)]
mod tests;
