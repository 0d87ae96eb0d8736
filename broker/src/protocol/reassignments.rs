//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders: moving
//! replicas and leadership, as `kafka-reassign-partitions.sh` and
//! `kafka-leader-election.sh` (and every admin client) drive them.

use crate::security::acl::Operation;
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::metadata::reassign::{Reassignment, check_target};
use crate::metadata::{ClusterMetadata, MetadataCommand, PartitionState};

fn partition<'a>(md: &'a ClusterMetadata, topic: &str, index: i32) -> Option<&'a PartitionState> {
    md.topics
        .get(topic)
        .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
}

fn error_code(e: &crate::metadata::MetadataError) -> i16 {
    crate::protocol::topics::TopicError::from(e.clone()).code
}

pub async fn alter(
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if ctx.cluster_denied(Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(super::msg(
                "ALTER on the cluster is required to move partitions",
            ));
    }
    let md = ctx.broker.metadata.current();
    // v0 had no such flag and allowed it.
    let allow_rf_change = ctx.version == 0 || req.allow_replication_factor_change;
    let mut results: Vec<(TopicName, Vec<ReassignablePartitionResponse>)> = Vec::new();
    let mut moves = Vec::new();
    // (topic index, partition index in the response) of each accepted move.
    let mut accepted = Vec::new();
    for t in &req.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let mut r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let fail = |r: &mut ReassignablePartitionResponse, e: ResponseError, msg: String| {
                r.error_code = e.code();
                r.error_message = Some(StrBytes::from_string(msg));
            };
            let name = t.name.0.as_str();
            match partition(&md, name, p.partition_index) {
                None => fail(
                    &mut r,
                    ResponseError::UnknownTopicOrPartition,
                    format!("{name}-{} does not exist", p.partition_index),
                ),
                Some(state) => {
                    let target: Option<Vec<i32>> =
                        p.replicas.as_ref().map(|v| v.iter().map(|b| b.0).collect());
                    match &target {
                        None if !state.is_reassigning() => fail(
                            &mut r,
                            ResponseError::NoReassignmentInProgress,
                            format!(
                                "no reassignment of {name}-{} is in progress",
                                p.partition_index
                            ),
                        ),
                        Some(target)
                            if !allow_rf_change
                                && target.len() != state.original_replicas().len() =>
                        {
                            fail(
                                &mut r,
                                ResponseError::InvalidReplicationFactor,
                                format!(
                                    "{name}-{}: the target has {} replicas, the partition {}",
                                    p.partition_index,
                                    target.len(),
                                    state.original_replicas().len()
                                ),
                            )
                        }
                        Some(target) => {
                            match check_target(name, p.partition_index, target, &|b| {
                                md.brokers.contains_key(&b)
                            }) {
                                Ok(()) => {}
                                Err(e) => fail(
                                    &mut r,
                                    ResponseError::InvalidReplicaAssignment,
                                    e.to_string(),
                                ),
                            }
                        }
                        None => {}
                    }
                    if r.error_code == 0 {
                        accepted.push((results.len(), partitions.len()));
                        moves.push(Reassignment {
                            topic: name.to_string(),
                            partition: p.partition_index,
                            target,
                        });
                    }
                }
            }
            partitions.push(r);
        }
        results.push((t.name.clone(), partitions));
    }
    if !moves.is_empty() {
        for m in &moves {
            tracing::info!(topic = %m.topic, partition = m.partition, target = ?m.target,
                client = ?ctx.client_id, "partition reassignment requested (None: cancel)");
        }
        if let Err(e) = ctx
            .broker
            .metadata
            .submit(MetadataCommand::ReassignPartitions { moves })
            .await
        {
            for (ti, pi) in accepted {
                if let Some(r) = results.get_mut(ti).and_then(|(_, ps)| ps.get_mut(pi)) {
                    r.error_code = error_code(&e);
                    r.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
    }
    let mut resp = AlterPartitionReassignmentsResponse::default().with_responses(
        results
            .into_iter()
            .map(|(name, partitions)| {
                ReassignableTopicResponse::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect(),
    );
    if ctx.version >= 1 {
        resp.allow_replication_factor_change = allow_rf_change;
    }
    resp
}

pub fn list(
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if ctx.cluster_denied(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(super::msg(
                "DESCRIBE on the cluster is required to list reassignments",
            ));
    }
    let md = ctx.broker.metadata.current();
    let wanted: Option<BTreeMap<&str, &[i32]>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.as_str(), t.partition_indexes.as_slice()))
            .collect()
    });
    let topics = md
        .topics
        .values()
        .filter_map(|t| {
            let only = match &wanted {
                Some(w) => Some(*w.get(t.name.as_str())?),
                None => None,
            };
            let partitions: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    p.is_reassigning() && only.is_none_or(|o| o.contains(&(*i as i32)))
                })
                .map(|(i, p)| {
                    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect();
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding))
                        .with_removing_replicas(ids(&p.removing))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

const PREFERRED: i8 = 0;

pub async fn elect(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    if ctx.cluster_denied(Operation::Alter) {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let md = ctx.broker.metadata.current();
    let election_type = if ctx.version >= 1 {
        req.election_type
    } else {
        PREFERRED
    };
    let all = req.topic_partitions.is_none();
    let requested: Vec<(String, i32)> = match &req.topic_partitions {
        Some(tps) => tps
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
        None => md
            .topics
            .values()
            .flat_map(|t| (0..t.partitions.len() as i32).map(|i| (t.name.clone(), i)))
            .collect(),
    };
    let mut results: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    let mut elect = Vec::new();
    for (topic, index) in requested {
        let (code, msg) = match partition(&md, &topic, index) {
            None => (
                ResponseError::UnknownTopicOrPartition,
                "no such partition".to_string(),
            ),
            Some(p) if election_type != PREFERRED => {
                if p.leader >= 0 {
                    (
                        ResponseError::ElectionNotNeeded,
                        "the partition has a leader".into(),
                    )
                } else {
                    (
                        ResponseError::EligibleLeadersNotAvailable,
                        "unclean election on request is not supported: set unclean.leader.election.enable on the topic".into(),
                    )
                }
            }
            Some(p) => match p.replicas.first() {
                Some(&pref) if p.leader == pref => {
                    if all {
                        continue;
                    }
                    (
                        ResponseError::ElectionNotNeeded,
                        "the preferred replica leads".into(),
                    )
                }
                Some(&pref) if p.isr.contains(&pref) && md.is_active(pref) => {
                    elect.push((topic.clone(), index));
                    results
                        .entry(topic)
                        .or_default()
                        .push(PartitionResult::default().with_partition_id(index));
                    continue;
                }
                _ => (
                    ResponseError::PreferredLeaderNotAvailable,
                    "the preferred replica is not in sync or is down".into(),
                ),
            },
        };
        results.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(index)
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        );
    }
    if !elect.is_empty()
        && let Err(e) = ctx
            .broker
            .metadata
            .submit(MetadataCommand::ElectPreferredLeaders {
                partitions: elect.clone(),
            })
            .await
    {
        for (topic, index) in &elect {
            if let Some(r) = results
                .get_mut(topic)
                .and_then(|rs| rs.iter_mut().find(|r| r.partition_id == *index))
            {
                r.error_code = error_code(&e);
                r.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(
        results
            .into_iter()
            .map(|(topic, partition_result)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(partition_result)
            })
            .collect(),
    )
}
