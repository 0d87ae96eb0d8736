//! Produce: validate batch headers, append as stored, answer by acks.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, absent_partition_error, msg};
use crate::broker::now_ms;
use crate::log::LogError;
use crate::log::config::TimestampType;
use crate::log::validate;
use crate::replica::{Partition, PartitionError};
use crate::security::acl::{Operation, ResourceType};

/// A partition append whose response still waits for acks=all or an fsync.
struct Pending {
    topic_idx: usize,
    partition_idx: usize,
    partition: Arc<Partition>,
    required_offset: i64,
    /// The leader epoch the records were written in: a later epoch may have replaced them.
    leader_epoch: i32,
    flush: bool,
}

fn error_response(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

/// Handles a produce request. Returns the response and whether any partition failed
/// (an acks=0 producer only learns of failures by the connection closing).
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> (ProduceResponse, bool) {
    let broker = &ctx.broker;
    let v = ctx.version;
    let acks = req.acks;
    let now = now_ms();
    let mut pending: Vec<Pending> = Vec::new();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut any_error = false;
    // Only looked up when an authorizer is on.
    let md = ctx.authorizing().then(|| broker.metadata.current());
    let txn_denied = match (&md, &req.transactional_id) {
        (Some(md), Some(id)) => {
            !ctx.allowed(md, Operation::Write, ResourceType::TransactionalId, id)
        }
        _ => false,
    };
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name: Option<Arc<str>> = if v >= 13 {
            broker.replicas.topic_name(&topic.topic_id)
        } else {
            Some(Arc::from(topic.name.0.as_str()))
        };
        let denied = match (&md, &name) {
            _ if txn_denied => Some(ResponseError::TransactionalIdAuthorizationFailed),
            (Some(md), Some(n)) if !ctx.allowed(md, Operation::Write, ResourceType::Topic, n) => {
                Some(ResponseError::TopicAuthorizationFailed)
            }
            _ => None,
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, pd) in topic.partition_data.into_iter().enumerate() {
            let index = pd.index;
            if let Some(e) = denied {
                any_error = true;
                partitions.push(error_response(index, e.code(), None));
                continue;
            }
            let Some(name) = name.as_ref() else {
                any_error = true;
                partitions.push(error_response(
                    index,
                    ResponseError::UnknownTopicId.code(),
                    None,
                ));
                continue;
            };
            if crate::protocol::metadata::is_internal(name) {
                any_error = true;
                tracing::warn!(topic = %name, client = ctx.client(), peer = %ctx.peer,
                    "refused produce to an internal topic");
                partitions.push(error_response(
                    index,
                    ResponseError::InvalidTopicException.code(),
                    Some(format!("Cannot append to internal topic {name}")),
                ));
                continue;
            }
            if !matches!(acks, -1..=1) {
                any_error = true;
                partitions.push(error_response(
                    index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks={acks} is not one of -1, 0, 1")),
                ));
                continue;
            }
            let Some(partition) = broker.replicas.get(name, index) else {
                any_error = true;
                let code = absent_partition_error(broker, name, index);
                broker.metrics.partition_error("produce", code);
                partitions.push(error_response(index, code, None));
                continue;
            };
            let records = pd.records.unwrap_or_default();
            let config = partition.config();
            let prepared = match validate::prepare(&records, &config, now) {
                Ok(p) => p,
                Err(e) => {
                    any_error = true;
                    tracing::warn!(topic = %name, partition = index, client = ctx.client(),
                        peer = %ctx.peer, error = %e, "rejected produce");
                    broker.metrics.partition_error("produce", e.error_code());
                    let mut r = error_response(index, e.error_code(), Some(e.to_string()));
                    if v >= 8 {
                        r.record_errors = vec![
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(0)
                                .with_batch_index_error_message(msg(e.to_string())),
                        ];
                    }
                    partitions.push(r);
                    continue;
                }
            };
            match partition.append(&prepared, acks, now) {
                Ok(outcome) => {
                    let log_append_time = match config.timestamp_type {
                        TimestampType::LogAppendTime => now,
                        TimestampType::CreateTime => -1,
                    };
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_base_offset(outcome.info.first_offset)
                            .with_log_append_time_ms(log_append_time)
                            .with_log_start_offset(outcome.info.log_start_offset),
                    );
                    if acks == -1 || outcome.flush_due {
                        pending.push(Pending {
                            topic_idx: ti,
                            partition_idx: pi,
                            partition,
                            required_offset: outcome.info.last_offset + 1,
                            leader_epoch: outcome.leader_epoch,
                            flush: outcome.flush_due,
                        });
                    }
                }
                Err(e) => {
                    any_error = true;
                    let code = e.error_code();
                    broker.metrics.partition_error("produce", code);
                    match &e {
                        PartitionError::Log(LogError::Producer { .. }) => {
                            tracing::info!(topic = %name, partition = index, client = ctx.client(),
                                peer = %ctx.peer, error = %e, "refused idempotent produce");
                        }
                        PartitionError::Log(_) => {
                            tracing::error!(topic = %name, partition = index, error = %e, "append failed");
                        }
                        _ => {}
                    }
                    let mut r = error_response(index, code, Some(e.to_string()));
                    if let PartitionError::NotLeader { leader, .. } = e
                        && v >= 10
                    {
                        r.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(partition.leadership().leader_epoch);
                    }
                    partitions.push(r);
                }
            }
        }
        let mut t = TopicProduceResponse::default().with_partition_responses(partitions);
        if v >= 13 {
            t.topic_id = topic.topic_id;
        } else {
            t.name = TopicName(topic.name.0);
        }
        topics.push(t);
    }

    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let waiting = std::time::Instant::now();
    for p in pending {
        let result = complete(&p, acks, timeout).await;
        if let Err(code) = result {
            any_error = true;
            broker.metrics.partition_error("produce", code);
            if let Some(r) = topics
                .get_mut(p.topic_idx)
                .and_then(|t| t.partition_responses.get_mut(p.partition_idx))
            {
                let index = r.index;
                *r = error_response(index, code, None);
            }
        }
    }
    ctx.waited(waiting);
    (ProduceResponse::default().with_responses(topics), any_error)
}

/// Waits for what the response promises: the fsync demanded by `flush.messages`, and for
/// acks=all the high watermark passing the appended records.
async fn complete(p: &Pending, acks: i16, timeout: Duration) -> Result<(), i16> {
    if p.flush {
        let partition = p.partition.clone();
        match tokio::task::spawn_blocking(move || partition.flush(false)).await {
            // Another flush may have covered these records; either way they must be on disk.
            Ok(Ok(_)) if p.partition.recovery_point() >= p.required_offset => {}
            Ok(Ok(_)) => return Err(ResponseError::KafkaStorageError.code()),
            Ok(Err(e)) => {
                tracing::error!(topic = %p.partition.topic, partition = p.partition.index, error = %e, "fsync after flush.messages failed");
                return Err(ResponseError::KafkaStorageError.code());
            }
            Err(_) => return Err(ResponseError::KafkaStorageError.code()),
        }
    }
    if acks == -1 {
        // Committed only if the high watermark passes the records while this broker still
        // leads in the epoch that wrote them: after a leader change the offsets may hold
        // another leader's records, so the wait fails instead (the producer retries).
        let mut rx = p.partition.subscribe_high_watermark();
        let same_leader = || {
            let l = p.partition.leadership();
            p.partition.is_leader() && l.leader_epoch == p.leader_epoch
        };
        let reached = tokio::time::timeout(
            timeout,
            rx.wait_for(|hw| *hw >= p.required_offset || !same_leader()),
        )
        .await;
        match reached {
            Ok(Ok(_)) if same_leader() => {}
            Ok(_) => return Err(ResponseError::NotLeaderOrFollower.code()),
            Err(_) => return Err(ResponseError::RequestTimedOut.code()),
        }
        // The ISR may have shrunk while waiting: then fewer copies than promised exist.
        let isr = p.partition.leadership().isr.len();
        if (isr as i32) < p.partition.config().min_insync_replicas {
            return Err(ResponseError::NotEnoughReplicasAfterAppend.code());
        }
    }
    Ok(())
}
