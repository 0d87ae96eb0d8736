//! The cluster metadata image and the commands that change it.
//!
//! `ClusterMetadata::apply` is a deterministic state machine: the same commands in the
//! same order give the same image on every broker. Today a local file persists it; the
//! Raft-replicated metadata log replays exactly these commands.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Changes on every process start, so a restarted broker is told apart from a stale one.
    pub incarnation: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped on every change of this partition's state (Kafka's partition epoch).
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionState>,
    /// Topic-level overrides only; defaults come from the broker layers.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    RegisterBroker(BrokerRegistration),
    CreateTopic {
        name: String,
        id: Uuid,
        /// Replica list per partition; the first replica leads.
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
        /// Partition count the request was computed from; a concurrent change in between
        /// makes the command fail instead of adding partitions twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_count: Option<i32>,
    },
    /// Replaces the topic's overrides.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces dynamic broker settings: cluster-wide (`broker: None`) or of one broker.
    SetBrokerConfigs {
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    /// Reserves the next `count` producer ids for `broker` (Kafka's AllocateProducerIds):
    /// ids are unique in the cluster and never reused, even across restarts.
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidAssignment(String),
    #[error("topic '{topic}' has {actual} partitions, not {expected}: it changed concurrently")]
    PartitionCountChanged {
        topic: String,
        expected: i32,
        actual: i32,
    },
    #[error("metadata could not be persisted: {0}")]
    Storage(String),
    #[error("metadata store is shutting down")]
    Closed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    /// Number of commands applied: the metadata log offset of this image.
    pub offset: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicMetadata>,
    pub cluster_configs: BTreeMap<String, String>,
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// First producer id not yet handed out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The last block reserved, per broker: `(first id, count)`.
    #[serde(default)]
    pub producer_id_blocks: BTreeMap<i32, (i64, i64)>,
    #[serde(skip)]
    topic_ids: HashMap<Uuid, String>,
}

impl ClusterMetadata {
    pub fn new(cluster_id: String) -> Self {
        Self {
            cluster_id,
            ..Default::default()
        }
    }

    /// Rebuilds derived lookups after deserialising.
    pub fn reindex(&mut self) {
        self.topic_ids = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    pub fn topic_name_by_id(&self, id: &Uuid) -> Option<&str> {
        self.topic_ids.get(id).map(String::as_str)
    }

    /// The lowest broker id stands in as controller until the Raft quorum elects one.
    pub fn controller_id(&self) -> i32 {
        self.brokers.keys().next().copied().unwrap_or(-1)
    }

    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), MetadataError> {
        let Some(first) = assignments.first() else {
            return Err(MetadataError::InvalidAssignment(
                "at least one partition is required".into(),
            ));
        };
        for (i, replicas) in assignments.iter().enumerate() {
            if replicas.is_empty() {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {i} has no replicas"
                )));
            }
            if replicas.len() != first.len() {
                return Err(MetadataError::InvalidAssignment(
                    "all partitions must have the same replication factor".into(),
                ));
            }
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != replicas.len() {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {i} lists a broker twice: {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {i} is assigned to unknown broker {b}"
                )));
            }
        }
        Ok(())
    }

    fn new_partition(replicas: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// Applies one command. On error the image is unchanged.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<(), MetadataError> {
        match cmd {
            MetadataCommand::RegisterBroker(reg) => {
                self.brokers.insert(reg.id, reg.clone());
            }
            MetadataCommand::CreateTopic {
                name,
                id,
                assignments,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(MetadataError::TopicExists(name.clone()));
                }
                self.check_assignments(assignments)?;
                self.topics.insert(
                    name.clone(),
                    TopicMetadata {
                        name: name.clone(),
                        id: *id,
                        partitions: assignments.iter().map(|r| Self::new_partition(r)).collect(),
                        configs: configs.clone(),
                    },
                );
                self.topic_ids.insert(*id, name.clone());
            }
            MetadataCommand::DeleteTopic { name } => {
                let t = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                self.topic_ids.remove(&t.id);
            }
            MetadataCommand::CreatePartitions {
                name,
                assignments,
                expected_count,
            } => {
                self.check_assignments(assignments)?;
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                let actual = t.partitions.len() as i32;
                if let Some(expected) = *expected_count
                    && expected != actual
                {
                    return Err(MetadataError::PartitionCountChanged {
                        topic: name.clone(),
                        expected,
                        actual,
                    });
                }
                if t.partitions.first().map(|p| p.replicas.len())
                    != assignments.first().map(Vec::len)
                {
                    return Err(MetadataError::InvalidAssignment(
                        "new partitions must keep the topic's replication factor".into(),
                    ));
                }
                t.partitions
                    .extend(assignments.iter().map(|r| Self::new_partition(r)));
            }
            MetadataCommand::SetTopicConfigs { name, configs } => {
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                t.configs = configs.clone();
            }
            MetadataCommand::SetBrokerConfigs { broker, configs } => match broker {
                None => self.cluster_configs = configs.clone(),
                Some(id) if configs.is_empty() => {
                    self.broker_configs.remove(id);
                }
                Some(id) => {
                    self.broker_configs.insert(*id, configs.clone());
                }
            },
            MetadataCommand::AllocateProducerIds { broker, count } => {
                let count = (*count).clamp(1, 1 << 20);
                let first = self.next_producer_id;
                self.next_producer_id = first.saturating_add(count);
                self.producer_id_blocks.insert(*broker, (first, count));
            }
        }
        self.offset += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> MetadataCommand {
        MetadataCommand::RegisterBroker(BrokerRegistration {
            id,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::nil(),
        })
    }

    #[test]
    fn topic_lifecycle() {
        let mut md = ClusterMetadata::new("c".into());
        md.apply(&broker(0)).unwrap();
        let id = Uuid::new_v4();
        let create = MetadataCommand::CreateTopic {
            name: "t".into(),
            id,
            assignments: vec![vec![0], vec![0]],
            configs: BTreeMap::new(),
        };
        md.apply(&create).unwrap();
        assert_eq!(
            md.apply(&create),
            Err(MetadataError::TopicExists("t".into()))
        );
        assert_eq!(md.topic_name_by_id(&id), Some("t"));
        assert_eq!(md.topics["t"].partitions[1].leader, 0);
        md.apply(&MetadataCommand::CreatePartitions {
            name: "t".into(),
            assignments: vec![vec![0]],
            expected_count: Some(2),
        })
        .unwrap();
        assert_eq!(md.topics["t"].partitions.len(), 3);
        // Computed from a stale count: refused, nothing added.
        assert!(matches!(
            md.apply(&MetadataCommand::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![0]],
                expected_count: Some(2),
            }),
            Err(MetadataError::PartitionCountChanged { actual: 3, .. })
        ));
        assert!(
            md.apply(&MetadataCommand::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![5]],
                expected_count: None,
            })
            .is_err()
        );
        md.apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(md.topic_name_by_id(&id).is_none());
        assert_eq!(md.offset, 4);
    }

    #[test]
    fn serde_round_trip_keeps_lookups_after_reindex() {
        let mut md = ClusterMetadata::new("c".into());
        md.apply(&broker(1)).unwrap();
        let id = Uuid::new_v4();
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id,
            assignments: vec![vec![1]],
            configs: BTreeMap::new(),
        })
        .unwrap();
        let json = serde_json::to_string(&md).unwrap();
        let mut back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back.topic_name_by_id(&id), Some("t"));
        assert_eq!(back.controller_id(), 1);
    }
}
