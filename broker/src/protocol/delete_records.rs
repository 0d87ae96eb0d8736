//! DeleteRecords: advance a partition's log start offset; whole segments below it go.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::security::acl::Operation;

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = &ctx.broker;
    let mut changed = false;
    let mut remote = Vec::new();
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(1000) as u64);
    let mut topics: Vec<DeleteRecordsTopicResult> = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = ctx.topic_denied(Operation::Delete, &t.name.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    match broker.replicas.get(&t.name.0, p.partition_index) {
                        _ if denied => r.error_code = ResponseError::TopicAuthorizationFailed.code(),
                        None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                        Some(partition) => match partition.delete_records_before(p.offset) {
                            Ok(low) => {
                                changed = true;
                                if partition.remote_view().has_data() {
                                    remote.push((partition.clone(), t.name.0.clone()));
                                }
                                r.low_watermark = low;
                                tracing::info!(topic = %t.name.0, partition = p.partition_index,
                                    log_start_offset = low, client = ctx.client(), "deleted records");
                            }
                            Err(e) => {
                                r.error_code = e.error_code();
                                broker.metrics.partition_error("delete_records", r.error_code);
                            }
                        },
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    if changed {
        // The new log start offset must survive a crash once acknowledged.
        let replicas = broker.replicas.clone();
        let persisted =
            match tokio::task::spawn_blocking(move || replicas.write_checkpoints()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "writing the log start offset checkpoint failed");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "checkpoint task failed");
                    false
                }
            };
        if !persisted {
            for t in &mut topics {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = ResponseError::KafkaStorageError.code();
                    }
                }
            }
        }
    }
    // Records deleted from the remote range: the manifest records the new start (and
    // drops whole segments below it) before the answer.
    if let Some(tier) = &broker.tier {
        for (p, topic) in remote {
            if let Err(e) = tier.apply_log_start(&p, timeout).await {
                tracing::error!(topic = %topic, partition = p.index, error = %e,
                    "cannot record DeleteRecords in the remote manifest");
                for t in topics.iter_mut().filter(|t| t.name.0 == topic) {
                    for r in t
                        .partitions
                        .iter_mut()
                        .filter(|r| r.partition_index == p.index)
                    {
                        r.error_code = ResponseError::KafkaStorageError.code();
                    }
                }
            }
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
