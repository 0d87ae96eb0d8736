//! The classic group protocol APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), offset
//! commits and fetches, and group administration, on top of [`crate::group`].

use crate::security::acl::{Operation, ResourceType};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::RequestContext;
use crate::broker::now_ms;
use crate::group::records::OffsetValue;
use crate::group::state::{
    GroupState, JoinOutcome, JoinParams, JoinResult, SyncOutcome, SyncResult,
};
use crate::group::{GroupCoordinator, OffsetsRecord, group_record, offset_record};

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Margin on top of the rebalance timeout before a parked JoinGroup gives up.
const PARK_MARGIN: Duration = Duration::from_secs(5);

fn join_response(ctx: &RequestContext, r: JoinResult) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_leader(s(&r.leader))
        .with_member_id(s(&r.member_id))
        .with_skip_assignment(r.skip_assignment && ctx.version >= 9)
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(&id))
                        .with_group_instance_id(instance.map(|i| s(&i)))
                        .with_metadata(metadata)
                })
                .collect(),
        );
    if ctx.version >= 7 {
        resp.protocol_type = r.protocol_type.map(|p| s(&p));
    }
    resp.protocol_name = match (r.protocol, ctx.version >= 7) {
        (Some(p), _) => Some(s(&p)),
        (None, true) => None,
        (None, false) => Some(s("")),
    };
    resp
}

pub async fn join(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    if let Err(c) = check(ctx, Operation::Read, &group_id) {
        return join_response(ctx, JoinResult::error(c, &member_id));
    }
    let g = &broker.config.groups;
    if req.session_timeout_ms < g.min_session_timeout_ms
        || req.session_timeout_ms > g.max_session_timeout_ms
    {
        tracing::info!(group = %group_id, client = ctx.client(), session_timeout_ms = req.session_timeout_ms,
            "JoinGroup refused: session timeout outside group.min/max.session.timeout.ms");
        return join_response(
            ctx,
            JoinResult::error(code(ResponseError::InvalidSessionTimeout), &member_id),
        );
    }
    let rebalance_timeout_ms = if ctx.version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let params = JoinParams {
        member_id: member_id.clone(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|i| i.to_string())
            .filter(|i| !i.is_empty()),
        client_id: ctx.client().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let group = broker.groups.group_or_create(&group_id);
    let outcome = {
        let limits = GroupCoordinator::limits(broker);
        group.lock().join(params, Instant::now(), now_ms(), &limits)
    };
    let result = match outcome {
        JoinOutcome::Respond(r) => r,
        JoinOutcome::Wait(rx) => {
            let wait = Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + PARK_MARGIN;
            tokio::select! {
                r = tokio::time::timeout(wait, rx) => match r {
                    Ok(Ok(r)) => r,
                    _ => JoinResult::error(code(ResponseError::UnknownMemberId), &member_id),
                },
                _ = broker.shutdown.cancelled() => {
                    JoinResult::error(code(ResponseError::NotCoordinator), &member_id)
                }
            }
        }
    };
    if result.error == 0 && result.leader == result.member_id && !result.members.is_empty() {
        broker.metrics.group_rebalances.inc();
    }
    tracing::debug!(group = %group_id, client = ctx.client(), member = %result.member_id,
        generation = result.generation, leader = %result.leader, members = result.members.len(),
        error_code = result.error, "JoinGroup answered");
    join_response(ctx, result)
}

fn sync_response(ctx: &RequestContext, r: SyncResult) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = r.protocol_type.map(|p| s(&p));
        resp.protocol_name = r.protocol.map(|p| s(&p));
    }
    resp
}

pub async fn sync(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let partition = match check(ctx, Operation::Read, &group_id) {
        Ok(p) => p,
        Err(c) => return sync_response(ctx, SyncResult::error(c)),
    };
    let Some(group) = broker.groups.group(&group_id) else {
        return sync_response(ctx, SyncResult::error(code(ResponseError::UnknownMemberId)));
    };
    let member_id = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let protocol_type = req.protocol_type.as_ref().map(|p| p.to_string());
    let protocol = req.protocol_name.as_ref().map(|p| p.to_string());
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let (outcome, generation, rebalance_timeout) = {
        let mut g = group.lock();
        let timeout = g
            .members
            .get(&member_id)
            .map(|m| m.rebalance_timeout)
            .unwrap_or_default();
        let o = g.sync(
            &member_id,
            instance.as_deref(),
            req.generation_id,
            protocol_type.as_deref(),
            protocol.as_deref(),
            assignments,
            Instant::now(),
        );
        (o, g.generation, timeout)
    };
    let rx = match outcome {
        SyncOutcome::Respond(r) => {
            tracing::debug!(group = %group_id, member = %member_id, generation = req.generation_id,
                error_code = r.error, assignment_bytes = r.assignment.len(), "SyncGroup answered at once");
            return sync_response(ctx, r);
        }
        SyncOutcome::Wait(rx) => rx,
        SyncOutcome::Persist(rx) => {
            let record = group_record(&group.lock());
            let stored = match GroupCoordinator::append(broker, partition, &[record]) {
                Ok((p, required)) => GroupCoordinator::committed(broker, &p, required).await,
                Err(c) => Err(c),
            };
            let limits = GroupCoordinator::limits(broker);
            let mut g = group.lock();
            match stored {
                Ok(()) => g.complete_sync(generation, now_ms()),
                Err(c) => {
                    tracing::error!(group = %group_id, error_code = c,
                        "could not store the group's assignment; rebalancing again");
                    g.fail_sync(generation, c, Instant::now(), now_ms(), &limits);
                }
            }
            rx
        }
    };
    let wait = rebalance_timeout + PARK_MARGIN;
    let r = tokio::select! {
        r = tokio::time::timeout(wait, rx) => match r {
            Ok(Ok(r)) => r,
            _ => SyncResult::error(code(ResponseError::RebalanceInProgress)),
        },
        _ = broker.shutdown.cancelled() => SyncResult::error(code(ResponseError::NotCoordinator)),
    };
    tracing::debug!(group = %group_id, member = %member_id, generation, error_code = r.error,
        assignment_bytes = r.assignment.len(), "SyncGroup answered");
    sync_response(ctx, r)
}

pub fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let c = match check(ctx, Operation::Read, &group_id) {
        Err(c) => c,
        Ok(_) => match broker.groups.group(&group_id) {
            None => code(ResponseError::UnknownMemberId),
            Some(g) => g.lock().heartbeat(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                Instant::now(),
            ),
        },
    };
    if c != 0 {
        tracing::debug!(group = %group_id, member = %req.member_id, generation = req.generation_id,
            error_code = c, "Heartbeat refused");
    }
    HeartbeatResponse::default().with_error_code(c)
}

pub async fn leave(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let err = |c: i16| LeaveGroupResponse::default().with_error_code(c);
    let partition = match check(ctx, Operation::Read, &group_id) {
        Ok(p) => p,
        Err(c) => return err(c),
    };
    let Some(group) = broker.groups.group(&group_id) else {
        return err(code(ResponseError::UnknownMemberId));
    };
    let limits = GroupCoordinator::limits(broker);
    let (results, record) = {
        let mut g = group.lock();
        let now = Instant::now();
        let results: Vec<i16> = members
            .iter()
            .map(|(id, instance)| g.leave(id, instance.as_deref(), now, now_ms(), &limits))
            .collect();
        let record = (g.state == GroupState::Empty).then(|| group_record(&g));
        (results, record)
    };
    if let Some(record) = record
        && let Err(c) = GroupCoordinator::append(broker, partition, &[record])
    {
        tracing::warn!(group = %group_id, error_code = c, "could not record the group as empty");
    }
    if ctx.version >= 3 {
        LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), c)| {
                    MemberResponse::default()
                        .with_member_id(s(&id))
                        .with_group_instance_id(instance.map(|i| s(&i)))
                        .with_error_code(c)
                })
                .collect(),
        )
    } else {
        err(results.first().copied().unwrap_or(0))
    }
}

pub async fn offset_commit(ctx: &RequestContext, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let all = |c: i16| {
        OffsetCommitResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(c)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    let partition = match check(ctx, Operation::Read, &group_id) {
        Ok(p) => p,
        Err(c) => return all(c),
    };
    let generation = req.generation_id_or_member_epoch;
    let member_id = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let group = if generation < 0 && member_id.is_empty() {
        broker.groups.group_or_create(&group_id)
    } else {
        match broker.groups.group(&group_id) {
            Some(g) => g,
            None => return all(code(ResponseError::UnknownMemberId)),
        }
    };
    // Validate against the group's generation and members.
    {
        let mut g = group.lock();
        let standalone = generation < 0 && member_id.is_empty();
        let check = if standalone {
            if g.members.is_empty() {
                Ok(())
            } else {
                Err(code(ResponseError::UnknownMemberId))
            }
        } else if let Some(i) = instance.as_deref()
            && g.static_members.get(i).is_some_and(|m| *m != member_id)
        {
            Err(code(ResponseError::FencedInstanceId))
        } else if !g.members.contains_key(&member_id) {
            Err(code(ResponseError::UnknownMemberId))
        } else if generation != g.generation {
            Err(code(ResponseError::IllegalGeneration))
        } else if g.state == GroupState::CompletingRebalance {
            Err(code(ResponseError::RebalanceInProgress))
        } else {
            if let Some(m) = g.members.get_mut(&member_id) {
                m.last_heartbeat = Instant::now();
            }
            Ok(())
        };
        if let Err(c) = check {
            tracing::debug!(group = %group_id, client = ctx.client(), generation, error_code = c, "OffsetCommit refused");
            return all(c);
        }
    }
    let md = broker.metadata.current();
    let max_metadata = broker.config.groups.offset_metadata_max_bytes;
    let now = now_ms();
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut records: Vec<OffsetsRecord> = Vec::new();
    let mut values: Vec<(String, i32, OffsetValue)> = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        let denied =
            ctx.authorizing() && !ctx.allowed(&md, Operation::Read, ResourceType::Topic, &topic);
        let known = md.topics.get(&topic);
        let mut tc = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let exists = known.is_some_and(|k| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < k.partitions.len())
            });
            if denied {
                tc.push(code(ResponseError::TopicAuthorizationFailed));
                continue;
            }
            if !exists {
                tc.push(code(ResponseError::UnknownTopicOrPartition));
                continue;
            }
            if metadata.len() > max_metadata {
                tc.push(code(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            let v = OffsetValue {
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata,
                commit_timestamp: now,
            };
            records.push(offset_record(
                &group_id,
                &topic,
                p.partition_index,
                Some(&v),
            ));
            values.push((topic.clone(), p.partition_index, v));
            tc.push(0);
        }
        codes.push(tc);
    }
    if !records.is_empty() {
        let stored = match GroupCoordinator::append(broker, partition, &records) {
            Ok((p, required)) => GroupCoordinator::committed(broker, &p, required).await,
            Err(c) => Err(c),
        };
        match stored {
            Ok(()) => {
                broker
                    .metrics
                    .group_offset_commits
                    .inc_by(values.len() as u64);
                let mut g = group.lock();
                for (t, p, v) in values {
                    g.offsets.insert((t, p), v);
                }
            }
            Err(c) => {
                tracing::warn!(group = %group_id, error_code = c, "offset commit could not be stored");
                for tc in codes.iter_mut() {
                    for x in tc.iter_mut().filter(|x| **x == 0) {
                        *x = c;
                    }
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .zip(codes)
            .map(|(t, tc)| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .zip(tc)
                            .map(|(p, c)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(c)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Committed offsets of one group: `(topic, [(partition, offset, epoch, metadata)])`, for
/// the requested topics (all committed ones when `None`).
#[allow(clippy::type_complexity)]
fn fetch_group(
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<(i32, i64, i32, String)>)>, i16> {
    let broker = &ctx.broker;
    check(ctx, Operation::Describe, group_id)?;
    let committed: HashMap<(String, i32), OffsetValue> = broker
        .groups
        .group(group_id)
        .map(|g| g.lock().offsets.clone())
        .unwrap_or_default();
    let mut wanted = match topics {
        Some(t) => t,
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (t, p) in committed.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    (t, ps)
                })
                .collect()
        }
    };
    if ctx.authorizing() {
        // Offsets of topics the principal may not describe are not revealed.
        let md = broker.metadata.current();
        wanted
            .retain(|(t, _)| ctx.allowed_quietly(&md, Operation::Describe, ResourceType::Topic, t));
    }
    Ok(wanted
        .into_iter()
        .map(|(t, ps)| {
            let parts = ps
                .into_iter()
                .map(|p| match committed.get(&(t.clone(), p)) {
                    Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone()),
                    None => (p, -1, -1, String::new()),
                })
                .collect();
            (t, parts)
        })
        .collect())
}

pub fn offset_fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(ctx, &g.group_id.0, topics) {
                    Ok(list) => {
                        out.topics = list
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(&t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, e, m)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(s(&m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                    }
                    Err(c) => out.error_code = c,
                }
                out
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match fetch_group(ctx, &req.group_id.0, topics) {
        Ok(list) => OffsetFetchResponse::default().with_topics(
            list.into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(&t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o, e, m)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(Some(s(&m)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(c) => {
            // Before v2 there is no top-level error: every requested partition carries it.
            let mut resp = OffsetFetchResponse::default().with_error_code(c);
            if let Some(ts) = &req.topics {
                resp.topics = ts
                    .iter()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(s("")))
                                            .with_error_code(c)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            resp
        }
    }
}

/// Topics a consumer-protocol group's members subscribe to.
fn subscribed_topics(g: &crate::group::state::Group) -> Vec<String> {
    if g.protocol_type.as_deref() != Some("consumer") {
        return Vec::new();
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    let mut out = Vec::new();
    for m in g.members.values() {
        let Some((_, meta)) = m.protocols.iter().find(|(n, _)| *n == protocol) else {
            continue;
        };
        let mut buf = meta.clone();
        if buf.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
            out.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}

pub async fn offset_delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = &ctx.broker;
    let group_id = req.group_id.0.to_string();
    let err = |c: i16| OffsetDeleteResponse::default().with_error_code(c);
    let partition = match check(ctx, Operation::Delete, &group_id) {
        Ok(p) => p,
        Err(c) => return err(c),
    };
    let Some(group) = broker.groups.group(&group_id) else {
        return err(code(ResponseError::GroupIdNotFound));
    };
    let mut records = Vec::new();
    let topics = {
        let g = group.lock();
        if g.state == GroupState::Dead {
            return err(code(ResponseError::GroupIdNotFound));
        }
        let subscribed = if g.state == GroupState::Empty {
            Vec::new()
        } else {
            subscribed_topics(&g)
        };
        req.topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let denied = ctx.topic_denied(Operation::Read, &name);
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let c = if denied {
                            code(ResponseError::TopicAuthorizationFailed)
                        } else if subscribed.contains(&name) {
                            code(ResponseError::GroupSubscribedToTopic)
                        } else {
                            if g.offsets.contains_key(&(name.clone(), p.partition_index)) {
                                records.push(offset_record(
                                    &group_id,
                                    &name,
                                    p.partition_index,
                                    None,
                                ));
                            }
                            0
                        };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(c)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts)
            })
            .collect::<Vec<_>>()
    };
    if !records.is_empty() {
        let stored = match GroupCoordinator::append(broker, partition, &records) {
            Ok((p, required)) => GroupCoordinator::committed(broker, &p, required).await,
            Err(c) => Err(c),
        };
        if let Err(c) = stored {
            return err(c);
        }
        let mut g = group.lock();
        for t in &req.topics {
            for p in &t.partitions {
                let key = (t.name.0.to_string(), p.partition_index);
                let subscribed = topics.iter().any(|rt| {
                    rt.name == t.name
                        && rt
                            .partitions
                            .iter()
                            .any(|rp| rp.partition_index == p.partition_index && rp.error_code != 0)
                });
                if !subscribed {
                    g.offsets.remove(&key);
                }
            }
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

pub fn list(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let broker = &ctx.broker;
    let md = broker.metadata.current();
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut groups: Vec<ListedGroup> = broker
        .groups
        .all_groups()
        .into_iter()
        .filter_map(|g| {
            let g = g.lock();
            if g.state == GroupState::Dead
                || broker.groups.check(broker, &g.id).is_err()
                || (ctx.authorizing()
                    && !ctx.allowed_quietly(&md, Operation::Describe, ResourceType::Group, &g.id))
            {
                return None;
            }
            let state = g.state.name();
            if !states.is_empty() && !states.contains(&state.to_ascii_lowercase()) {
                return None;
            }
            if !types.is_empty() && !types.iter().any(|t| t == "classic") {
                return None;
            }
            Some(
                ListedGroup::default()
                    .with_group_id(GroupId(s(&g.id)))
                    .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                    .with_group_state(s(state))
                    .with_group_type(s("classic")),
            )
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let broker = &ctx.broker;
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let out = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if let Err(c) = check(ctx, Operation::Describe, &id.0) {
                return out.with_error_code(c).with_group_state(s(""));
            }
            let Some(g) = broker.groups.group(&id.0) else {
                // Kafka describes an unknown group as Dead, without an error.
                return out.with_group_state(s("Dead"));
            };
            let g = g.lock();
            let protocol = g.protocol.clone().unwrap_or_default();
            let stable = g.state == GroupState::Stable;
            let members = g
                .members
                .values()
                .map(|m| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    DescribedGroupMember::default()
                        .with_member_id(s(&m.id))
                        .with_group_instance_id(m.instance_id.as_deref().map(s))
                        .with_client_id(s(&m.client_id))
                        .with_client_host(s(&m.client_host))
                        .with_member_metadata(metadata)
                        .with_member_assignment(if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        })
                })
                .collect();
            out.with_group_state(s(g.state.name()))
                .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                .with_protocol_data(s(if stable { &protocol } else { "" }))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in &req.groups_names {
        let c = delete_one(ctx, &id.0).await;
        if c == 0 {
            tracing::info!(group = %id.0, client = ctx.client(), "deleted group");
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(c),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete_one(ctx: &RequestContext, group_id: &str) -> i16 {
    let broker = &ctx.broker;
    let partition = match check(ctx, Operation::Delete, group_id) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let Some(group) = broker.groups.group(group_id) else {
        return code(ResponseError::GroupIdNotFound);
    };
    let records: Vec<OffsetsRecord> = {
        let mut g = group.lock();
        match g.state {
            GroupState::Dead => return code(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return code(ResponseError::NonEmptyGroup),
        }
        g.state = GroupState::Dead;
        let mut r: Vec<OffsetsRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| offset_record(group_id, t, *p, None))
            .collect();
        r.push((
            crate::group::records::RecordKey::Group {
                group: group_id.to_string(),
            }
            .encode(),
            None,
        ));
        r
    };
    let stored = match GroupCoordinator::append(broker, partition, &records) {
        Ok((p, required)) => GroupCoordinator::committed(broker, &p, required).await,
        Err(c) => Err(c),
    };
    match stored {
        Ok(()) => {
            group
                .lock()
                .fail_parked(code(ResponseError::GroupIdNotFound));
            broker.groups.remove_group(group_id);
            0
        }
        Err(c) => {
            group.lock().state = GroupState::Empty;
            c
        }
    }
}

/// Kafka's group ACL check, then the coordinator's own checks.
fn check(ctx: &RequestContext, op: Operation, group: &str) -> Result<i32, i16> {
    if ctx.group_denied(op, group) {
        return Err(code(ResponseError::GroupAuthorizationFailed));
    }
    ctx.broker.groups.check(&ctx.broker, group)
}
