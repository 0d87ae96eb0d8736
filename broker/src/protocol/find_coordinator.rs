//! FindCoordinator: the broker leading a group's `__consumer_offsets` partition. The
//! topic is created on the first request, as Kafka does. Transaction coordinators do not
//! exist yet: those keys get COORDINATOR_NOT_AVAILABLE.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::metadata::brokers_on;
use super::{RequestContext, msg};
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};

const GROUP: i8 = 0;

struct Found {
    node: i32,
    host: String,
    port: i32,
    error: i16,
    message: Option<String>,
}

impl Found {
    fn error(e: ResponseError, message: &str) -> Self {
        Self {
            node: -1,
            host: String::new(),
            port: -1,
            error: e.code(),
            message: Some(message.to_string()),
        }
    }
}

async fn ensure_offsets_topic(ctx: &RequestContext) -> Result<(), String> {
    let broker = &ctx.broker;
    if broker.metadata.current().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let g = &broker.config.groups;
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            g.offsets_topic_segment_bytes.to_string(),
        ),
        ("compression.type".to_string(), "producer".to_string()),
    ]);
    crate::protocol::topics::create_internal(
        broker,
        OFFSETS_TOPIC,
        g.offsets_topic_num_partitions,
        g.offsets_topic_replication_factor,
        configs,
    )
    .await
    .map_err(|e| e.message)?;
    GroupCoordinator::sync_partitions(broker).await;
    Ok(())
}

async fn find(ctx: &RequestContext, key: &str, key_type: i8) -> Found {
    if key_type == GROUP && ctx.group_denied(crate::security::acl::Operation::Describe, key) {
        return Found::error(
            ResponseError::GroupAuthorizationFailed,
            "not authorized to use this group",
        );
    }
    if key_type != GROUP {
        return Found::error(
            ResponseError::CoordinatorNotAvailable,
            "transactions are not supported by this Sluice version",
        );
    }
    if key.is_empty() {
        return Found::error(ResponseError::InvalidRequest, "the group id is empty");
    }
    if let Err(e) = ensure_offsets_topic(ctx).await {
        tracing::warn!(error = %e, "cannot create __consumer_offsets");
        return Found::error(ResponseError::CoordinatorNotAvailable, &e);
    }
    let broker = &ctx.broker;
    let md = broker.metadata.current();
    let partition = GroupCoordinator::partition_for(broker, key);
    let leader = md
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(partition as usize))
        .map(|p| p.leader)
        .unwrap_or(-1);
    let endpoint = brokers_on(&md, &ctx.listener)
        .into_iter()
        .find(|(id, ..)| *id == leader);
    match endpoint {
        Some((node, host, port, _)) => Found {
            node,
            host,
            port,
            error: 0,
            message: None,
        },
        None => Found::error(
            ResponseError::CoordinatorNotAvailable,
            &format!("partition {partition} of __consumer_offsets has no leader on this listener"),
        ),
    }
}

pub async fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    tracing::debug!(client = ctx.client(), peer = %ctx.peer, key = %req.key,
        keys = req.coordinator_keys.len(), key_type = req.key_type, "FindCoordinator");
    if ctx.version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let f = find(ctx, &key, req.key_type).await;
            coordinators.push(
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(f.node))
                    .with_host(StrBytes::from_string(f.host))
                    .with_port(f.port)
                    .with_error_code(f.error)
                    .with_error_message(f.message.and_then(msg)),
            );
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let key_type = if ctx.version >= 1 {
        req.key_type
    } else {
        GROUP
    };
    let f = find(ctx, &req.key, key_type).await;
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(f.error)
        .with_node_id(BrokerId(f.node))
        .with_host(StrBytes::from_string(f.host))
        .with_port(f.port);
    if ctx.version >= 1 {
        resp.error_message = f.message.and_then(msg);
    }
    resp
}
