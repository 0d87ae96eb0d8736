//! Turns Kubernetes and admin API objects into the views decisions are made on.

use k8s_openapi::api::core::v1::Pod;
use sluice_api::admin::ClusterStatus;

use super::{BrokerView, ClusterView, PodView};

/// Waiting reasons that will not clear by themselves.
const FAILING: &[&str] = &[
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
];

/// `None` for pods that are not brokers of a StatefulSet (no ordinal).
pub fn pod(p: &Pod) -> Option<PodView> {
    let meta = &p.metadata;
    let labels = meta.labels.as_ref();
    let ordinal = labels
        .and_then(|l| l.get("apps.kubernetes.io/pod-index"))
        .and_then(|i| i.parse().ok())
        .or_else(|| meta.name.as_deref()?.rsplit('-').next()?.parse().ok())?;
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let broker = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "broker"));
    let started = broker.and_then(|c| c.started).unwrap_or(false);
    let failing = broker
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| {
            let reason = w.reason.as_deref()?;
            FAILING.contains(&reason).then(|| match &w.message {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason.to_string(),
            })
        });
    Some(PodView {
        ordinal,
        uid: meta.uid.clone().unwrap_or_default(),
        ready,
        terminating: meta.deletion_timestamp.is_some(),
        revision: labels
            .and_then(|l| l.get("controller-revision-hash"))
            .cloned(),
        started,
        failing,
    })
}

pub fn cluster(s: &ClusterStatus) -> ClusterView {
    ClusterView {
        brokers: s
            .brokers
            .iter()
            .map(|b| {
                (
                    b.broker_id,
                    BrokerView {
                        fenced: b.fenced,
                        replicas: b.replicas,
                        leaders: b.leaders,
                    },
                )
            })
            .collect(),
        controller: s.quorum.as_ref().map_or(s.controller_id, |q| q.leader_id),
        voters: s
            .quorum
            .as_ref()
            .map(|q| q.voters.clone())
            .unwrap_or_default(),
        under_replicated: s.under_replicated_partitions,
        offline: s.offline_partitions,
        reassigning: s.reassigning_partitions,
        max_replication_factor: s.max_replication_factor,
        max_replication_factor_topic: s.max_replication_factor_topic.clone(),
    }
}

/// Ordinal of a broker PVC named `data-{sts}-{ordinal}`.
pub fn claim_ordinal(name: &str, sts: &str) -> Option<i32> {
    name.strip_prefix("data-")?
        .strip_prefix(sts)?
        .strip_prefix('-')?
        .parse()
        .ok()
}
