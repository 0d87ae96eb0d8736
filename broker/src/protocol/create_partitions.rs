//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::topics::{self, TopicError, apply_locally};
use super::{RequestContext, msg};
use crate::metadata::MetadataCommand;

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome: Result<(), TopicError> = async {
            let md = broker.metadata.current();
            let Some(topic) = md.topics.get(&name) else {
                return Err(TopicError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                ));
            };
            let current = topic.partitions.len() as i32;
            if t.count <= current {
                return Err(TopicError::new(
                    ResponseError::InvalidPartitions,
                    format!("Topic currently has {current} partitions, which is higher than or equal to the requested {}.", t.count),
                ));
            }
            let rf = topic.partitions.first().map(|p| p.replicas.len() as i16).unwrap_or(1);
            let new = t.count - current;
            topics::check_partition_limit(&md, i64::from(new), i64::from(rf), broker.config.max_broker_partitions)?;
            let assignments = match t.assignments.as_ref().filter(|a| !a.is_empty()) {
                Some(a) => {
                    if a.len() as i32 != new {
                        return Err(TopicError::new(
                            ResponseError::InvalidReplicaAssignment,
                            format!("Increasing the number of partitions by {new} but {} assignments provided.", a.len()),
                        ));
                    }
                    a.iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect()
                }
                None => topics::assign(&md, &name, current, new, rf)?,
            };
            let cmd = MetadataCommand::CreatePartitions { name: name.clone(), assignments };
            if req.validate_only {
                let mut copy = (*md).clone();
                return copy.apply(&cmd).map_err(TopicError::from);
            }
            let md = broker.metadata.submit(cmd).await?;
            apply_locally(broker, md).await;
            tracing::info!(topic = %name, partitions = t.count, client = ctx.client(), "added partitions");
            Ok(())
        }
        .await;
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = msg(e.message);
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
