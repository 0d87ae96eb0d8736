//! Scale up (start brokers, then rebalance onto them) and scale down (voters first, then
//! drain, then stop one drained broker at a time, then forget it).

use super::{Observed, Plan, Step, all_ready, desired_voters};
use crate::crd::cluster::VolumePolicy;

pub const SCALE_UP: &str = "ScaleUp";
pub const SCALE_DOWN: &str = "ScaleDown";

/// `spec.replicas` at or above the StatefulSet: grow it at once; once every broker
/// serves, top up the quorum voters, then rebalance onto the new brokers.
pub(super) fn up(o: &Observed, p: &mut Plan) {
    p.replicas = o.target;
    let growing = o.current.is_some_and(|c| o.target > c);
    if growing {
        p.scaling = Some((
            "ScalingUp",
            format!(
                "starting brokers {}..{}",
                o.current.unwrap_or_default(),
                o.target - 1
            ),
        ));
    }
    if let Err(why) = all_ready(o, o.target) {
        if growing {
            p.scaling = Some(("ScalingUp", format!("waiting: {why}")));
        }
        return;
    }
    let Some(c) = o.cluster else {
        return;
    };
    if let Some(id) = (0..o.target).find(|id| c.brokers.get(id).is_none_or(|b| b.fenced)) {
        p.scaling = Some((
            "ScalingUp",
            format!("waiting for broker {id} to join the cluster metadata"),
        ));
        return;
    }
    // desired_voters keeps every current voter below the target, so a longer list only
    // adds voters.
    let voters = desired_voters(o, o.target);
    if voters.len() > c.voters.len() {
        p.step = Step::SetVoters(voters);
        return;
    }
    if !o.ops.rebalance_on_scale_up || c.reassigning > 0 {
        return;
    }
    let done_for = o.status.rebalance.as_ref().map(|r| r.brokers);
    if done_for == Some(o.target) {
        return;
    }
    let total: i32 = c.brokers.values().map(|b| b.replicas).sum();
    let empty = (0..o.target).any(|id| c.brokers.get(&id).is_some_and(|b| b.replicas == 0));
    if total > 0 && empty {
        p.step = Step::Rebalance;
        p.scaling = Some((
            "ScalingUp",
            "rebalancing partitions onto the new brokers".into(),
        ));
    }
}

/// `spec.replicas` below the StatefulSet: refuse what cannot work, move the voters,
/// drain, then stop the highest drained broker.
pub(super) fn down(o: &Observed, current: i32, p: &mut Plan) {
    p.replicas = current;
    let removing: Vec<i32> = (o.target..current).collect();
    let note = |what: String| Some(("ScalingDown", what));
    let Some(c) = o.cluster else {
        p.scaling = note(format!(
            "removing brokers {removing:?}: waiting for the admin API"
        ));
        return;
    };
    if c.max_replication_factor > o.target {
        p.degraded = Some((
            "ScaleDownRefused",
            format!(
                "scale-down to {} brokers refused: topic {} has replication factor {}; set spec.replicas to at least {} or lower the topic's replication factor. Nothing was changed.",
                o.target,
                c.max_replication_factor_topic,
                c.max_replication_factor,
                c.max_replication_factor
            ),
        ));
        return;
    }
    if c.controller < 0 {
        p.degraded = Some((
            "ScaleDownRefused",
            format!(
                "scale-down to {} brokers refused for now: the metadata quorum has no leader (voters {:?}); it is retried once a majority of voters runs",
                o.target, c.voters
            ),
        ));
        return;
    }
    if c.voters.iter().any(|v| removing.contains(v)) {
        let voters = desired_voters(o, o.target);
        if voters.is_empty() {
            p.degraded = Some((
                "ScaleDownRefused",
                format!(
                    "scale-down to {} brokers refused for now: no broker below {} is ready to become a metadata quorum voter in place of {:?}",
                    o.target, o.target, c.voters
                ),
            ));
            return;
        }
        p.scaling = note(format!(
            "moving the metadata quorum voters from {:?} to {voters:?}",
            c.voters
        ));
        p.step = Step::SetVoters(voters);
        return;
    }
    let loaded: Vec<i32> = removing
        .iter()
        .copied()
        .filter(|id| {
            c.brokers
                .get(id)
                .is_some_and(|b| b.replicas > 0 || b.leaders > 0)
        })
        .collect();
    if !loaded.is_empty() {
        if c.reassigning > 0 {
            let what = o
                .status
                .rebalance
                .as_ref()
                .map(|r| {
                    format!(
                        " ({}/{} partitions moved)",
                        r.partitions_moved, r.partitions_to_move
                    )
                })
                .unwrap_or_default();
            p.scaling = note(format!(
                "draining brokers {loaded:?}: {} partitions moving{what}",
                c.reassigning
            ));
            return;
        }
        if let Err(why) = all_ready(o, o.target) {
            p.scaling = note(format!("draining brokers {loaded:?}: waiting: {why}"));
            return;
        }
        p.scaling = note(format!("draining brokers {loaded:?}"));
        p.step = Step::Drain(removing);
        return;
    }
    if c.reassigning > 0 {
        p.scaling = note(format!(
            "waiting for {} partition moves to finish",
            c.reassigning
        ));
        return;
    }
    if let Err(why) = all_ready(o, o.target) {
        p.scaling = note(format!(
            "brokers {removing:?} are drained; waiting before stopping one: {why}"
        ));
        return;
    }
    // One broker at a time, the highest first.
    p.replicas = current - 1;
    p.scaling = note(format!("stopping drained broker {}", current - 1));
}

/// Forgets brokers above the StatefulSet whose pods are gone, then (by policy) deletes
/// their volumes. Never touches a broker that still has a pod or holds a replica.
pub(super) fn tidy(o: &Observed, replicas: i32, p: &mut Plan) {
    let Some(c) = o.cluster else {
        return;
    };
    let has_pod = |id: i32| o.pods.iter().any(|p| p.ordinal == id);
    for (id, b) in c.brokers.range(replicas.max(o.target)..) {
        if has_pod(*id) {
            continue;
        }
        if b.fenced && b.replicas == 0 && b.leaders == 0 {
            p.step = Step::Unregister(*id);
            return;
        }
    }
    if o.ops.removed_broker_volumes != VolumePolicy::Delete {
        return;
    }
    for ord in o.claims {
        if *ord >= replicas.max(o.target) && !has_pod(*ord) && !c.brokers.contains_key(ord) {
            p.step = Step::DeleteClaim(*ord);
            return;
        }
    }
}
