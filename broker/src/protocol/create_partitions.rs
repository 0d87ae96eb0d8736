//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::topics;
use super::{RequestContext, msg};
use crate::security::acl::Operation;

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignments = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = if ctx.topic_denied(Operation::Alter, &name) {
            Err(super::topics::TopicError::new(
                kafka_protocol::ResponseError::TopicAuthorizationFailed,
                format!("not authorized to alter topic {name}"),
            ))
        } else {
            topics::add_partitions(&ctx.broker, &name, t.count, assignments, req.validate_only)
                .await
        };
        if outcome.is_ok() && !req.validate_only {
            tracing::info!(topic = %name, partitions = t.count, client = ctx.client(), "added partitions");
        }
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = msg(e.message);
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
