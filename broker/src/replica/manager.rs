//! The partitions this broker hosts: opened and recovered at startup, created and deleted
//! as the metadata image changes, checkpointed in Kafka's per-directory files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use super::partition::{Leadership, Partition};
use crate::config::ConfigLayers;
use crate::config::broker::StaticConfig;
use crate::log::checkpoint::{self, CheckpointError};
use crate::log::{LogConfig, LogError, PartitionLog};
use crate::metadata::{ClusterMetadata, TopicMetadata};
use crate::tiered::deletions::{DeletedPartition, PendingDeletions};

const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOG_START_FILE: &str = "log-start-offset-checkpoint";
const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
const PARTITION_METADATA_FILE: &str = "partition.metadata";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn io_err(path: &Path, source: std::io::Error) -> ReplicaError {
    ReplicaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Partitions of one topic hosted here, indexed by partition id.
#[derive(Debug, Clone)]
pub struct HostedTopic {
    pub id: Uuid,
    pub partitions: Vec<Option<Arc<Partition>>>,
}

/// Offsets read from the per-directory checkpoint files at startup.
#[derive(Debug, Default)]
struct Checkpoints {
    recovery_points: BTreeMap<(String, i32), i64>,
    log_starts: BTreeMap<(String, i32), i64>,
    high_watermarks: BTreeMap<(String, i32), i64>,
}

#[derive(Debug)]
pub struct ReplicaManager {
    broker_id: i32,
    log_dirs: Vec<PathBuf>,
    statics: StaticConfig,
    topics: RwLock<HashMap<Arc<str>, HostedTopic>>,
    ids: RwLock<HashMap<Uuid, Arc<str>>>,
    /// Serialises metadata application; holds the metadata offset last applied, so an
    /// older image arriving late (watcher vs. request handler) is ignored.
    apply_lock: Mutex<Option<u64>>,
    checkpoint_lock: Mutex<()>,
    /// Partitions of deleted topics whose remote objects must be removed (tiered storage
    /// enabled only).
    remote_deletions: Option<Arc<PendingDeletions>>,
}

/// `orders-3` -> ("orders", 3).
fn parse_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic.to_string(), partition.parse().ok()?))
}

fn read_partition_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    let encoded = text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id:"))?
        .trim()
        .to_string();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

fn write_partition_topic_id(dir: &Path, id: Uuid) -> Result<(), CheckpointError> {
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes());
    checkpoint::write_atomic(
        &dir.join(PARTITION_METADATA_FILE),
        format!("version: 0\ntopic_id: {encoded}\n").as_bytes(),
    )
}

/// Renames a partition directory out of the way and removes it in the background, as
/// Kafka does with `-delete` directories.
fn schedule_dir_deletion(dir: &Path) {
    let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let doomed = dir.with_file_name(format!("{name}.{}-delete", Uuid::new_v4().simple()));
    let target = match std::fs::rename(dir, &doomed) {
        Ok(()) => doomed,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not rename partition directory for deletion; deleting in place");
            dir.to_path_buf()
        }
    };
    std::thread::spawn(move || {
        if let Err(e) = std::fs::remove_dir_all(&target) {
            tracing::warn!(dir = %target.display(), error = %e, "could not delete partition directory");
        }
    });
}

impl ReplicaManager {
    /// Opens every partition found in `log_dirs` (recovering logs as needed) and brings the
    /// set in line with `md`: strays are deleted, missing replicas created.
    pub fn open(
        broker_id: i32,
        log_dirs: Vec<PathBuf>,
        statics: StaticConfig,
        recovery_threads: usize,
        md: &ClusterMetadata,
    ) -> Result<Self, ReplicaError> {
        let started = Instant::now();
        let mut manager = Self {
            broker_id,
            log_dirs,
            statics,
            topics: RwLock::new(HashMap::new()),
            ids: RwLock::new(HashMap::new()),
            apply_lock: Mutex::new(None),
            checkpoint_lock: Mutex::new(()),
            remote_deletions: None,
        };
        if manager.statics.remote_storage_system_enabled()
            && let Some(first) = manager.log_dirs.first()
        {
            std::fs::create_dir_all(first).map_err(|e| io_err(first, e))?;
            manager.remote_deletions = Some(Arc::new(PendingDeletions::open(first)));
        }
        let mut opened = 0usize;
        for root in &manager.log_dirs {
            std::fs::create_dir_all(root).map_err(|e| io_err(root, e))?;
            let cps = Checkpoints {
                recovery_points: checkpoint::read_offsets(&root.join(RECOVERY_POINT_FILE))?,
                log_starts: checkpoint::read_offsets(&root.join(LOG_START_FILE))?,
                high_watermarks: checkpoint::read_offsets(&root.join(HIGH_WATERMARK_FILE))?,
            };
            let mut candidates = Vec::new();
            for entry in std::fs::read_dir(root).map_err(|e| io_err(root, e))? {
                let entry = entry.map_err(|e| io_err(root, e))?;
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with("-delete") {
                    schedule_dir_deletion(&path);
                    continue;
                }
                let Some((topic, partition)) = parse_partition_dir(&name) else {
                    continue;
                };
                let wanted = md.topics.get(&topic).filter(|t| {
                    t.partitions
                        .get(partition as usize)
                        .is_some_and(|p| p.replicas.contains(&broker_id))
                        && read_partition_topic_id(&path).is_none_or(|id| id == t.id)
                });
                match wanted {
                    Some(t) => candidates.push((path, t.clone(), partition)),
                    None => {
                        tracing::info!(dir = %path.display(), "deleting stray partition directory: its topic or assignment no longer exists");
                        let old_id = read_partition_topic_id(&path);
                        if let Some(id) = old_id
                            && md.topics.get(&topic).is_none_or(|t| t.id != id)
                        {
                            manager.record_remote_deletion(&topic, id, partition);
                        }
                        schedule_dir_deletion(&path);
                    }
                }
            }
            opened += candidates.len();
            let queue = Mutex::new(candidates);
            let results = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..recovery_threads.max(1) {
                    s.spawn(|| {
                        loop {
                            let Some((path, topic, partition)) = queue.lock().pop() else {
                                break;
                            };
                            let r =
                                manager.open_partition(root, &path, &topic, partition, md, &cps);
                            results.lock().push(r);
                        }
                    });
                }
            });
            for r in results.into_inner() {
                manager.insert(r?);
            }
        }
        tracing::info!(
            partitions = opened,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened partition logs"
        );
        manager.apply_metadata(md)?;
        Ok(manager)
    }

    fn layers<'a>(&'a self, md: &'a ClusterMetadata) -> ConfigLayers<'a> {
        ConfigLayers {
            statics: &self.statics,
            cluster: &md.cluster_configs,
            broker: md.broker_configs.get(&self.broker_id),
        }
    }

    pub fn log_config_for(&self, md: &ClusterMetadata, topic: &TopicMetadata) -> LogConfig {
        self.layers(md).log_config(&topic.configs)
    }

    fn open_partition(
        &self,
        root: &Path,
        dir: &Path,
        topic: &TopicMetadata,
        partition: i32,
        md: &ClusterMetadata,
        cps: &Checkpoints,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let key = (topic.name.clone(), partition);
        let config = self.log_config_for(md, topic);
        let name: Arc<str> = Arc::from(topic.name.as_str());
        let (log, report) = PartitionLog::open(
            dir,
            name,
            partition,
            config,
            cps.recovery_points.get(&key).copied(),
            cps.log_starts.get(&key).copied(),
        )?;
        if report.corruption.is_some() || report.indexes_rebuilt > 0 {
            tracing::warn!(
                topic = %topic.name, partition,
                corruption = report.corruption.as_deref().unwrap_or("none"),
                truncated_bytes = report.truncated_bytes,
                segments_removed = report.segments_removed,
                indexes_rebuilt = report.indexes_rebuilt,
                log_end_offset = log.log_end_offset(),
                "recovered partition log"
            );
        } else {
            tracing::debug!(topic = %topic.name, partition, segments = report.segments,
                elapsed_ms = report.duration_ms as u64, "opened partition log");
        }
        if read_partition_topic_id(dir).is_none() {
            write_partition_topic_id(dir, topic.id)?;
        }
        let leadership = topic
            .partitions
            .get(partition as usize)
            .map(Leadership::from)
            .unwrap_or(Leadership {
                leader: -1,
                leader_epoch: 0,
                partition_epoch: 0,
                replicas: vec![],
                isr: vec![],
                adding: vec![],
            });
        Ok(Arc::new(Partition::new(
            topic.id,
            root.to_path_buf(),
            self.broker_id,
            log,
            leadership,
            cps.high_watermarks.get(&key).copied(),
        )))
    }

    fn insert(&self, p: Arc<Partition>) {
        let mut topics = self.topics.write();
        let entry = topics
            .entry(p.topic.clone())
            .or_insert_with(|| HostedTopic {
                id: p.topic_id,
                partitions: Vec::new(),
            });
        let idx = p.index as usize;
        if entry.partitions.len() <= idx {
            entry.partitions.resize(idx + 1, None);
        }
        self.ids.write().insert(p.topic_id, p.topic.clone());
        entry.partitions[idx] = Some(p);
    }

    /// The directory for a new partition: the log dir hosting the fewest partitions.
    fn pick_root(&self) -> PathBuf {
        let topics = self.topics.read();
        let mut counts: HashMap<&Path, usize> =
            self.log_dirs.iter().map(|d| (d.as_path(), 0)).collect();
        for t in topics.values() {
            for p in t.partitions.iter().flatten() {
                if let Some(c) = counts.get_mut(p.log_root.as_path()) {
                    *c += 1;
                }
            }
        }
        self.log_dirs
            .iter()
            .min_by_key(|d| counts.get(d.as_path()).copied().unwrap_or(0))
            .cloned()
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Offset of the last metadata image applied to the hosted partitions.
    pub fn applied_offset(&self) -> Option<u64> {
        *self.apply_lock.lock()
    }

    /// Brings hosted partitions in line with a new metadata image. Blocking (creates and
    /// deletes directories): call from a blocking context.
    pub fn apply_metadata(&self, md: &ClusterMetadata) -> Result<(), ReplicaError> {
        let mut applied = self.apply_lock.lock();
        if applied.is_some_and(|offset| md.offset < offset) {
            return Ok(());
        }
        // Topics gone, or deleted and re-created under a new id; partitions moved away.
        let stale: Vec<Arc<str>> = self
            .topics
            .read()
            .iter()
            .filter(|(name, hosted)| md.topics.get(&***name).is_none_or(|t| t.id != hosted.id))
            .map(|(name, _)| name.clone())
            .collect();
        let mut removed = !stale.is_empty();
        for name in stale {
            self.remove_topic(&name);
        }
        for topic in md.topics.values() {
            for (i, state) in topic.partitions.iter().enumerate() {
                if let Some(p) = self.get(&topic.name, i as i32)
                    && !state.replicas.contains(&self.broker_id)
                {
                    self.remove_partition(&p);
                    removed = true;
                }
            }
        }
        if removed {
            // Before anything is created under a removed partition's name, its offsets
            // must leave the checkpoints, or a re-created partition would inherit them.
            self.write_checkpoints()?;
        }
        let empty = Checkpoints::default();
        for topic in md.topics.values() {
            let config = self.log_config_for(md, topic);
            for (i, state) in topic.partitions.iter().enumerate() {
                if !state.replicas.contains(&self.broker_id) {
                    continue;
                }
                match self.get(&topic.name, i as i32) {
                    Some(p) => {
                        p.set_leadership(Leadership::from(state));
                        p.set_config(config.clone());
                    }
                    None => {
                        let root = self.pick_root();
                        let dir = root.join(format!("{}-{}", topic.name, i));
                        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                        write_partition_topic_id(&dir, topic.id)?;
                        let p = self.open_partition(&root, &dir, topic, i as i32, md, &empty)?;
                        tracing::info!(topic = %topic.name, partition = i, dir = %dir.display(), "created partition");
                        self.insert(p);
                    }
                }
            }
        }
        *applied = Some(md.offset);
        Ok(())
    }

    fn remove_partition(&self, p: &Arc<Partition>) {
        {
            let mut topics = self.topics.write();
            if let Some(t) = topics.get_mut(&p.topic)
                && let Some(slot) = t.partitions.get_mut(p.index as usize)
            {
                *slot = None;
            }
        }
        tracing::info!(topic = %p.topic, partition = p.index, "deleting partition");
        p.close();
        schedule_dir_deletion(&p.log_dir());
    }

    fn remove_topic(&self, name: &str) {
        let removed = self.topics.write().remove(name);
        if let Some(t) = removed {
            self.ids.write().remove(&t.id);
            for p in t.partitions.into_iter().flatten() {
                tracing::info!(topic = %p.topic, partition = p.index, "deleting partition of deleted topic");
                self.record_remote_deletion(&p.topic, p.topic_id, p.index);
                p.close();
                schedule_dir_deletion(&p.log_dir());
            }
        }
    }

    fn record_remote_deletion(&self, topic: &str, topic_id: Uuid, partition: i32) {
        if let Some(d) = &self.remote_deletions {
            d.add([DeletedPartition {
                topic: topic.to_string(),
                topic_id,
                partition,
            }]);
        }
    }

    /// The list of deleted partitions whose remote data is still to be removed.
    pub fn remote_deletions(&self) -> Option<Arc<PendingDeletions>> {
        self.remote_deletions.clone()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read();
        topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?
            .clone()
    }

    pub fn topic_name(&self, id: &Uuid) -> Option<Arc<str>> {
        self.ids.read().get(id).cloned()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().flatten().cloned())
            .collect()
    }

    pub fn log_dirs(&self) -> &[PathBuf] {
        &self.log_dirs
    }

    /// Writes recovery points, log start offsets and high watermarks for every log dir,
    /// and producer state snapshots where due (`force_snapshots` at shutdown: every
    /// partition's state as of its log end).
    pub fn write_checkpoints_with(&self, force_snapshots: bool) -> Result<(), ReplicaError> {
        let _guard = self.checkpoint_lock.lock();
        let partitions = self.all_partitions();
        for root in &self.log_dirs {
            let mut rps = BTreeMap::new();
            let mut starts = BTreeMap::new();
            let mut hws = BTreeMap::new();
            for p in partitions.iter().filter(|p| &p.log_root == root) {
                let key = (p.topic.to_string(), p.index);
                let (rp, start) = p.checkpoint_offsets();
                rps.insert(key.clone(), rp);
                starts.insert(key.clone(), start);
                hws.insert(key, p.high_watermark());
            }
            for p in partitions.iter().filter(|p| &p.log_root == root) {
                if let Err(e) = p.snapshot_producers(force_snapshots) {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e,
                        "could not write the producer state snapshot; the next start replays more of the log");
                }
            }
            checkpoint::write_offsets(&root.join(RECOVERY_POINT_FILE), &rps)?;
            checkpoint::write_offsets(&root.join(LOG_START_FILE), &starts)?;
            checkpoint::write_offsets(&root.join(HIGH_WATERMARK_FILE), &hws)?;
        }
        Ok(())
    }

    pub fn write_checkpoints(&self) -> Result<(), ReplicaError> {
        self.write_checkpoints_with(false)
    }

    /// fsyncs every partition that needs it (or, with `force`, has anything unflushed).
    /// Returns the number of partitions flushed.
    pub fn flush(&self, force: bool) -> usize {
        let mut flushed = 0;
        for p in self
            .all_partitions()
            .into_iter()
            .filter(|p| !p.is_offline())
        {
            match p.flush(force) {
                Ok(true) => flushed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                }
            }
        }
        flushed
    }

    /// Applies retention to every partition and expires idle idempotent producers.
    pub fn apply_retention(&self, now_ms: i64, producer_expiration_ms: i64) {
        for p in self.all_partitions() {
            let expired = p.expire_producers(now_ms, producer_expiration_ms);
            if expired > 0 {
                tracing::debug!(topic = %p.topic, partition = p.index, expired, "expired idle producer ids");
            }
            match p.apply_retention(now_ms) {
                Ok(out) if out.segments_deleted > 0 => {
                    tracing::info!(topic = %p.topic, partition = p.index,
                        segments = out.segments_deleted, bytes = out.bytes_deleted,
                        log_start_offset = p.offsets().log_start_offset,
                        "deleted segments by retention");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, ConfigSources};
    use crate::log::batch::test_util::make_batch;
    use crate::log::validate::prepare;
    use crate::metadata::{BrokerRegistration, MetadataCommand};

    fn md_with_topic(name: &str, partitions: usize) -> ClusterMetadata {
        let mut md = ClusterMetadata::new("c".into());
        md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
            id: 0,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::nil(),
            fenced: false,
        }))
        .unwrap();
        md.apply(&MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            assignments: vec![vec![0]; partitions],
            configs: BTreeMap::new(),
        })
        .unwrap();
        md
    }

    fn statics() -> StaticConfig {
        BrokerConfig::load(&ConfigSources::default())
            .unwrap()
            .statics
    }

    #[test]
    fn creates_reopens_and_deletes_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let roots = vec![dir.path().join("a"), dir.path().join("b")];
        let mut md = md_with_topic("orders", 4);
        let rm = ReplicaManager::open(0, roots.clone(), statics(), 2, &md).unwrap();
        assert_eq!(rm.all_partitions().len(), 4);
        // Spread over both directories.
        assert!(roots[0].join("orders-0").exists() || roots[1].join("orders-0").exists());
        let on_a = rm
            .all_partitions()
            .iter()
            .filter(|p| p.log_root == roots[0])
            .count();
        assert_eq!(on_a, 2);

        let p = rm.get("orders", 2).unwrap();
        let batch = make_batch(5, 1, 10);
        let prepared = prepare(&batch, &p.config(), 1).unwrap();
        p.append(&prepared, 1, 1).unwrap();
        assert_eq!(p.high_watermark(), 5);
        rm.write_checkpoints().unwrap();
        drop(p);
        drop(rm);

        let rm = ReplicaManager::open(0, roots.clone(), statics(), 1, &md).unwrap();
        let p = rm.get("orders", 2).unwrap();
        assert_eq!(p.offsets().log_end_offset, 5);
        assert_eq!(p.high_watermark(), 5);
        let id = md.topics["orders"].id;
        assert_eq!(rm.topic_name(&id).as_deref(), Some("orders"));

        md.apply(&MetadataCommand::DeleteTopic {
            name: "orders".into(),
        })
        .unwrap();
        rm.apply_metadata(&md).unwrap();
        assert!(rm.get("orders", 2).is_none());
        assert!(rm.topic_name(&id).is_none());
    }

    #[test]
    fn recreated_topic_does_not_inherit_old_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let roots = vec![dir.path().to_path_buf()];
        let mut md = md_with_topic("t", 1);
        let rm = ReplicaManager::open(0, roots.clone(), statics(), 1, &md).unwrap();
        let p = rm.get("t", 0).unwrap();
        for _ in 0..10 {
            let b = make_batch(10, 1, 10);
            p.append(&prepare(&b, &p.config(), 1).unwrap(), 1, 1)
                .unwrap();
        }
        p.delete_records_before(60).unwrap();
        p.flush(true).unwrap();
        rm.write_checkpoints().unwrap();
        drop(p);
        // Delete and re-create under the same name, write a little, then "crash" (no
        // further checkpoint).
        md.apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .unwrap();
        rm.apply_metadata(&md).unwrap();
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            assignments: vec![vec![0]],
            configs: BTreeMap::new(),
        })
        .unwrap();
        rm.apply_metadata(&md).unwrap();
        let p = rm.get("t", 0).unwrap();
        let b = make_batch(5, 1, 10);
        p.append(&prepare(&b, &p.config(), 1).unwrap(), 1, 1)
            .unwrap();
        drop(p);
        drop(rm);
        let rm = ReplicaManager::open(0, roots, statics(), 1, &md).unwrap();
        let o = rm.get("t", 0).unwrap().offsets();
        assert_eq!((o.log_start_offset, o.log_end_offset), (0, 5));
    }

    #[test]
    fn an_older_metadata_image_is_not_applied_after_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = md_with_topic("a", 1);
        let mut new = old.clone();
        new.apply(&MetadataCommand::CreateTopic {
            name: "b".into(),
            id: Uuid::new_v4(),
            assignments: vec![vec![0]],
            configs: BTreeMap::new(),
        })
        .unwrap();
        let rm =
            ReplicaManager::open(0, vec![dir.path().to_path_buf()], statics(), 1, &old).unwrap();
        rm.apply_metadata(&new).unwrap();
        rm.apply_metadata(&old).unwrap();
        assert!(
            rm.get("b", 0).is_some(),
            "the late, older image must not delete b"
        );
    }

    #[test]
    fn stray_directories_are_removed_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let md = md_with_topic("kept", 1);
        std::fs::create_dir_all(root.join("gone-0")).unwrap();
        let rm = ReplicaManager::open(0, vec![root.clone()], statics(), 1, &md).unwrap();
        assert!(rm.get("kept", 0).is_some());
        // Deletion happens on a background thread.
        for _ in 0..100 {
            if !root.join("gone-0").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!root.join("gone-0").exists());
    }

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir("a-b-12"), Some(("a-b".into(), 12)));
        assert_eq!(parse_partition_dir("__sluice_metadata"), None);
        assert_eq!(parse_partition_dir("-1"), None);
        assert_eq!(parse_partition_dir("x-1.abc-delete"), None);
    }
}
