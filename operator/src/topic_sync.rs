//! Brings one Kafka topic in line with its `Topic` spec through the admin API: create,
//! grow partitions, set and remove config overrides. Changes made outside Kubernetes are
//! drift and get corrected the same way.

use std::collections::BTreeMap;

use sluice_api::admin::{AlterTopicConfigRequest, CreateTopicRequest, TopicDescription};

use crate::admin::{AdminError, BrokerAdmin};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: Option<i32>,
    pub config: BTreeMap<String, String>,
}

/// A difference the operator will not fix by itself; reported as a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// What a sync did, for events and status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    pub topic: TopicDescription,
    pub created: bool,
    pub partitions_added: Option<(i32, i32)>,
    pub configs_set: BTreeMap<String, String>,
    pub configs_removed: Vec<String>,
    pub refusals: Vec<Refusal>,
}

impl Synced {
    pub fn changed(&self) -> bool {
        self.created
            || self.partitions_added.is_some()
            || !self.configs_set.is_empty()
            || !self.configs_removed.is_empty()
    }
}

/// Overrides to set and to remove so that `actual` becomes `desired`.
pub fn config_diff(
    desired: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = actual
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

pub async fn sync(admin: &dyn BrokerAdmin, desired: &DesiredTopic) -> Result<Synced, AdminError> {
    let Some(actual) = admin.describe_topic(&desired.name).await? else {
        let topic = admin
            .create_topic(CreateTopicRequest {
                name: desired.name.clone(),
                partitions: Some(desired.partitions),
                replication_factor: desired.replication_factor,
                configs: desired.config.clone(),
                validate_only: false,
            })
            .await?;
        return Ok(Synced {
            topic,
            created: true,
            ..Default::default()
        });
    };
    let mut out = Synced {
        topic: actual,
        ..Default::default()
    };
    let current = out.topic.partitions.len() as i32;
    if desired.partitions > current {
        out.topic = admin
            .add_partitions(&desired.name, desired.partitions)
            .await?;
        out.partitions_added = Some((current, desired.partitions));
    } else if desired.partitions < current {
        out.refusals.push(Refusal {
            reason: "PartitionDecreaseRefused",
            message: format!(
                "topic {} has {current} partitions and spec.partitions is {}: Kafka cannot remove partitions; set spec.partitions to {current} or more",
                desired.name, desired.partitions
            ),
        });
    }
    if let Some(rf) = desired.replication_factor
        && rf != out.topic.replication_factor
    {
        out.refusals.push(Refusal {
            reason: "ReplicationFactorChangeUnsupported",
            message: format!(
                "topic {} has replication factor {} and spec.replicationFactor is {rf}: changing it needs a partition reassignment, which this version does not do",
                desired.name, out.topic.replication_factor
            ),
        });
    }
    let (set, remove) = config_diff(&desired.config, &out.topic.configs);
    if !set.is_empty() || !remove.is_empty() {
        out.topic = admin
            .alter_topic_config(AlterTopicConfigRequest {
                name: desired.name.clone(),
                set: set.clone(),
                remove: remove.clone(),
                validate_only: false,
            })
            .await?;
        out.configs_set = set;
        out.configs_removed = remove;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn diff_sets_changed_and_removes_unlisted() {
        let (set, remove) = config_diff(
            &map(&[("retention.ms", "1000"), ("cleanup.policy", "delete")]),
            &map(&[
                ("retention.ms", "5"),
                ("cleanup.policy", "delete"),
                ("segment.bytes", "1"),
            ]),
        );
        assert_eq!(set, map(&[("retention.ms", "1000")]));
        assert_eq!(remove, vec!["segment.bytes".to_string()]);
        let (set, remove) = config_diff(&map(&[]), &map(&[]));
        assert!(set.is_empty() && remove.is_empty());
    }
}
