//! The group coordinator (classic protocol). A group belongs to one partition of
//! `__consumer_offsets` (Kafka's hash of the group id); the leader of that partition
//! coordinates it, keeps its state in memory, and writes every change (member
//! assignments, committed offsets, deletions) to that partition before answering. On
//! start, and whenever this broker becomes leader of such a partition, the partition is
//! replayed to rebuild its groups.

pub mod records;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use parking_lot::{Mutex, RwLock};

use crate::broker::{Broker, now_ms};
use crate::log::batch::check_produced;
use crate::log::validate::PreparedBatch;
use crate::replica::Partition;
use records::{GroupValue, OffsetValue, RecordKey};
use state::{Group, GroupState, Limits};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often session, rebalance and sync timeouts are checked.
const TICK: Duration = Duration::from_millis(200);

/// A record for `__consumer_offsets`: key and value (`None`: tombstone).
pub type OffsetsRecord = (Bytes, Option<Bytes>);

#[derive(Debug, Default)]
pub struct GroupCoordinator {
    groups: RwLock<HashMap<String, Arc<Mutex<Group>>>>,
    /// `__consumer_offsets` partitions this broker leads and has loaded.
    loaded: RwLock<HashSet<i32>>,
    /// One load/unload pass at a time.
    sync_lock: tokio::sync::Mutex<()>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl GroupCoordinator {
    pub fn limits(broker: &Broker) -> Limits {
        Limits {
            initial_rebalance_delay: Duration::from_millis(
                broker.config.groups.initial_rebalance_delay_ms,
            ),
            max_size: broker.config.groups.max_size,
        }
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_for(broker: &Broker, group: &str) -> i32 {
        let md = broker.metadata.current();
        let n = md
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(broker.config.groups.offsets_topic_num_partitions);
        records::partition_for(group, n)
    }

    /// Whether this broker coordinates `group` right now; the error code to answer with
    /// otherwise.
    pub fn check(&self, broker: &Broker, group: &str) -> Result<i32, i16> {
        if group.is_empty() {
            return Err(code(ResponseError::InvalidGroupId));
        }
        let md = broker.metadata.current();
        let Some(topic) = md.topics.get(OFFSETS_TOPIC) else {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        };
        let p = records::partition_for(group, topic.partitions.len() as i32);
        let leader = topic.partitions.get(p as usize).map(|s| s.leader);
        if leader != Some(broker.node_id) {
            return Err(code(ResponseError::NotCoordinator));
        }
        if !self.loaded.read().contains(&p) {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        Ok(p)
    }

    pub fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.read().get(id).cloned()
    }

    pub fn group_or_create(&self, id: &str) -> Arc<Mutex<Group>> {
        if let Some(g) = self.group(id) {
            return g;
        }
        self.groups
            .write()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now_ms()))))
            .clone()
    }

    pub fn remove_group(&self, id: &str) {
        self.groups.write().remove(id);
    }

    /// Every group this broker coordinates.
    pub fn all_groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups.read().values().cloned().collect()
    }

    /// Appends records to a `__consumer_offsets` partition. Returns the partition and
    /// the offset the high watermark must pass for the write to count.
    pub fn append(
        broker: &Broker,
        partition: i32,
        records: &[OffsetsRecord],
    ) -> Result<(Arc<Partition>, i64), i16> {
        let Some(p) = broker.replicas.get(OFFSETS_TOPIC, partition) else {
            return Err(code(ResponseError::NotCoordinator));
        };
        let now = now_ms();
        let plain: Vec<crate::log::batch::PlainRecord> = records
            .iter()
            .map(|(k, v)| (now, Some(k.clone()), v.clone()))
            .collect();
        let encoded = crate::log::batch::encode_batch(&plain, Compression::None);
        let checked = encoded.map_err(|e| e.to_string()).and_then(|b| {
            check_produced(&b)
                .map(|h| (b, h))
                .map_err(|e| e.to_string())
        });
        let (bytes, header) = match checked {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(partition, error = %e, "cannot encode a __consumer_offsets batch");
                return Err(code(ResponseError::UnknownServerError));
            }
        };
        match p.append(&[PreparedBatch { bytes, header }], -1, now) {
            Ok(outcome) => Ok((p, outcome.info.last_offset + 1)),
            Err(e) => {
                tracing::error!(partition, error = %e, "writing to __consumer_offsets failed");
                Err(match e.error_code() {
                    c if c == code(ResponseError::NotLeaderOrFollower) => {
                        code(ResponseError::NotCoordinator)
                    }
                    c if c == code(ResponseError::NotEnoughReplicas) => {
                        code(ResponseError::CoordinatorNotAvailable)
                    }
                    _ => code(ResponseError::UnknownServerError),
                })
            }
        }
    }

    /// Waits until a write to `__consumer_offsets` is committed (replicated to the ISR).
    pub async fn committed(
        broker: &Broker,
        p: &Partition,
        required_offset: i64,
    ) -> Result<(), i16> {
        let timeout = Duration::from_millis(broker.config.groups.offsets_commit_timeout_ms);
        let mut rx = p.subscribe_high_watermark();
        match tokio::time::timeout(timeout, rx.wait_for(|hw| *hw >= required_offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(code(ResponseError::NotCoordinator)),
            Err(_) => Err(code(ResponseError::RequestTimedOut)),
        }
    }

    /// Loads `__consumer_offsets` partitions this broker now leads and drops the groups
    /// of partitions it no longer leads.
    pub async fn sync_partitions(broker: &Arc<Broker>) {
        let coordinator = &broker.groups;
        let _one = coordinator.sync_lock.lock().await;
        let md = broker.metadata.current();
        let led: HashSet<i32> = md
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.leader == broker.node_id)
                    .map(|(i, _)| i as i32)
                    .collect()
            })
            .unwrap_or_default();
        let n = md
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(1);
        let gone: Vec<i32> = coordinator
            .loaded
            .read()
            .iter()
            .filter(|p| !led.contains(p))
            .copied()
            .collect();
        for p in gone {
            coordinator.loaded.write().remove(&p);
            let not_coordinator = code(ResponseError::NotCoordinator);
            coordinator.groups.write().retain(|id, g| {
                let keep = records::partition_for(id, n) != p;
                if !keep {
                    g.lock().fail_parked(not_coordinator);
                }
                keep
            });
            tracing::info!(
                partition = p,
                "no longer coordinating the groups of __consumer_offsets partition"
            );
        }
        let to_load: Vec<i32> = led
            .into_iter()
            .filter(|p| !coordinator.loaded.read().contains(p))
            .collect();
        for p in to_load {
            let Some(partition) = broker.replicas.get(OFFSETS_TOPIC, p) else {
                continue;
            };
            let started = Instant::now();
            let loaded = tokio::task::spawn_blocking(move || load_partition(&partition)).await;
            match loaded {
                Ok(Ok(groups)) => {
                    let count = groups.len();
                    {
                        let mut map = coordinator.groups.write();
                        for g in groups {
                            map.insert(g.id.clone(), Arc::new(Mutex::new(g)));
                        }
                    }
                    coordinator.loaded.write().insert(p);
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    if count > 0 {
                        tracing::info!(
                            partition = p,
                            groups = count,
                            elapsed_ms,
                            "loaded groups from __consumer_offsets"
                        );
                    } else {
                        tracing::debug!(
                            partition = p,
                            elapsed_ms,
                            "loaded __consumer_offsets partition: no groups"
                        );
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(partition = p, error = %e,
                        "cannot load groups from __consumer_offsets; its groups answer COORDINATOR_LOAD_IN_PROGRESS until a retry succeeds");
                }
                Err(e) => tracing::error!(partition = p, error = %e, "loading groups panicked"),
            }
        }
    }
}

/// Replays one `__consumer_offsets` partition into groups.
fn load_partition(p: &Partition) -> Result<Vec<Group>, crate::replica::PartitionError> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let now = Instant::now();
    let offsets = p.offsets();
    let mut offset = offsets.log_start_offset;
    let end = offsets.high_watermark;
    let mut rounds = 0u64;
    while offset < end && rounds < 10_000_000 {
        rounds += 1;
        let read = p.read(offset, 1 << 20, true, -1)?;
        let Some(slice) = read.slice else { break };
        let data = slice.read().map_err(|source| {
            crate::replica::PartitionError::Log(crate::log::LogError::Io {
                path: format!("{OFFSETS_TOPIC}-{}", p.index),
                source,
            })
        })?;
        let before = offset;
        let mut buf = data;
        while !buf.is_empty() {
            let Ok(h) = crate::log::batch::BatchHeader::parse(&buf) else {
                break;
            };
            if h.size() > buf.len() {
                break;
            }
            let mut one = buf.split_to(h.size());
            offset = offset.max(h.next_offset());
            if h.is_control() {
                continue;
            }
            let set = match RecordBatchDecoder::decode(&mut one) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition = p.index, base_offset = h.base_offset, error = %e,
                        "skipping an unreadable __consumer_offsets batch");
                    continue;
                }
            };
            for r in set.records {
                apply_record(&mut groups, r.key, r.value, now);
            }
        }
        if offset == before {
            break;
        }
    }
    Ok(groups
        .into_values()
        .filter(|g| g.state != GroupState::Dead || !g.offsets.is_empty())
        .collect())
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    now: Instant,
) {
    let Some(key) = key else { return };
    let key = match RecordKey::decode(key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "skipping a __consumer_offsets record");
            return;
        }
    };
    let group = groups
        .entry(key.group().to_string())
        .or_insert_with(|| Group::new(key.group(), now_ms()));
    match (key, value) {
        (
            RecordKey::Offset {
                topic, partition, ..
            },
            Some(v),
        ) => {
            if let Ok(v) = OffsetValue::decode(v) {
                group.offsets.insert((topic, partition), v);
            }
        }
        (
            RecordKey::Offset {
                topic, partition, ..
            },
            None,
        ) => {
            group.offsets.remove(&(topic, partition));
        }
        (RecordKey::Group { .. }, Some(v)) => match GroupValue::decode(v) {
            Ok(v) => group.restore(v, now),
            Err(e) => {
                tracing::warn!(group = %group.id, error = %e, "skipping unreadable group metadata")
            }
        },
        (RecordKey::Group { .. }, None) => {
            // Deleted: its offsets went with it (tombstones precede this one).
            let id = group.id.clone();
            groups.remove(&id);
        }
    }
}

/// The group's metadata as a `__consumer_offsets` record.
pub fn group_record(g: &Group) -> OffsetsRecord {
    (
        RecordKey::Group {
            group: g.id.clone(),
        }
        .encode(),
        Some(g.to_value().encode()),
    )
}

pub fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    v: Option<&OffsetValue>,
) -> OffsetsRecord {
    (
        RecordKey::Offset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        }
        .encode(),
        v.map(OffsetValue::encode),
    )
}

/// Session, rebalance and sync timeouts of every group, offset expiry, and group gauges.
pub async fn run_timers(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expiry_every =
        Duration::from_millis(broker.config.groups.offsets_retention_check_interval_ms);
    let mut last_expiry = Instant::now();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.shutdown.cancelled() => break,
        }
        ticks += 1;
        if ticks.is_multiple_of(25) {
            // Retries partitions whose load failed (a no-op when everything is loaded).
            GroupCoordinator::sync_partitions(&broker).await;
        }
        let limits = GroupCoordinator::limits(&broker);
        let now = Instant::now();
        let now_wall = now_ms();
        let mut states: HashMap<&'static str, i64> = HashMap::new();
        let expire = now.duration_since(last_expiry) >= expiry_every;
        if expire {
            last_expiry = now;
        }
        // Every 5 s: committed offsets of deleted topics go, as Kafka removes them.
        let md = ticks.is_multiple_of(25).then(|| broker.metadata.current());
        for g in broker.groups.all_groups() {
            let (became_empty, record, partition, expired) = {
                let mut g = g.lock();
                let became_empty = g.tick(now, now_wall, &limits);
                *states.entry(g.state.name()).or_default() += 1;
                let partition = GroupCoordinator::partition_for(&broker, &g.id);
                let mut expired = if expire {
                    expire_offsets(&mut g, now_wall, broker.config.groups.offsets_retention_ms)
                } else {
                    Vec::new()
                };
                if let Some(md) = &md {
                    expired.extend(offsets_of_deleted_topics(&mut g, md));
                }
                (
                    became_empty,
                    became_empty.then(|| group_record(&g)),
                    partition,
                    expired,
                )
            };
            let mut writes: Vec<OffsetsRecord> = expired;
            if let Some(r) = record {
                writes.push(r);
            }
            if writes.is_empty() {
                continue;
            }
            if broker.groups.check(&broker, &g.lock().id).is_err() {
                continue;
            }
            if let Err(c) = GroupCoordinator::append(&broker, partition, &writes) {
                tracing::warn!(
                    partition,
                    error_code = c,
                    became_empty,
                    "could not record a group change in __consumer_offsets"
                );
            }
        }
        for state in [
            "Empty",
            "PreparingRebalance",
            "CompletingRebalance",
            "Stable",
        ] {
            broker
                .metrics
                .groups
                .get_or_create(&crate::metrics::StateLabel { state })
                .set(states.get(state).copied().unwrap_or(0));
        }
    }
}

/// Removes committed offsets of topics that no longer exist; returns their tombstones.
fn offsets_of_deleted_topics(
    g: &mut Group,
    md: &crate::metadata::ClusterMetadata,
) -> Vec<OffsetsRecord> {
    let gone: Vec<(String, i32)> = g
        .offsets
        .keys()
        .filter(|(t, _)| !md.topics.contains_key(t))
        .cloned()
        .collect();
    let id = g.id.clone();
    gone.into_iter()
        .map(|(t, p)| {
            g.offsets.remove(&(t.clone(), p));
            tracing::info!(group = %id, topic = %t, partition = p,
                "removing the committed offset of a deleted topic");
            offset_record(&id, &t, p, None)
        })
        .collect()
}

/// Kafka's offset expiry: offsets of a group without members expire `offsets.retention`
/// after the later of their commit and the moment the group became empty. Returns the
/// tombstones to write.
fn expire_offsets(g: &mut Group, now_ms: i64, retention_ms: i64) -> Vec<OffsetsRecord> {
    if g.state != GroupState::Empty {
        return Vec::new();
    }
    let since = g.state_timestamp;
    let expired: Vec<(String, i32)> = g
        .offsets
        .iter()
        .filter(|(_, v)| now_ms.saturating_sub(v.commit_timestamp.max(since)) > retention_ms)
        .map(|(k, _)| k.clone())
        .collect();
    let id = g.id.clone();
    expired
        .into_iter()
        .map(|(t, p)| {
            g.offsets.remove(&(t.clone(), p));
            tracing::info!(group = %id, topic = %t, partition = p, "committed offset expired");
            offset_record(&id, &t, p, None)
        })
        .collect()
}
