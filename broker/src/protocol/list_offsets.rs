//! ListOffsets: earliest, latest, max timestamp, or the first offset at a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};

use super::{RequestContext, absent_partition_error};
use crate::replica::Partition;
use crate::security::acl::Operation;

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = ctx.topic_denied(Operation::Describe, &t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            partitions.push({
                let mut r = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1);
                let epoch = if v >= 4 { p.current_leader_epoch } else { -1 };
                let result = match broker.replicas.get(&t.name.0, p.partition_index) {
                    _ if denied => Err(ResponseError::TopicAuthorizationFailed.code()),
                    None => Err(absent_partition_error(broker, &t.name.0, p.partition_index)),
                    Some(partition) => {
                        // Special timestamps only exist from the version that defined them.
                        let ts = p.timestamp;
                        let known = ts >= -2
                            || (ts == -3 && v >= 7)
                            || (ts == -4 && v >= 8)
                            || (ts == -5 && v >= 9);
                        if !known {
                            Err(ResponseError::UnsupportedVersion.code())
                        } else if ts >= 0 && partition.remote_view().has_data() {
                            by_timestamp_with_remote(broker, &partition, ts, epoch).await
                        } else if ts == -3 && partition.remote_view().has_data() {
                            max_timestamp_with_remote(broker, &partition, epoch).await
                        } else {
                            partition.list_offset(ts, epoch).map_err(|e| e.error_code())
                        }
                    }
                };
                match result {
                    Ok((offset, timestamp, leader_epoch)) => {
                        r.offset = offset;
                        r.timestamp = timestamp;
                        if v >= 4 {
                            r.leader_epoch = leader_epoch;
                        }
                    }
                    Err(code) => {
                        broker.metrics.partition_error("list_offsets", code);
                        r.error_code = code;
                    }
                }
                r
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(t.name.0))
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// MAX_TIMESTAMP over local and remote-only data: the remote candidate wins when its
/// timestamp is at least the local one (it is the earlier offset).
async fn max_timestamp_with_remote(
    broker: &crate::broker::Broker,
    partition: &Partition,
    epoch: i32,
) -> Result<(i64, i64, i32), i16> {
    let local = partition
        .list_offset(-3, epoch)
        .map_err(|e| e.error_code())?;
    let Some(tier) = &broker.tier else {
        return Ok(local);
    };
    let lookup = tier.max_timestamp_offset(partition);
    match tokio::time::timeout(REMOTE_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(Some(remote))) if remote.1 >= local.1 => Ok(remote),
        Ok(Ok(_)) => Ok(local),
        Err(_) => {
            tracing::warn!(topic = %partition.topic, partition = partition.index,
                "max timestamp lookup in remote storage did not finish in time");
            Err(ResponseError::RequestTimedOut.code())
        }
        Ok(Err(e)) => {
            tracing::error!(topic = %partition.topic, partition = partition.index,
                error = %e, "max timestamp lookup in remote storage failed");
            Err(ResponseError::KafkaStorageError.code())
        }
    }
}

/// How long a timestamp lookup may wait for the object store (index and chunk reads).
const REMOTE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A timestamp lookup that looks in the remote-only segments first (they hold the older
/// records), then in the local log.
async fn by_timestamp_with_remote(
    broker: &crate::broker::Broker,
    partition: &Partition,
    ts: i64,
    epoch: i32,
) -> Result<(i64, i64, i32), i16> {
    partition.fetch_offsets(epoch).map_err(|e| e.error_code())?;
    if let Some(tier) = &broker.tier {
        let lookup = tier.offset_for_timestamp(partition, ts);
        match tokio::time::timeout(REMOTE_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(Some(found))) => return Ok(found),
            Ok(Ok(None)) => {}
            Err(_) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, timestamp = ts,
                    "timestamp lookup in remote storage did not finish in time");
                return Err(ResponseError::RequestTimedOut.code());
            }
            Ok(Err(e)) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, timestamp = ts,
                    error = %e, "timestamp lookup in remote storage failed");
                return Err(ResponseError::KafkaStorageError.code());
            }
        }
    }
    partition.list_offset(ts, epoch).map_err(|e| e.error_code())
}
