//! Topic administration shared by CreateTopics, CreatePartitions, DeleteTopics and
//! Metadata auto-creation: name rules, replica placement, committing to metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::topic::validate_topic_configs;
use crate::metadata::{ClusterMetadata, MetadataCommand, MetadataError};

/// A per-topic failure with its Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: e.code(),
            message: message.into(),
        }
    }
}

impl From<MetadataError> for TopicError {
    fn from(e: MetadataError) -> Self {
        let code = match &e {
            MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            MetadataError::InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment,
            MetadataError::PartitionCountChanged { .. } => ResponseError::InvalidPartitions,
            MetadataError::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
            MetadataError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            MetadataError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            MetadataError::InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion,
            MetadataError::InvalidIsr { .. } => ResponseError::InvalidRequest,
            MetadataError::UnknownCredential(_) => ResponseError::ResourceNotFound,
            MetadataError::BrokerInUse(_) => ResponseError::InvalidRequest,
            // Retriable: clients try again, by then a quorum leader is usually elected.
            MetadataError::Unavailable(_) => ResponseError::RequestTimedOut,
            MetadataError::Storage(_) | MetadataError::Closed => ResponseError::UnknownServerError,
        };
        TopicError::new(code, e.to_string())
    }
}

const MAX_NAME_LEN: usize = 249;

/// Kafka's topic name rules.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why: String| Err(TopicError::new(ResponseError::InvalidTopicException, why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("Topic name cannot be \"{name}\""));
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka refuses names that differ only in '.' vs '_': they collide in metric names.
fn collision<'a>(md: &'a ClusterMetadata, name: &str) -> Option<&'a str> {
    let norm = |s: &str| s.replace('.', "_");
    let n = norm(name);
    md.topics
        .keys()
        .find(|t| t.as_str() != name && norm(t) == n)
        .map(String::as_str)
}

/// Places `count` new partitions starting at `first`, spreading leaders round-robin over
/// the registered brokers.
pub fn assign(
    md: &ClusterMetadata,
    name: &str,
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, TopicError> {
    // Fenced brokers (down, starting, shutting down) get no new replicas.
    let brokers: Vec<i32> = md
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect();
    if replication_factor < 1 {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    if replication_factor as usize > brokers.len() {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Replication factor: {replication_factor} larger than available brokers: {}.",
                brokers.len()
            ),
        ));
    }
    let n = brokers.len();
    // A stable start per topic spreads leaders of many topics over the brokers.
    let start = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % n;
    Ok((first..first + count)
        .map(|p| {
            (0..replication_factor as usize)
                .map(|r| brokers[(start + p as usize + r) % n])
                .collect()
        })
        .collect())
}

/// Refuses assignments that would put more than `limit` partitions on any broker, before
/// anything is allocated for them.
pub fn check_partition_limit(
    md: &ClusterMetadata,
    new_partitions: i64,
    replication_factor: i64,
    limit: usize,
) -> Result<(), TopicError> {
    let too_many = |hosted: usize| {
        TopicError::new(
            ResponseError::PolicyViolation,
            format!(
                "adding {new_partitions} partitions would put more than max.broker.partitions={limit} \
                 partition replicas on a broker (busiest broker hosts {hosted})"
            ),
        )
    };
    let mut hosted: BTreeMap<i32, usize> = md.brokers.keys().map(|b| (*b, 0)).collect();
    for t in md.topics.values() {
        for p in &t.partitions {
            for r in &p.replicas {
                *hosted.entry(*r).or_default() += 1;
            }
        }
    }
    let brokers = hosted.len().max(1) as i64;
    let busiest = hosted.values().copied().max().unwrap_or(0);
    // Replicas are spread evenly: each broker receives at most this many new ones.
    let per_broker = (new_partitions
        .max(0)
        .saturating_mul(replication_factor.max(1))
        + brokers
        - 1)
        / brokers;
    if busiest as i64 + per_broker > limit as i64 {
        return Err(too_many(busiest));
    }
    Ok(())
}

/// A validated request to create one topic.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

/// Result of a successful (or validated) creation.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Validates and, unless `validate_only`, commits a new topic; then opens its local
/// partitions so produce requests right after the response find them.
pub async fn create(
    broker: &Arc<Broker>,
    t: NewTopic,
    validate_only: bool,
) -> Result<Created, TopicError> {
    validate_name(&t.name)?;
    if crate::protocol::metadata::is_internal(&t.name) {
        return Err(TopicError::new(
            ResponseError::InvalidRequest,
            format!(
                "'{}' is an internal topic, created by its coordinator",
                t.name
            ),
        ));
    }
    let md = broker.metadata.current();
    if md.topics.contains_key(&t.name) {
        return Err(TopicError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    if let Some(other) = collision(&md, &t.name) {
        return Err(TopicError::new(
            ResponseError::InvalidTopicException,
            format!("Topic '{}' collides with existing topic: {other}", t.name),
        ));
    }
    validate_topic_configs(&t.configs)
        .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e))?;
    let assignments = match t.assignments {
        Some(a) => {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(TopicError::new(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let rf = a.first().map_or(1, Vec::len) as i64;
            check_partition_limit(&md, a.len() as i64, rf, broker.config.max_broker_partitions)?;
            a
        }
        None => {
            let partitions = if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            };
            if partitions < 1 {
                return Err(TopicError::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions must be larger than 0.",
                ));
            }
            let rf = if t.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                t.replication_factor
            };
            check_partition_limit(
                &md,
                i64::from(partitions),
                i64::from(rf),
                broker.config.max_broker_partitions,
            )?;
            assign(&md, &t.name, 0, partitions, rf)?
        }
    };
    let created = Created {
        id: Uuid::new_v4(),
        num_partitions: assignments.len() as i32,
        replication_factor: assignments.first().map(|r| r.len() as i16).unwrap_or(0),
    };
    let cmd = MetadataCommand::CreateTopic {
        name: t.name.clone(),
        id: created.id,
        assignments,
        configs: t.configs,
    };
    if validate_only {
        // Run the state machine on a copy: same checks, nothing committed.
        let mut copy = (*md).clone();
        copy.apply(&cmd)?;
        return Ok(created);
    }
    let md = broker.metadata.submit(cmd).await?;
    apply_locally(broker, md).await;
    tracing::info!(topic = %t.name, partitions = created.num_partitions,
        replication_factor = created.replication_factor, "created topic");
    Ok(created)
}

/// Creates an internal topic (`__consumer_offsets`) on behalf of its coordinator. The
/// replication factor is capped at the number of registered brokers. Succeeds if the
/// topic exists already.
pub async fn create_internal(
    broker: &Arc<Broker>,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
) -> Result<(), TopicError> {
    let md = broker.metadata.current();
    if md.topics.contains_key(name) {
        return Ok(());
    }
    let rf = replication_factor.min(md.brokers.len().max(1) as i16);
    if rf < replication_factor {
        tracing::warn!(
            topic = name,
            wanted = replication_factor,
            brokers = md.brokers.len(),
            "fewer brokers registered than the internal topic's replication factor; creating it with {rf}"
        );
    }
    let assignments = assign(&md, name, 0, partitions, rf)?;
    let cmd = MetadataCommand::CreateTopic {
        name: name.to_string(),
        id: Uuid::new_v4(),
        assignments,
        configs,
    };
    match broker.metadata.submit(cmd).await {
        Ok(md) => {
            apply_locally(broker, md).await;
            tracing::info!(
                topic = name,
                partitions,
                replication_factor = rf,
                "created internal topic"
            );
            Ok(())
        }
        Err(crate::metadata::MetadataError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Grows `name` to `count` partitions, placing new replicas unless `assignments` names them.
pub async fn add_partitions(
    broker: &Arc<Broker>,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let md = broker.metadata.current();
    let Some(topic) = md.topics.get(name) else {
        return Err(TopicError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        ));
    };
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(TopicError::new(
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
            ),
        ));
    }
    let rf = topic
        .partitions
        .first()
        .map(|p| p.replicas.len() as i16)
        .unwrap_or(1);
    let new = count - current;
    check_partition_limit(
        &md,
        i64::from(new),
        i64::from(rf),
        broker.config.max_broker_partitions,
    )?;
    let assignments = match assignments {
        Some(a) => {
            if a.len() as i32 != new {
                return Err(TopicError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Increasing the number of partitions by {new} but {} assignments provided.",
                        a.len()
                    ),
                ));
            }
            a
        }
        None => assign(&md, name, current, new, rf)?,
    };
    let cmd = MetadataCommand::CreatePartitions {
        name: name.to_string(),
        assignments,
        expected_count: Some(current),
    };
    if validate_only {
        let mut copy = (*md).clone();
        return copy.apply(&cmd).map_err(TopicError::from);
    }
    let md = broker.metadata.submit(cmd).await?;
    apply_locally(broker, md).await;
    Ok(())
}

/// Deletes a topic by name; returns the id it had.
pub async fn delete(broker: &Arc<Broker>, name: &str) -> Result<Uuid, TopicError> {
    if !broker.config.delete_topic_enable {
        return Err(TopicError::new(
            ResponseError::TopicDeletionDisabled,
            "Topic deletion is disabled (delete.topic.enable=false)",
        ));
    }
    let id = broker
        .metadata
        .current()
        .topics
        .get(name)
        .map(|t| t.id)
        .unwrap_or_default();
    let md = broker
        .metadata
        .submit(MetadataCommand::DeleteTopic {
            name: name.to_string(),
        })
        .await?;
    apply_locally(broker, md).await;
    Ok(id)
}

/// Applies a metadata image to the local replicas now, rather than waiting for the
/// metadata watcher, so this broker serves what it just committed.
pub async fn apply_locally(broker: &Arc<Broker>, md: Arc<ClusterMetadata>) {
    let replicas = broker.replicas.clone();
    let image = md.clone();
    let result = tokio::task::spawn_blocking(move || replicas.apply_metadata(&image)).await;
    match result {
        Ok(Ok(())) => broker.fetchers.sync(broker, &md),
        Ok(Err(e)) => tracing::error!(error = %e, "applying metadata to local partitions failed"),
        Err(e) => tracing::error!(error = %e, "applying metadata to local partitions panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerRegistration;

    #[test]
    fn names() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(
                validate_name(bad).unwrap_err().code,
                ResponseError::InvalidTopicException.code()
            );
        }
    }

    #[test]
    fn placement_and_collisions() {
        let mut md = ClusterMetadata::new("c".into());
        for id in [1, 2, 3] {
            md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
                id,
                endpoints: vec![],
                rack: None,
                incarnation: Uuid::nil(),
                fenced: false,
            }))
            .unwrap();
        }
        let a = assign(&md, "t", 0, 6, 2).unwrap();
        assert_eq!(a.len(), 6);
        let leaders: std::collections::BTreeSet<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 3);
        assert!(a.iter().all(|r| r[0] != r[1]));
        assert_eq!(
            assign(&md, "t", 0, 1, 4).unwrap_err().code,
            ResponseError::InvalidReplicationFactor.code()
        );
        md.apply(&MetadataCommand::CreateTopic {
            name: "a.b".into(),
            id: Uuid::new_v4(),
            assignments: vec![vec![1]],
            configs: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(collision(&md, "a_b"), Some("a.b"));
        assert_eq!(collision(&md, "a.b"), None);
        // 1 partition hosted on broker 1; 3 brokers share new replicas evenly.
        assert!(check_partition_limit(&md, 3, 1, 2).is_ok());
        assert_eq!(
            check_partition_limit(&md, 6, 1, 2).unwrap_err().code,
            ResponseError::PolicyViolation.code()
        );
        assert!(check_partition_limit(&md, i64::from(i32::MAX), 3, 10_000).is_err());
    }
}
