//! The cluster metadata image and the commands that change it.
//!
//! `ClusterMetadata::apply` is a deterministic state machine: the same commands in the
//! same order give the same image on every broker. Today a local file persists it; the
//! Raft-replicated metadata log replays exactly these commands.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::acl::AclBinding;
use crate::security::quota::{QuotaConfigs, QuotaEntity};
use crate::security::sasl::{ScramCredential, ScramMechanism};

/// Quota keys to set (`Some`) or remove (`None`).
pub type QuotaChanges = Vec<(String, Option<f64>)>;

/// Topic config (and dynamic cluster default) read by leader elections.
pub const UNCLEAN_ELECTION: &str = "unclean.leader.election.enable";

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
    /// Fenced brokers lead nothing and join no ISR: registered but not yet caught up, or
    /// missed heartbeats, or shutting down.
    #[serde(default)]
    pub fenced: bool,
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
    /// A reassignment in progress: replicas joining, and replicas leaving once it is done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionState>,
    /// Topic-level overrides only; defaults come from the broker layers.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The broker stopped heartbeating or is shutting down: its leaderships move to other
    /// in-sync replicas and it leaves every ISR it is not the last member of.
    FenceBroker {
        id: i32,
    },
    /// The broker caught up with the metadata and heartbeats: it may lead and rejoin ISRs.
    UnfenceBroker {
        id: i32,
    },
    /// Forgets a removed broker (scale-down). Refused while it is unfenced or still
    /// named in any partition's replicas, so no data can be stranded on it.
    UnregisterBroker {
        id: i32,
    },
    /// Starts or cancels partition reassignments (Kafka's AlterPartitionReassignments);
    /// all or nothing.
    ReassignPartitions {
        moves: Vec<super::reassign::Reassignment>,
    },
    /// Moves leadership to the first replica where it is in sync and not fenced.
    ElectPreferredLeaders {
        partitions: Vec<(String, i32)>,
    },
    /// Adds and removes SCRAM credentials (Kafka's AlterUserScramCredentials): all or
    /// nothing.
    AlterScramCredentials {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        upsert: Vec<(String, ScramMechanism, ScramCredential)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        delete: Vec<(String, ScramMechanism)>,
    },
    /// Adds ACLs (existing ones are kept once).
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes exactly these ACLs (the broker resolved the request's filters).
    DeleteAcls {
        acls: Vec<AclBinding>,
    },
    /// Sets (`Some`) or removes (`None`) client quota values, per entity.
    AlterClientQuotas {
        entries: Vec<(QuotaEntity, QuotaChanges)>,
    },
    /// A leader changes its partition's ISR (Kafka's AlterPartition). Refused unless the
    /// epochs match the committed state, so a deposed leader cannot change anything.
    AlterPartition {
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("{topic}-{partition}: leader epoch {requested} is not the current {current}")]
    FencedLeaderEpoch {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    #[error("{topic}-{partition}: partition epoch {requested} is not the current {current}")]
    InvalidUpdateVersion {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    #[error("{topic}-{partition}: ISR {isr:?} is not valid: {reason}")]
    InvalidIsr {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        reason: String,
    },
    #[error("{0}")]
    UnknownCredential(String),
    #[error("{0}")]
    BrokerInUse(String),
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
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
    /// SCRAM credentials per user: salted, iterated keys, never passwords.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Bumped by every ACL change, so brokers rebuild their ACL index only then.
    #[serde(default)]
    pub acl_version: u64,
    #[serde(default, with = "as_pairs")]
    pub quotas: QuotaConfigs,
    #[serde(skip)]
    topic_ids: HashMap<Uuid, String>,
}

/// JSON maps need string keys; quota entities are structs, so they travel as pairs.
mod as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::security::quota::QuotaConfigs;

    pub fn serialize<S: Serializer>(map: &QuotaConfigs, s: S) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuotaConfigs, D::Error> {
        Ok(Vec::deserialize(d)?.into_iter().collect())
    }
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

    /// Registered, not fenced: may lead partitions and be in ISRs.
    pub fn is_active(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Ids of the active brokers, taken before partitions are borrowed mutably.
    fn active_ids(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    fn set_fenced(&mut self, id: i32, fenced: bool) -> Result<(), MetadataError> {
        self.brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?
            .fenced = fenced;
        Ok(())
    }

    fn unclean_allowed(cluster_default: Option<&String>, topic: &TopicMetadata) -> bool {
        topic
            .configs
            .get(UNCLEAN_ELECTION)
            .or(cluster_default)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// `id` is gone: new leaders from the ISR for what it led, and out of every ISR it is
    /// not the last member of (the last member stays, so it can lead again when back).
    fn broker_unavailable(&mut self, id: i32) {
        let mut active = self.active_ids();
        active.retain(|b| *b != id);
        let cluster_unclean = self.cluster_configs.get(UNCLEAN_ELECTION).cloned();
        for t in self.topics.values_mut() {
            let unclean = Self::unclean_allowed(cluster_unclean.as_ref(), t);
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&id) {
                    p.isr.retain(|b| *b != id);
                    changed = true;
                }
                if p.leader == id {
                    let clean = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| p.isr.contains(r) && active.contains(r));
                    p.leader = match clean {
                        Some(l) => l,
                        None => match p.replicas.iter().copied().find(|r| active.contains(r)) {
                            Some(l) if unclean => {
                                p.isr = vec![l];
                                l
                            }
                            _ => -1,
                        },
                    };
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// `id` is back: it leads the leaderless partitions whose ISR it is in (or, with
    /// unclean election allowed, any leaderless partition it hosts).
    fn broker_available(&mut self, id: i32) {
        let cluster_unclean = self.cluster_configs.get(UNCLEAN_ELECTION).cloned();
        for t in self.topics.values_mut() {
            let unclean = Self::unclean_allowed(cluster_unclean.as_ref(), t);
            for p in &mut t.partitions {
                if p.leader != -1 || !p.replicas.contains(&id) {
                    continue;
                }
                if p.isr.contains(&id) {
                    p.leader = id;
                } else if unclean {
                    p.leader = id;
                    p.isr = vec![id];
                } else {
                    continue;
                }
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Result<(), MetadataError> {
        let active = self.active_ids();
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| MetadataError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        if p.leader_epoch != leader_epoch {
            return Err(MetadataError::FencedLeaderEpoch {
                topic: topic.to_string(),
                partition,
                requested: leader_epoch,
                current: p.leader_epoch,
            });
        }
        if p.partition_epoch != partition_epoch {
            return Err(MetadataError::InvalidUpdateVersion {
                topic: topic.to_string(),
                partition,
                requested: partition_epoch,
                current: p.partition_epoch,
            });
        }
        let invalid = |reason: &str| MetadataError::InvalidIsr {
            topic: topic.to_string(),
            partition,
            isr: isr.to_vec(),
            reason: reason.to_string(),
        };
        if !isr.contains(&p.leader) {
            return Err(invalid("it must contain the leader"));
        }
        if isr.iter().any(|b| !p.replicas.contains(b)) {
            return Err(invalid("every member must be a replica"));
        }
        if isr
            .iter()
            .any(|b| !p.isr.contains(b) && !active.contains(b))
        {
            return Err(invalid("a fenced broker cannot join the ISR"));
        }
        let mut sorted = isr.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != isr.len() {
            return Err(invalid("a broker is listed twice"));
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        // A follower that caught up may be the last one a reassignment waited for.
        p.try_complete_reassignment(&|b| active.contains(&b));
        Ok(())
    }

    fn reassign(&mut self, moves: &[super::reassign::Reassignment]) -> Result<(), MetadataError> {
        for m in moves {
            let state = self
                .topics
                .get(&m.topic)
                .and_then(|t| t.partitions.get(usize::try_from(m.partition).ok()?))
                .ok_or_else(|| MetadataError::UnknownPartition {
                    topic: m.topic.clone(),
                    partition: m.partition,
                })?;
            let keeps_isr = match &m.target {
                Some(target) => {
                    super::reassign::check_target(&m.topic, m.partition, target, &|b| {
                        self.brokers.contains_key(&b)
                    })?;
                    state.can_reassign_to(target)
                }
                None => state.can_cancel(),
            };
            if !keeps_isr {
                return Err(MetadataError::InvalidAssignment(format!(
                    "{}-{}: the change would leave no in-sync replica (ISR {:?})",
                    m.topic, m.partition, state.isr
                )));
            }
        }
        let active = self.active_ids();
        let is_active = |b: i32| active.contains(&b);
        for m in moves {
            let Some(p) = self
                .topics
                .get_mut(&m.topic)
                .and_then(|t| t.partitions.get_mut(m.partition as usize))
            else {
                continue;
            };
            match &m.target {
                Some(target) => p.start_reassignment(target, &is_active),
                None => p.cancel_reassignment(&is_active),
            }
        }
        Ok(())
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

    fn new_partition(&self, replicas: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas
                .iter()
                .copied()
                .find(|r| self.is_active(*r))
                .or_else(|| replicas.first().copied())
                .unwrap_or(-1),
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        }
    }

    /// Applies one command. On error the image is unchanged.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<(), MetadataError> {
        match cmd {
            MetadataCommand::RegisterBroker(reg) => {
                let restarted = self
                    .brokers
                    .get(&reg.id)
                    .is_some_and(|b| b.incarnation != reg.incarnation);
                let id = reg.id;
                let mut reg = reg.clone();
                if let Some(old) = self.brokers.get(&reg.id)
                    && old.incarnation == reg.incarnation
                {
                    // A retried registration keeps the state it already has.
                    reg.fenced = old.fenced;
                }
                self.brokers.insert(reg.id, reg);
                if restarted {
                    // The new process has not caught up yet: whatever the old one led
                    // moves on now rather than at the session timeout.
                    self.broker_unavailable(id);
                }
            }
            MetadataCommand::FenceBroker { id } => {
                self.set_fenced(*id, true)?;
                self.broker_unavailable(*id);
            }
            MetadataCommand::UnfenceBroker { id } => {
                self.set_fenced(*id, false)?;
                self.broker_available(*id);
            }
            MetadataCommand::UnregisterBroker { id } => {
                let Some(b) = self.brokers.get(id) else {
                    return Err(MetadataError::UnknownBroker(*id));
                };
                if !b.fenced {
                    return Err(MetadataError::BrokerInUse(format!(
                        "broker {id} is running (unfenced); stop it before removing it"
                    )));
                }
                let hosted = self
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.iter().enumerate().map(move |(i, p)| (t, i, p)))
                    .filter(|(_, _, p)| p.replicas.contains(id) || p.adding.contains(id))
                    .map(|(t, i, _)| format!("{}-{i}", t.name))
                    .collect::<Vec<_>>();
                if !hosted.is_empty() {
                    return Err(MetadataError::BrokerInUse(format!(
                        "broker {id} still hosts {} partition replicas ({}); drain it first",
                        hosted.len(),
                        hosted
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                self.brokers.remove(id);
                self.broker_configs.remove(id);
            }
            MetadataCommand::AlterPartition {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_partition(topic, *partition, *leader_epoch, *partition_epoch, isr)?,
            MetadataCommand::ReassignPartitions { moves } => self.reassign(moves)?,
            MetadataCommand::ElectPreferredLeaders { partitions } => {
                let active = self.active_ids();
                for (topic, partition) in partitions {
                    if let Some(p) = self
                        .topics
                        .get_mut(topic)
                        .and_then(|t| t.partitions.get_mut(*partition as usize))
                    {
                        p.elect_preferred(&|b| active.contains(&b));
                    }
                }
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
                        partitions: assignments.iter().map(|r| self.new_partition(r)).collect(),
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
                let fresh: Vec<PartitionState> =
                    assignments.iter().map(|r| self.new_partition(r)).collect();
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
                t.partitions.extend(fresh);
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
            MetadataCommand::AlterScramCredentials { upsert, delete } => {
                for (user, mech) in delete {
                    let gone = self.scram.get(user).is_none_or(|m| !m.contains_key(mech));
                    if gone {
                        return Err(MetadataError::UnknownCredential(format!(
                            "{user} has no {} credential",
                            mech.name()
                        )));
                    }
                }
                for (user, mech) in delete {
                    if let Some(m) = self.scram.get_mut(user) {
                        m.remove(mech);
                        if m.is_empty() {
                            self.scram.remove(user);
                        }
                    }
                }
                for (user, mech, cred) in upsert {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mech, cred.clone());
                }
            }
            MetadataCommand::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                self.acl_version += 1;
            }
            MetadataCommand::DeleteAcls { acls } => {
                for a in acls {
                    self.acls.remove(a);
                }
                self.acl_version += 1;
            }
            MetadataCommand::AlterClientQuotas { entries } => {
                for (entity, ops) in entries {
                    let values = self.quotas.entry(entity.clone()).or_default();
                    for (key, value) in ops {
                        match value {
                            Some(v) => {
                                values.insert(key.clone(), *v);
                            }
                            None => {
                                values.remove(key);
                            }
                        }
                    }
                    if values.is_empty() {
                        self.quotas.remove(entity);
                    }
                }
            }
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
            fenced: false,
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
        assert!(back.is_active(1));
    }

    fn cluster_with_topic(unclean: bool) -> ClusterMetadata {
        let mut md = ClusterMetadata::new("c".into());
        for id in [1, 2, 3] {
            md.apply(&broker(id)).unwrap();
        }
        let mut configs = BTreeMap::new();
        if unclean {
            configs.insert(UNCLEAN_ELECTION.to_string(), "true".to_string());
        }
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            assignments: vec![vec![1, 2, 3]],
            configs,
        })
        .unwrap();
        md
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr() {
        let mut md = cluster_with_topic(false);
        md.apply(&MetadataCommand::FenceBroker { id: 1 }).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
        assert_eq!(p.isr, vec![2, 3]);
        // Only 3 left in sync; when it goes too, the partition waits for it.
        md.apply(&MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader_epoch: 1,
            partition_epoch: p.partition_epoch,
            isr: vec![2],
        })
        .unwrap();
        md.apply(&MetadataCommand::FenceBroker { id: 2 }).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (-1, vec![2]));
        // An out-of-sync replica coming back does not lead (no unclean election)...
        md.apply(&MetadataCommand::UnfenceBroker { id: 1 }).unwrap();
        assert_eq!(md.topics["t"].partitions[0].leader, -1);
        // ...the last in-sync one does.
        md.apply(&MetadataCommand::UnfenceBroker { id: 2 }).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (2, 3));
    }

    #[test]
    fn unclean_election_when_allowed() {
        let mut md = cluster_with_topic(true);
        for id in [1, 2, 3] {
            md.apply(&MetadataCommand::FenceBroker { id }).unwrap();
        }
        assert_eq!(md.topics["t"].partitions[0].isr, vec![3]);
        md.apply(&MetadataCommand::UnfenceBroker { id: 1 }).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    }

    #[test]
    fn alter_partition_is_fenced_by_epochs() {
        let mut md = cluster_with_topic(false);
        let alter =
            |leader_epoch, partition_epoch, isr: Vec<i32>| MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_epoch,
                partition_epoch,
                isr,
            };
        md.apply(&alter(0, 0, vec![1, 2])).unwrap();
        assert!(matches!(
            md.apply(&alter(0, 0, vec![1])),
            Err(MetadataError::InvalidUpdateVersion { .. })
        ));
        assert!(matches!(
            md.apply(&alter(5, 1, vec![1])),
            Err(MetadataError::FencedLeaderEpoch { .. })
        ));
        assert!(
            md.apply(&alter(0, 1, vec![2, 3])).is_err(),
            "must keep the leader"
        );
        md.apply(&MetadataCommand::FenceBroker { id: 3 }).unwrap();
        let pe = md.topics["t"].partitions[0].partition_epoch;
        assert!(matches!(
            md.apply(&alter(0, pe, vec![1, 2, 3])),
            Err(MetadataError::InvalidIsr { .. })
        ));
    }

    #[test]
    fn a_restarted_broker_is_fenced_and_loses_leadership() {
        let mut md = cluster_with_topic(false);
        md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
            id: 1,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::new_v4(),
            fenced: true,
        }))
        .unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
        assert!(!md.is_active(1));
    }

    #[test]
    fn security_state_applies_and_survives_a_snapshot() {
        use crate::security::acl::{Operation, PatternType, Permission, ResourceType};
        use crate::security::quota::EntityName;
        let mut md = ClusterMetadata::new("c".into());
        let cred =
            ScramCredential::from_password(ScramMechanism::Sha512, b"pw", Some(b"salt"), 4096);
        md.apply(&MetadataCommand::AlterScramCredentials {
            upsert: vec![("alice".into(), ScramMechanism::Sha512, cred.clone())],
            delete: vec![],
        })
        .unwrap();
        // Deleting what does not exist changes nothing, not even the rest of the command.
        let bad = MetadataCommand::AlterScramCredentials {
            upsert: vec![("bob".into(), ScramMechanism::Sha256, cred.clone())],
            delete: vec![("alice".into(), ScramMechanism::Sha256)],
        };
        assert!(matches!(
            md.apply(&bad),
            Err(MetadataError::UnknownCredential(_))
        ));
        assert!(!md.scram.contains_key("bob"));
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            name: "orders-".into(),
            pattern: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        md.apply(&MetadataCommand::CreateAcls {
            acls: vec![acl.clone(), acl.clone()],
        })
        .unwrap();
        assert_eq!((md.acls.len(), md.acl_version), (1, 1));
        let entity = QuotaEntity {
            user: Some(EntityName::Named("alice".into())),
            client_id: Some(EntityName::Default),
        };
        md.apply(&MetadataCommand::AlterClientQuotas {
            entries: vec![(
                entity.clone(),
                vec![("producer_byte_rate".into(), Some(1024.0))],
            )],
        })
        .unwrap();
        let json = serde_json::to_string(&md).unwrap();
        let mut back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back.scram["alice"][&ScramMechanism::Sha512], cred);
        assert!(back.acls.contains(&acl));
        assert_eq!(back.quotas[&entity]["producer_byte_rate"], 1024.0);
        md.apply(&MetadataCommand::AlterClientQuotas {
            entries: vec![(entity.clone(), vec![("producer_byte_rate".into(), None)])],
        })
        .unwrap();
        assert!(md.quotas.is_empty());
        md.apply(&MetadataCommand::DeleteAcls { acls: vec![acl] })
            .unwrap();
        assert!(md.acls.is_empty());
        assert_eq!(md.acl_version, 2);
    }
}
