//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers.

use crate::security::acl::Operation;
use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::topics::{TopicError, apply_locally};
use super::{RequestContext, msg};
use crate::broker::Broker;
use crate::config::ConfigLayers;
use crate::config::defs::{self, BROKER_CONFIGS, ConfigType};
use crate::config::topic::{ConfigSource, Synonym, topic_config_names, validate_topic_configs};
use crate::metadata::{ClusterMetadata, MetadataCommand};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn layers<'a>(broker: &'a Broker, md: &'a ClusterMetadata) -> ConfigLayers<'a> {
    ConfigLayers {
        statics: &broker.config.statics,
        cluster: &md.cluster_configs,
        broker: md.broker_configs.get(&broker.node_id),
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn synonyms(list: Vec<Synonym>) -> Vec<DescribeConfigsSynonym> {
    list.into_iter()
        .map(|syn| {
            DescribeConfigsSynonym::default()
                .with_name(s(syn.name))
                .with_value(syn.value.map(s))
                .with_source(syn.source as i8)
        })
        .collect()
}

/// Which broker layer a broker resource name addresses: `Ok(None)` cluster-wide default,
/// `Ok(Some(id))` this broker.
fn broker_target(broker: &Broker, name: &str) -> Result<Option<i32>, TopicError> {
    if name.is_empty() {
        return Ok(None);
    }
    match name.parse::<i32>() {
        Ok(id) if id == broker.node_id => Ok(Some(id)),
        _ => Err(TopicError::new(
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                broker.node_id
            ),
        )),
    }
}

/// Kafka's checks: the operation on the topic, or on the cluster for broker configs.
fn config_denied(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    op: Operation,
) -> Option<TopicError> {
    if resource_type == TOPIC {
        ctx.topic_denied(op, name).then(|| {
            TopicError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("not authorized to {} topic {name}", op.name()),
            )
        })
    } else {
        ctx.cluster_denied(op).then(|| {
            TopicError::new(
                ResponseError::ClusterAuthorizationFailed,
                format!("not authorized to {} broker configs", op.name()),
            )
        })
    }
}

pub fn describe(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    let md = broker.metadata.current();
    let layers = layers(broker, &md);
    let results = req
        .resources
        .iter()
        .map(|res| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            // Null or empty: every config (as Kafka).
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .filter(|keys| !keys.is_empty())
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let entry = |name: &str,
                         value: Option<String>,
                         source: ConfigSource,
                         read_only: bool,
                         ty: ConfigType,
                         doc: &str,
                         syns: Vec<Synonym>| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(s(name))
                    .with_value(value.map(s))
                    .with_read_only(read_only)
                    .with_config_source(source as i8)
                    .with_is_sensitive(ty == ConfigType::Password);
                if req.include_synonyms {
                    e.synonyms = synonyms(syns);
                }
                if v >= 3 {
                    e.config_type = ty.code();
                    if req.include_documentation {
                        e.documentation = Some(s(doc));
                    }
                }
                e
            };
            if let Some(e) = config_denied(
                ctx,
                res.resource_type,
                &res.resource_name,
                Operation::DescribeConfigs,
            ) {
                result.error_code = e.code;
                result.error_message = msg(e.message);
                return result;
            }
            match res.resource_type {
                TOPIC => match md.topics.get(res.resource_name.as_str()) {
                    None => {
                        result.error_code = ResponseError::UnknownTopicOrPartition.code();
                        result.error_message =
                            msg(format!("Topic {} does not exist", res.resource_name));
                    }
                    Some(topic) => {
                        result.configs = topic_config_names()
                            .filter(|n| wanted(n))
                            .filter_map(|n| defs::topic_def(n))
                            .map(|t| {
                                let (value, source) =
                                    layers.topic_value(&topic.configs, t.def.name);
                                let mut syns = Vec::new();
                                if let Some(v) = topic.configs.get(t.def.name) {
                                    syns.push(Synonym {
                                        name: t.def.name.to_string(),
                                        value: Some(v.clone()),
                                        source: ConfigSource::Topic,
                                    });
                                }
                                syns.extend(layers.broker_synonyms(t.broker_synonym));
                                entry(t.def.name, value, source, false, t.def.ty, t.def.doc, syns)
                            })
                            .collect();
                    }
                },
                BROKER => match broker_target(broker, &res.resource_name) {
                    Err(e) => {
                        result.error_code = e.code;
                        result.error_message = msg(e.message);
                    }
                    Ok(None) => {
                        result.configs = md
                            .cluster_configs
                            .iter()
                            .filter(|(k, _)| wanted(k))
                            .filter_map(|(k, value)| {
                                let d = defs::broker_def(k)?;
                                Some(entry(
                                    k,
                                    Some(value.clone()),
                                    ConfigSource::DynamicDefaultBroker,
                                    false,
                                    d.ty,
                                    d.doc,
                                    Vec::new(),
                                ))
                            })
                            .collect();
                    }
                    Ok(Some(_)) => {
                        result.configs = BROKER_CONFIGS
                            .iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let (value, source) = layers.broker_value(d.name);
                                entry(
                                    d.name,
                                    value,
                                    source,
                                    !d.dynamic,
                                    d.ty,
                                    d.doc,
                                    layers.broker_synonyms(d.name),
                                )
                            })
                            .collect();
                    }
                },
                other => {
                    result.error_code = ResponseError::InvalidRequest.code();
                    result.error_message = msg(format!("Unsupported resource type {other}"));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Validates and commits a new full set of overrides for one resource.
async fn commit(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let cmd = match resource_type {
        TOPIC => {
            let md = broker.metadata.current();
            if !md.topics.contains_key(name) {
                return Err(TopicError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                ));
            }
            validate_topic_configs(&configs)
                .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e))?;
            if let Some(current) = md.topics.get(name) {
                let was = broker.replicas.log_config_for(&md, current).remote_storage;
                let mut changed = current.clone();
                changed.configs = configs.clone();
                if was && !broker.replicas.log_config_for(&md, &changed).remote_storage {
                    return Err(TopicError::new(
                        ResponseError::InvalidConfig,
                        format!(
                            "remote.storage.enable cannot be turned off for topic {name}: its data in remote storage would become unreachable (delete the topic to remove it)"
                        ),
                    ));
                }
            }
            MetadataCommand::SetTopicConfigs {
                name: name.to_string(),
                configs,
            }
        }
        BROKER => {
            let target = broker_target(broker, name)?;
            for (k, v) in &configs {
                let Some(d) = defs::broker_def(k) else {
                    return Err(TopicError::new(
                        ResponseError::InvalidConfig,
                        format!("Unknown broker config {k}"),
                    ));
                };
                if !d.dynamic {
                    return Err(TopicError::new(
                        ResponseError::InvalidConfig,
                        format!("Cannot update these configs dynamically: {k}"),
                    ));
                }
                defs::validate(d, v)
                    .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e))?;
            }
            MetadataCommand::SetBrokerConfigs {
                broker: target,
                configs,
            }
        }
        other => {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            ));
        }
    };
    if validate_only {
        return Ok(());
    }
    let md = broker.metadata.submit(cmd).await?;
    apply_locally(broker, md).await;
    tracing::info!(resource_type, resource = name, "altered configs");
    Ok(())
}

/// Sets and removes topic overrides in one change (the admin API's AlterTopicConfig).
pub async fn alter_topic_overrides(
    broker: &Arc<Broker>,
    name: &str,
    set: BTreeMap<String, String>,
    remove: &[String],
    validate_only: bool,
) -> Result<(), TopicError> {
    alter_overrides(broker, TOPIC, name, set, remove, validate_only)
        .await
        .map(drop)
}

/// Sets and removes cluster-wide dynamic broker configs in one change (the admin API's
/// AlterClusterConfigs); returns the resulting set.
pub async fn alter_cluster_defaults(
    broker: &Arc<Broker>,
    set: BTreeMap<String, String>,
    remove: &[String],
    validate_only: bool,
) -> Result<BTreeMap<String, String>, TopicError> {
    alter_overrides(broker, BROKER, "", set, remove, validate_only).await
}

/// Read-modify-write of one resource's overrides, serialised with every other change.
async fn alter_overrides(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    set: BTreeMap<String, String>,
    remove: &[String],
    validate_only: bool,
) -> Result<BTreeMap<String, String>, TopicError> {
    let _serialised = broker.config_changes.lock().await;
    let mut configs = current_overrides(broker, resource_type, name);
    for k in remove {
        configs.remove(k);
    }
    configs.extend(set);
    commit(broker, resource_type, name, configs.clone(), validate_only).await?;
    Ok(configs)
}

fn current_overrides(broker: &Broker, resource_type: i8, name: &str) -> BTreeMap<String, String> {
    let md = broker.metadata.current();
    match resource_type {
        TOPIC => md
            .topics
            .get(name)
            .map(|t| t.configs.clone())
            .unwrap_or_default(),
        BROKER if name.is_empty() => md.cluster_configs.clone(),
        BROKER => name
            .parse::<i32>()
            .ok()
            .and_then(|id| md.broker_configs.get(&id).cloned())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

pub async fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    let _serialised = ctx.broker.config_changes.lock().await;
    for res in req.resources {
        // Legacy AlterConfigs replaces the whole set of overrides.
        let configs = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let outcome = match config_denied(
            ctx,
            res.resource_type,
            &res.resource_name,
            Operation::AlterConfigs,
        ) {
            Some(e) => Err(e),
            None => {
                commit(
                    &ctx.broker,
                    res.resource_type,
                    &res.resource_name,
                    configs,
                    req.validate_only,
                )
                .await
            }
        };
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            r.error_code = e.code;
            r.error_message = msg(e.message);
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn is_list(resource_type: i8, name: &str) -> bool {
    let ty = if resource_type == TOPIC {
        defs::topic_def(name).map(|t| t.def.ty)
    } else {
        defs::broker_def(name).map(|d| d.ty)
    };
    ty == Some(ConfigType::List)
}

pub async fn incremental_alter(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let broker = &ctx.broker;
    let mut responses = Vec::with_capacity(req.resources.len());
    // Read, modify, write: concurrent alterations must not overwrite each other.
    let _serialised = broker.config_changes.lock().await;
    for res in req.resources {
        let mut configs = current_overrides(broker, res.resource_type, &res.resource_name);
        let mut op_error = None;
        for c in &res.configs {
            let name = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            match (c.config_operation, value) {
                (SET, Some(v)) => {
                    configs.insert(name, v);
                }
                (DELETE, _) => {
                    configs.remove(&name);
                }
                (APPEND | SUBTRACT, Some(v)) if is_list(res.resource_type, &name) => {
                    let layers_md = broker.metadata.current();
                    let effective = configs.get(&name).cloned().or_else(|| {
                        let l = layers(broker, &layers_md);
                        if res.resource_type == TOPIC {
                            l.topic_value(&BTreeMap::new(), &name).0
                        } else {
                            l.broker_value(&name).0
                        }
                    });
                    let mut items: Vec<String> = effective
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if c.config_operation == APPEND {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    configs.insert(name, items.join(","));
                }
                (APPEND | SUBTRACT, _) => {
                    op_error = Some(TopicError::new(
                        ResponseError::InvalidConfig,
                        format!(
                            "Config value append/subtract is not allowed for config {name} (not a list)"
                        ),
                    ));
                }
                (SET, None) => {
                    op_error = Some(TopicError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for SET of {name}"),
                    ));
                }
                (op, _) => {
                    op_error = Some(TopicError::new(
                        ResponseError::InvalidRequest,
                        format!("Unknown config operation {op}"),
                    ));
                }
            }
        }
        let denied = config_denied(
            ctx,
            res.resource_type,
            &res.resource_name,
            Operation::AlterConfigs,
        );
        let outcome = match denied.or(op_error) {
            Some(e) => Err(e),
            None => {
                commit(
                    broker,
                    res.resource_type,
                    &res.resource_name,
                    configs,
                    req.validate_only,
                )
                .await
            }
        };
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            tracing::info!(client = ctx.client(), error = %e.message, "alter configs refused");
            r.error_code = e.code;
            r.error_message = msg(e.message);
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
