//! Metadata: brokers (as reachable on the listener the client used), topics, partitions,
//! leaders and epochs; creates topics on demand when `auto.create.topics.enable` allows.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::RequestContext;
use super::topics::{self, NewTopic};
use crate::metadata::{ClusterMetadata, TopicMetadata};
use crate::security::acl::{CLUSTER_RESOURCE, Operation, ResourceType};

/// Unauthorized topics, existing or not, get the same answer.
const DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();

pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

/// Unfenced brokers with an endpoint on `listener` (as Kafka lists them).
pub fn brokers_on(md: &ClusterMetadata, listener: &str) -> Vec<(i32, String, i32, Option<String>)> {
    md.brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            b.endpoints
                .iter()
                .find(|e| e.listener == listener)
                .map(|e| (b.id, e.host.clone(), i32::from(e.port), b.rack.clone()))
        })
        .collect()
}

fn describe_topic(md: &ClusterMetadata, t: &TopicMetadata, version: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offline: Vec<BrokerId> = p
                .replicas
                .iter()
                .filter(|r| !md.is_active(**r))
                .map(|r| BrokerId(*r))
                .collect();
            let mut mp = MetadataResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    0
                })
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect());
            if version >= 7 {
                mp.leader_epoch = p.leader_epoch;
            }
            if version >= 5 {
                mp.offline_replicas = offline;
            }
            mp
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_is_internal(is_internal(&t.name))
        .with_partitions(partitions);
    if version >= 10 {
        topic.topic_id = t.id;
    }
    topic
}

fn error_topic(name: Option<&str>, id: Uuid, code: i16, version: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))));
    if version >= 10 {
        t.topic_id = id;
    }
    t
}

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    // v0: an empty list means all topics; v1+: null means all topics.
    let wanted = match req.topics {
        None => None,
        Some(list) if list.is_empty() && v == 0 => None,
        Some(list) => Some(list),
    };
    let allow_auto_create =
        broker.config.auto_create_topics_enable && (v < 4 || req.allow_auto_topic_creation);
    let mut md = broker.metadata.current();
    let mut topics = Vec::new();
    match wanted {
        None => {
            // Topics the principal may not describe are left out: their names leak nothing.
            topics.extend(
                md.topics
                    .values()
                    .filter(|t| {
                        !ctx.authorizing()
                            || ctx.allowed_quietly(
                                &md,
                                Operation::Describe,
                                ResourceType::Topic,
                                &t.name,
                            )
                    })
                    .map(|t| describe_topic(&md, t, v)),
            );
        }
        Some(list) => {
            // Create missing topics first so the response describes them.
            let mut results: BTreeMap<usize, MetadataResponseTopic> = BTreeMap::new();
            for (i, rt) in list.iter().enumerate() {
                let Some(name) = rt.name.as_ref().map(|n| n.0.to_string()) else {
                    continue;
                };
                if ctx.authorizing()
                    && !ctx.allowed(&md, Operation::Describe, ResourceType::Topic, &name)
                {
                    results.insert(i, error_topic(Some(&name), Uuid::nil(), DENIED, v));
                    continue;
                }
                if md.topics.contains_key(&name) {
                    continue;
                }
                if let Err(e) = topics::validate_name(&name) {
                    results.insert(i, error_topic(Some(&name), Uuid::nil(), e.code, v));
                    continue;
                }
                if !allow_auto_create || is_internal(&name) {
                    results.insert(
                        i,
                        error_topic(
                            Some(&name),
                            Uuid::nil(),
                            ResponseError::UnknownTopicOrPartition.code(),
                            v,
                        ),
                    );
                    continue;
                }
                if ctx.authorizing()
                    && !ctx.allowed_quietly(
                        &md,
                        Operation::Create,
                        ResourceType::Cluster,
                        CLUSTER_RESOURCE,
                    )
                    && !ctx.allowed(&md, Operation::Create, ResourceType::Topic, &name)
                {
                    results.insert(i, error_topic(Some(&name), Uuid::nil(), DENIED, v));
                    continue;
                }
                let created = topics::create(
                    broker,
                    NewTopic {
                        name: name.clone(),
                        num_partitions: -1,
                        replication_factor: -1,
                        assignments: None,
                        configs: BTreeMap::new(),
                    },
                    false,
                )
                .await;
                match created {
                    Ok(_) => {
                        tracing::info!(topic = %name, client = ctx.client(), "auto-created topic");
                    }
                    Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e.message, "auto-creating topic failed");
                        results.insert(i, error_topic(Some(&name), Uuid::nil(), e.code, v));
                    }
                }
            }
            md = broker.metadata.current();
            for (i, rt) in list.iter().enumerate() {
                if let Some(t) = results.remove(&i) {
                    topics.push(t);
                    continue;
                }
                let by_name = rt.name.as_ref().map(|n| n.0.to_string());
                let found = match &by_name {
                    Some(name) => md.topics.get(name),
                    None => md
                        .topic_name_by_id(&rt.topic_id)
                        .and_then(|n| md.topics.get(n)),
                };
                let authorized = !ctx.authorizing()
                    || found.is_some_and(|t| {
                        ctx.allowed(&md, Operation::Describe, ResourceType::Topic, &t.name)
                    });
                topics.push(match found {
                    _ if !authorized => error_topic(by_name.as_deref(), rt.topic_id, DENIED, v),
                    Some(t) => describe_topic(&md, t, v),
                    None if by_name.is_none() => {
                        error_topic(None, rt.topic_id, ResponseError::UnknownTopicId.code(), v)
                    }
                    None => error_topic(
                        by_name.as_deref(),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                        v,
                    ),
                });
            }
        }
    }
    let brokers = brokers_on(&md, &ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(md.cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.broker.controller_id()))
        .with_topics(topics)
}
