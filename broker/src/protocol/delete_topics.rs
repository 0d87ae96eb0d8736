//! DeleteTopics, by name or (v6+) by topic id.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::topics::{self, TopicError};
use super::{RequestContext, msg};
use crate::security::acl::Operation;

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    let wanted: Vec<(Option<String>, Uuid)> = if v >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let md = broker.metadata.current();
        let resolved: Result<String, TopicError> = match (&name, id.is_nil()) {
            (Some(n), _) => Ok(n.clone()),
            (None, false) => md.topic_name_by_id(&id).map(str::to_string).ok_or_else(|| {
                TopicError::new(
                    ResponseError::UnknownTopicId,
                    format!("Topic id {id} does not exist"),
                )
            }),
            (None, true) => Err(TopicError::new(
                ResponseError::InvalidRequest,
                "Neither topic name nor id given",
            )),
        };
        let result = match resolved {
            Err(e) => Err(e),
            // Kafka's answer whether or not the topic exists.
            Ok(n) if ctx.topic_denied(Operation::Delete, &n) => Err(TopicError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("not authorized to delete topic {n}"),
            )),
            Ok(n) => match topics::delete(broker, &n).await {
                Ok(tid) => {
                    tracing::info!(topic = %n, client = ctx.client(), "deleted topic");
                    Ok((n, tid))
                }
                Err(e) => Err(e),
            },
        };
        let mut r = DeletableTopicResult::default();
        match result {
            Ok((n, tid)) => {
                r.name = Some(TopicName(StrBytes::from_string(n)));
                if v >= 6 {
                    r.topic_id = tid;
                }
            }
            Err(e) => {
                r.name = name.map(|n| TopicName(StrBytes::from_string(n)));
                if v >= 6 {
                    r.topic_id = id;
                }
                r.error_code = e.code;
                if v >= 5 {
                    r.error_message = msg(e.message);
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
