//! CreateTopics.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::topics::{self, NewTopic};
use super::{RequestContext, msg};
use crate::config::topic::topic_config_names;
use crate::security::acl::{CLUSTER_RESOURCE, Operation, ResourceType};

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        if !seen.insert(name.clone()) {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = msg(format!(
                "Create topics request from client contains multiple entries for topic {name}"
            ));
            results.push(result);
            continue;
        }
        if ctx.authorizing() {
            let md = broker.metadata.current();
            let may_create = ctx.allowed_quietly(
                &md,
                Operation::Create,
                ResourceType::Cluster,
                CLUSTER_RESOURCE,
            ) || ctx.allowed(&md, Operation::Create, ResourceType::Topic, &name);
            if !may_create {
                result.error_code = ResponseError::TopicAuthorizationFailed.code();
                result.error_message = msg(format!("not authorized to create topic {name}"));
                results.push(result);
                continue;
            }
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(value) = &c.value {
                configs.insert(c.name.to_string(), value.to_string());
            }
        }
        let assignments = if t.assignments.is_empty() {
            None
        } else {
            let mut a: Vec<_> = t.assignments.iter().collect();
            a.sort_by_key(|x| x.partition_index);
            if a.iter()
                .enumerate()
                .any(|(i, x)| x.partition_index != i as i32)
            {
                result.error_code = ResponseError::InvalidReplicaAssignment.code();
                result.error_message =
                    msg("Partitions in the replica assignment must be consecutive from 0");
                results.push(result);
                continue;
            }
            Some(
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
            )
        };
        let outcome = topics::create(
            broker,
            NewTopic {
                name: name.clone(),
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignments,
                configs: configs.clone(),
            },
            req.validate_only,
        )
        .await;
        match outcome {
            Ok(created) => {
                if v >= 5 {
                    result.num_partitions = created.num_partitions;
                    result.replication_factor = created.replication_factor;
                    let md = broker.metadata.current();
                    let layers = crate::config::ConfigLayers {
                        statics: &broker.config.statics,
                        cluster: &md.cluster_configs,
                        broker: md.broker_configs.get(&broker.node_id),
                    };
                    result.configs = Some(
                        topic_config_names()
                            .map(|n| {
                                let (value, source) = layers.topic_value(&configs, n);
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(n))
                                    .with_value(value.map(StrBytes::from_string))
                                    .with_config_source(source as i8)
                            })
                            .collect(),
                    );
                }
                if v >= 7 {
                    result.topic_id = created.id;
                }
            }
            Err(e) => {
                tracing::info!(topic = %name, client = ctx.client(), error = %e.message, "create topic refused");
                result.error_code = e.code;
                result.error_message = msg(e.message);
                if v >= 5 {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}
