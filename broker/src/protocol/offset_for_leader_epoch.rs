//! OffsetForLeaderEpoch: where a leader epoch ended, so consumers and followers can
//! detect a truncated log.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::security::acl::Operation;

pub fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let broker = &ctx.broker;
    // replica_id (v3+) >= 0: a follower truncating to this leader's log.
    let for_follower = ctx.version >= 3 && req.replica_id.0 >= 0;
    let follower_denied = for_follower && ctx.cluster_denied(Operation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = follower_denied
                || (!for_follower && ctx.topic_denied(Operation::Describe, &t.topic.0));
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    match broker.replicas.get(&t.topic.0, p.partition) {
                        _ if denied => {
                            r.error_code = ResponseError::TopicAuthorizationFailed.code()
                        }
                        None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                        Some(partition) => {
                            match partition.end_offset_for_epoch(
                                p.leader_epoch,
                                p.current_leader_epoch,
                                for_follower,
                            ) {
                                Ok((epoch, end)) => {
                                    r.leader_epoch = epoch;
                                    r.end_offset = end;
                                }
                                Err(e) => r.error_code = e.error_code(),
                            }
                        }
                    }
                    broker
                        .metrics
                        .partition_error("offset_for_leader_epoch", r.error_code);
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
