//! ListOffsets: earliest, latest, max timestamp, or the first offset at a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};

use super::{RequestContext, absent_partition_error};

pub fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let epoch = if v >= 4 { p.current_leader_epoch } else { -1 };
                    let result = match broker.replicas.get(&t.name.0, p.partition_index) {
                        None => Err(absent_partition_error(broker, &t.name.0, p.partition_index)),
                        Some(partition) => {
                            // Special timestamps only exist from the version that defined them.
                            let ts = p.timestamp;
                            let known = ts >= -2
                                || (ts == -3 && v >= 7)
                                || (ts == -4 && v >= 8)
                                || (ts == -5 && v >= 9);
                            if known {
                                partition.list_offset(ts, epoch).map_err(|e| e.error_code())
                            } else {
                                Err(ResponseError::UnsupportedVersion.code())
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
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(t.name.0))
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
