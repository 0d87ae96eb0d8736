//! The tier manager: per partition led here with `remote.storage.enable`, it loads the
//! manifest (then, if the local log ends before the bucket, starts the local log at the
//! remote end), uploads sealed committed segments in offset order, applies total
//! retention to the remote tier, and removes the objects of deleted topics.
//!
//! Each partition's work runs under its own lock, one partition per copier slot
//! (`remote.log.manager.copier.thread.pool.size`). Failures back off exponentially per
//! partition; local data stays until its upload is confirmed by a manifest write.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::TierError;
use super::cache::ChunkCache;
use super::deletions::PendingDeletions;
use super::layout::{self, PartitionKey};
use super::manifest::{Manifest, RemoteSegment, RetentionInput};
use super::reader::RemoteReader;
use super::store::OpenedStore;
use super::upload::Uploader;
use crate::broker::{Broker, now_ms};
use crate::config::broker::RemoteSettings;
use crate::metrics::Metrics;
use crate::replica::Partition;

/// How often the manager looks for partitions whose manifest must be loaded (new
/// partitions, restarts); uploads and retention run per `task.interval.ms`.
const LOAD_TICK: Duration = Duration::from_millis(200);
/// How often followers re-read the manifest their leader writes.
const FOLLOWER_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Entry {
    key: PartitionKey,
    prefix: Path,
    /// The last manifest written or read; `None` until loaded. Readers keep using it
    /// while `reload` is set.
    manifest: RwLock<Option<Arc<Manifest>>>,
    /// A manifest write failed (it may or may not have landed): the next step re-reads
    /// the manifest before writing one.
    reload: AtomicBool,
    /// The leader epoch the manifest was last loaded under: another epoch means another
    /// leader may have written it since.
    epoch: std::sync::atomic::AtomicI32,
    work: tokio::sync::Mutex<()>,
    busy: AtomicBool,
    schedule: Mutex<Schedule>,
}

#[derive(Debug)]
struct Schedule {
    failures: u32,
    next_run: Instant,
}

impl Entry {
    fn manifest(&self) -> Option<Arc<Manifest>> {
        self.manifest.read().clone()
    }
}

/// The remote tier of this broker.
#[derive(Debug)]
pub struct TierManager {
    store: Arc<dyn ObjectStore>,
    root: Path,
    description: String,
    cluster_id: String,
    settings: RemoteSettings,
    reader: Arc<RemoteReader>,
    uploader: Uploader,
    metrics: Arc<Metrics>,
    entries: Mutex<HashMap<(Uuid, i32), Arc<Entry>>>,
    copy_permits: Arc<Semaphore>,
    /// Manifest loads have their own slots, so they never queue behind upload backlogs.
    load_permits: Arc<Semaphore>,
    deletions: Arc<PendingDeletions>,
    deleting: AtomicBool,
    deletion_schedule: Mutex<Schedule>,
}

impl TierManager {
    pub fn new(
        opened: OpenedStore,
        settings: RemoteSettings,
        cluster_id: String,
        cache_dir: &std::path::Path,
        deletions: Arc<PendingDeletions>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let chunks = ChunkCache::new(cache_dir, settings.cache_size_bytes)?;
        let reader = Arc::new(RemoteReader::new(
            opened.store.clone(),
            chunks,
            settings.index_cache_size_bytes,
            settings.chunk_size,
            settings.readahead_chunks,
            settings.reader_threads,
            metrics.clone(),
        ));
        let uploader = Uploader::new(
            opened.store.clone(),
            settings.upload_part_size,
            settings.copy_max_bytes_per_second,
        );
        Ok(Self {
            store: opened.store,
            root: opened.root,
            description: opened.description,
            cluster_id,
            copy_permits: Arc::new(Semaphore::new(settings.copier_threads.max(1))),
            load_permits: Arc::new(Semaphore::new(settings.reader_threads.max(1))),
            settings,
            reader,
            uploader,
            metrics,
            entries: Mutex::new(HashMap::new()),
            deletions,
            deleting: AtomicBool::new(false),
            deletion_schedule: Mutex::new(Schedule {
                failures: 0,
                next_run: Instant::now(),
            }),
        })
    }

    pub fn fetch_max_wait(&self) -> Duration {
        Duration::from_millis(self.settings.fetch_max_wait_ms)
    }

    fn key_of(p: &Partition) -> PartitionKey {
        PartitionKey {
            topic: p.topic.clone(),
            topic_id: p.topic_id,
            partition: p.index,
        }
    }

    fn entry(&self, p: &Partition) -> Arc<Entry> {
        let mut entries = self.entries.lock();
        entries
            .entry((p.topic_id, p.index))
            .or_insert_with(|| {
                let key = Self::key_of(p);
                Arc::new(Entry {
                    prefix: layout::partition_prefix(&self.root, &self.cluster_id, &key),
                    key,
                    manifest: RwLock::new(None),
                    reload: AtomicBool::new(false),
                    epoch: std::sync::atomic::AtomicI32::new(-1),
                    work: tokio::sync::Mutex::new(()),
                    busy: AtomicBool::new(false),
                    schedule: Mutex::new(Schedule {
                        failures: 0,
                        next_run: Instant::now(),
                    }),
                })
            })
            .clone()
    }

    /// Runs until shutdown.
    pub async fn run(self: Arc<Self>, broker: Arc<Broker>) {
        tracing::info!(store = %self.description, "tiered storage enabled");
        let mut tick = tokio::time::interval(LOAD_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = broker.shutdown.cancelled() => break,
            }
            self.pass(&broker);
        }
        // Wait for in-flight partition work so no upload is cut between its objects and
        // its manifest more often than necessary (a cut one is harmless, just wasted).
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.copy_permits
                .acquire_many(self.settings.copier_threads.max(1) as u32),
        )
        .await;
    }

    fn pass(self: &Arc<Self>, broker: &Arc<Broker>) {
        let hosted = broker.replicas.all_partitions();
        let now = Instant::now();
        {
            let mut entries = self.entries.lock();
            // An entry whose work still runs stays, so its partition never has two rounds
            // at once and a deletion can wait for it.
            entries.retain(|(id, idx), e| {
                e.busy.load(Ordering::Acquire)
                    || hosted.iter().any(|p| p.topic_id == *id && p.index == *idx)
            });
        }
        for p in hosted {
            let l = p.leadership();
            let leader = l.leader == broker.node_id;
            let enabled = p.config().remote_storage;
            if !leader && enabled {
                self.refresh_follower(&p, now);
                continue;
            }
            if !leader || !(enabled || p.remote_view().has_data()) {
                continue;
            }
            let e = self.entry(&p);
            if e.epoch.swap(l.leader_epoch, Ordering::AcqRel) != l.leader_epoch {
                e.reload.store(true, Ordering::Release);
                e.schedule.lock().next_run = now;
            }
            {
                let s = e.schedule.lock();
                // Unloaded partitions are retried on their backoff only; loaded ones
                // run every task interval.
                if s.next_run > now {
                    continue;
                }
            }
            if e.busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let this = self.clone();
            let broker = broker.clone();
            tokio::spawn(async move {
                let result = this.work(&e, &p, &broker).await;
                let mut s = e.schedule.lock();
                match result {
                    Ok(more) => {
                        s.failures = 0;
                        // A round that stopped at its segment limit continues at once,
                        // after other partitions had their turn at the copier slots.
                        s.next_run = if more {
                            Instant::now()
                        } else {
                            Instant::now() + Duration::from_millis(this.settings.task_interval_ms)
                        };
                        p.update_remote(|v| v.last_error = None);
                    }
                    Err(err) => {
                        s.failures = s.failures.saturating_add(1);
                        let backoff = this.backoff_ms(s.failures);
                        s.next_run = Instant::now() + Duration::from_millis(backoff);
                        this.metrics.remote_error(err.reason());
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %err,
                            failures = s.failures, retry_in_ms = backoff,
                            "remote storage work failed; local data is kept and the work retried");
                        p.update_remote(|v| v.last_error = Some(err.to_string()));
                    }
                }
                e.busy.store(false, Ordering::Release);
            });
        }
        if !self.deletions.pending().is_empty()
            && self.deletion_schedule.lock().next_run <= now
            && !self.deleting.swap(true, Ordering::AcqRel)
        {
            let this = self.clone();
            tokio::spawn(async move {
                let ok = this.process_deletions().await;
                {
                    let mut s = this.deletion_schedule.lock();
                    s.failures = if ok { 0 } else { s.failures.saturating_add(1) };
                    let backoff = if ok { 0 } else { this.backoff_ms(s.failures) };
                    s.next_run = Instant::now() + Duration::from_millis(backoff);
                }
                this.deleting.store(false, Ordering::Release);
            });
        }
    }

    /// Followers only read the manifest the leader writes (every [`FOLLOWER_REFRESH`]):
    /// it tells local retention which segments are safely in the bucket. They never
    /// upload, delete remote objects or sweep orphans (the leader's uploads in flight
    /// would look like orphans).
    fn refresh_follower(self: &Arc<Self>, p: &Arc<Partition>, now: Instant) {
        let e = self.entry(p);
        {
            let s = e.schedule.lock();
            if s.next_run > now {
                return;
            }
        }
        if e.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, p) = (self.clone(), p.clone());
        tokio::spawn(async move {
            let result = this.read_manifest(&e, &p).await;
            let mut s = e.schedule.lock();
            match result {
                Ok(m) => {
                    let m = Arc::new(m);
                    *e.manifest.write() = Some(m.clone());
                    // Becoming leader re-reads it properly (orphans, catching up).
                    e.reload.store(true, Ordering::Release);
                    e.epoch.store(-1, Ordering::Release);
                    publish(&p, &m);
                    s.failures = 0;
                    s.next_run = Instant::now() + FOLLOWER_REFRESH;
                }
                Err(err) => {
                    s.failures = s.failures.saturating_add(1);
                    let backoff = this.backoff_ms(s.failures);
                    s.next_run = Instant::now() + Duration::from_millis(backoff);
                    tracing::debug!(topic = %p.topic, partition = p.index, error = %err,
                        "follower could not read the remote manifest; local segments are kept");
                }
            }
            e.busy.store(false, Ordering::Release);
        });
    }

    /// Exponential backoff after `failures` consecutive failures.
    fn backoff_ms(&self, failures: u32) -> u64 {
        self.settings
            .retry_backoff_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(self.settings.retry_backoff_max_ms)
    }

    /// Waits (at most `limit`) until the manifests of all partitions led here with remote
    /// storage are loaded, so a starting broker reports the remote log start from its
    /// first answer. An unreachable store only delays readiness by `limit`.
    pub async fn wait_loaded(&self, broker: &Broker, limit: Duration) {
        let started = Instant::now();
        let pending = || {
            broker
                .replicas
                .all_partitions()
                .into_iter()
                .filter(|p| {
                    p.leadership().leader == broker.node_id
                        && p.config().remote_storage
                        && !p.remote_view().loaded
                })
                .count()
        };
        loop {
            let left = pending();
            if left == 0 {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "remote tier manifests loaded"
                );
                return;
            }
            if started.elapsed() >= limit || broker.shutdown.is_cancelled() {
                tracing::warn!(
                    partitions = left,
                    waited_ms = limit.as_millis() as u64,
                    "remote tier manifests not loaded yet (object store unreachable?); serving local data meanwhile, loads keep retrying"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The manifest to build the next one on, re-read if a write failed or none was
    /// loaded. Call under the entry's work lock.
    async fn current(&self, e: &Entry, p: &Arc<Partition>) -> Result<Arc<Manifest>, TierError> {
        match e.manifest() {
            Some(m) if !e.reload.load(Ordering::Acquire) => Ok(m),
            _ => self.load(e, p).await,
        }
    }

    /// One round for one partition: load, upload (at most [`SEGMENTS_PER_ROUND`]),
    /// retention, lag. The partition's lock is taken per step, so DeleteRecords and
    /// deletions wait for one upload at most. Returns whether uploads remain.
    async fn work(
        &self,
        e: &Entry,
        p: &Arc<Partition>,
        broker: &Broker,
    ) -> Result<bool, TierError> {
        if e.manifest().is_none() || e.reload.load(Ordering::Acquire) {
            let _slot = self
                .load_permits
                .acquire()
                .await
                .map_err(|_| shutting_down())?;
            let _one_at_a_time = e.work.lock().await;
            if p.is_closed() {
                return Ok(false);
            }
            self.current(e, p).await?;
        }
        let _slot = self
            .copy_permits
            .acquire()
            .await
            .map_err(|_| shutting_down())?;
        let mut uploaded = 0;
        while p.config().remote_storage && !broker.shutdown.is_cancelled() {
            if uploaded == SEGMENTS_PER_ROUND {
                return Ok(true);
            }
            let _one_at_a_time = e.work.lock().await;
            if p.is_closed() {
                return Ok(false);
            }
            let manifest = self.current(e, p).await?;
            let from = manifest.end_offset().unwrap_or(i64::MIN);
            self.update_lag(p, from);
            let Some(src) = p.upload_candidate(from) else {
                break;
            };
            let started = Instant::now();
            let seg = self.uploader.upload(&e.prefix, &src, now_ms()).await?;
            if p.is_closed() {
                self.delete_segment_objects(&e.prefix, &seg).await;
                return Ok(false);
            }
            let mut next = (*manifest).clone();
            next.segments.push(seg.clone());
            next.leader_epoch = p.leadership().leader_epoch;
            // On failure the write may still have landed: the objects stay, and the next
            // step re-reads the manifest (sweeping them if it does not name them).
            self.write_manifest(e, &mut next).await?;
            let manifest = Arc::new(next);
            *e.manifest.write() = Some(manifest.clone());
            publish(p, &manifest);
            uploaded += 1;
            self.metrics.remote_upload_segments.inc();
            self.metrics.remote_upload_bytes.inc_by(seg.size_bytes);
            tracing::info!(topic = %p.topic, partition = p.index,
                base_offset = seg.base_offset, end_offset = seg.end_offset,
                bytes = seg.size_bytes, elapsed_ms = started.elapsed().as_millis() as u64,
                "uploaded segment to remote storage");
        }
        let _one_at_a_time = e.work.lock().await;
        if p.is_closed() {
            return Ok(false);
        }
        let manifest = self.current(e, p).await?;
        self.update_lag(p, manifest.end_offset().unwrap_or(i64::MIN));
        self.apply_retention(e, p, manifest).await?;
        Ok(false)
    }

    fn update_lag(&self, p: &Partition, from: i64) {
        let (_, _, lag) = p.local_usage(from);
        let pending = p.config().remote_storage && p.upload_pending(from);
        p.update_remote(|v| {
            v.lag_bytes = if p.config().remote_storage { lag } else { 0 };
            v.lag_since_ms = match (pending, v.lag_since_ms) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(now_ms()),
            };
        });
    }

    /// The partition's manifest as stored; an empty one when there is none yet.
    async fn read_manifest(&self, e: &Entry, p: &Partition) -> Result<Manifest, TierError> {
        let key = layout::manifest_object(&e.prefix);
        Ok(match self.store.get(&key).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|err| TierError::store("read", &key, err))?;
                Manifest::decode(&bytes, p.topic_id).map_err(|err| {
                    tracing::error!(object = %key, error = %err,
                        "remote manifest is unusable; the partition's remote data cannot be served and no uploads happen until it is repaired");
                    TierError::Manifest {
                        key: key.to_string(),
                        reason: err.to_string(),
                    }
                })?
            }
            Err(object_store::Error::NotFound { .. }) => {
                Manifest::new(&p.topic, p.topic_id, p.index)
            }
            Err(err) => return Err(TierError::store("read", &key, err)),
        })
    }

    /// Reads the manifest (absent: a new, empty one), sweeps objects no manifest names,
    /// and catches the local log up to the remote end.
    async fn load(&self, e: &Entry, p: &Arc<Partition>) -> Result<Arc<Manifest>, TierError> {
        let manifest = self.read_manifest(e, p).await?;
        self.sweep_orphans(e, &manifest).await;
        if let Some(end) = manifest.end_offset() {
            let epochs: Vec<(i32, i64)> = manifest
                .segments
                .iter()
                .flat_map(|s| s.leader_epochs.iter().copied())
                .collect();
            let p2 = p.clone();
            tokio::task::spawn_blocking(move || p2.catch_up_to_remote(end, &epochs))
                .await
                .map_err(|err| TierError::Local {
                    what: format!("{}: starting the local log at the remote end", e.key),
                    reason: err.to_string(),
                })?
                .map_err(|err| TierError::Local {
                    what: format!("{}: starting the local log at the remote end", e.key),
                    reason: err.to_string(),
                })?;
        }
        let manifest = Arc::new(manifest);
        *e.manifest.write() = Some(manifest.clone());
        e.reload.store(false, Ordering::Release);
        publish(p, &manifest);
        tracing::info!(topic = %p.topic, partition = p.index, prefix = %e.prefix,
            segments = manifest.segments.len(), remote_start = ?manifest.start_offset(),
            remote_end = ?manifest.end_offset(), "loaded remote tier manifest");
        Ok(manifest)
    }

    /// Removes segment objects the manifest does not name: leftovers of uploads cut by
    /// a crash, or of deletions cut after their manifest write.
    async fn sweep_orphans(&self, e: &Entry, manifest: &Manifest) {
        let known: std::collections::HashSet<String> = manifest
            .segments
            .iter()
            .map(|s| layout::short_id(s.id))
            .collect();
        let mut listing = self.store.list(Some(&e.prefix));
        let mut orphans = Vec::new();
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) => {
                    let name = meta.location.filename().unwrap_or_default();
                    if let Some((_, id)) = layout::parse_segment_object(name)
                        && !known.contains(&id)
                    {
                        orphans.push(meta.location);
                    }
                }
                Err(err) => {
                    tracing::warn!(prefix = %e.prefix, error = %err, "cannot list remote objects to sweep orphans; trying again at the next load");
                    return;
                }
            }
        }
        for key in orphans {
            match self.store.delete(&key).await {
                Ok(()) => {
                    tracing::info!(object = %key, "deleted orphaned remote object (an upload or deletion cut short)")
                }
                Err(err) => {
                    tracing::warn!(object = %key, error = %err, "cannot delete orphaned remote object")
                }
            }
        }
    }

    /// Writes the next manifest generation. A failure (or this future being dropped
    /// mid-write) marks the entry for a re-read: the write may have landed anyway.
    async fn write_manifest(&self, e: &Entry, next: &mut Manifest) -> Result<(), TierError> {
        next.generation += 1;
        let key = layout::manifest_object(&e.prefix);
        e.reload.store(true, Ordering::Release);
        self.store
            .put(&key, PutPayload::from(Bytes::from(next.encode())))
            .await
            .map_err(|err| TierError::store("manifest write", &key, err))?;
        e.reload.store(false, Ordering::Release);
        Ok(())
    }

    async fn delete_segment_objects(&self, prefix: &Path, seg: &RemoteSegment) {
        for ext in ["log", "index", "timeindex"] {
            let key = layout::segment_object(prefix, seg.base_offset, seg.id, ext);
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => {
                    tracing::warn!(object = %key, error = %err, "cannot delete remote object; it is swept when the manifest is next loaded");
                }
            }
            self.reader.forget(&key);
        }
    }

    /// Total retention (`retention.ms`, `retention.bytes`) and DeleteRecords applied to
    /// remote-only segments: manifest first, then the objects.
    async fn apply_retention(
        &self,
        e: &Entry,
        p: &Arc<Partition>,
        manifest: Arc<Manifest>,
    ) -> Result<(), TierError> {
        let config = p.config();
        let (local_start, local_bytes, _) = p.local_usage(i64::MAX);
        let requested = p.remote_view().requested_start;
        let input = RetentionInput {
            now_ms: now_ms(),
            retention_ms: if config.delete {
                config.retention_ms
            } else {
                -1
            },
            retention_bytes: if config.delete {
                config.retention_bytes
            } else {
                -1
            },
            local_start,
            local_bytes,
            log_start: requested,
        };
        let n = manifest.retention_count(&input);
        let new_start = requested.max(manifest.log_start_offset);
        if n == 0 && new_start <= manifest.log_start_offset {
            return Ok(());
        }
        let mut next = (*manifest).clone();
        let removed: Vec<RemoteSegment> = next.segments.drain(..n).collect();
        next.log_start_offset = removed
            .last()
            .map(|s| s.end_offset)
            .unwrap_or(i64::MIN)
            .max(new_start);
        self.write_manifest(e, &mut next).await?;
        let next = Arc::new(next);
        *e.manifest.write() = Some(next.clone());
        publish(p, &next);
        for seg in &removed {
            self.delete_segment_objects(&e.prefix, seg).await;
        }
        if !removed.is_empty() {
            self.metrics
                .remote_deleted_segments
                .inc_by(removed.len() as u64);
            tracing::info!(topic = %p.topic, partition = p.index, segments = removed.len(),
                bytes = removed.iter().map(|s| s.size_bytes).sum::<u64>(),
                remote_log_start = next.log_start_offset,
                "deleted remote segments by retention");
        }
        Ok(())
    }

    /// Writes a DeleteRecords start offset into the manifest now (DeleteRecords answers
    /// only once it is durable).
    pub async fn apply_log_start(
        &self,
        p: &Arc<Partition>,
        timeout: Duration,
    ) -> Result<(), TierError> {
        let Some(e) = self.entries.lock().get(&(p.topic_id, p.index)).cloned() else {
            return Err(not_loaded(p));
        };
        // Dropped at the timeout, a manifest write leaves the entry marked for a re-read.
        let step = async {
            let _one_at_a_time = e.work.lock().await;
            let m = self.current(&e, p).await?;
            self.apply_retention(&e, p, m).await
        };
        tokio::time::timeout(timeout, step)
            .await
            .unwrap_or_else(|_| {
                Err(TierError::Local {
                    what: format!(
                        "{}-{}: recording DeleteRecords in the manifest",
                        p.topic, p.index
                    ),
                    reason: format!("not done within {} ms", timeout.as_millis()),
                })
            })
    }

    /// Deletes the prefixes of deleted partitions; false if one failed (retried later).
    async fn process_deletions(&self) -> bool {
        for d in self.deletions.pending() {
            let key = PartitionKey {
                topic: Arc::from(d.topic.as_str()),
                topic_id: d.topic_id,
                partition: d.partition,
            };
            let prefix = layout::partition_prefix(&self.root, &self.cluster_id, &key);
            // Wait for this partition's running step (an upload's manifest write) first.
            let entry = self.entries.lock().get(&(d.topic_id, d.partition)).cloned();
            let _guard = match &entry {
                Some(e) => Some(e.work.lock().await),
                None => None,
            };
            match self.delete_prefix(&prefix).await {
                Ok(n) => {
                    self.deletions.done(&d);
                    if let Some(e) = &entry {
                        *e.manifest.write() = None;
                    }
                    self.reader.forget_prefix(&prefix);
                    if n > 0 {
                        tracing::info!(topic = %d.topic, partition = d.partition, prefix = %prefix,
                            objects = n, "deleted remote data of deleted topic");
                    }
                }
                Err(err) => {
                    self.metrics.remote_error(err.reason());
                    tracing::warn!(topic = %d.topic, partition = d.partition, prefix = %prefix,
                        error = %err, "cannot delete remote data of deleted topic yet; retrying with backoff");
                    return false;
                }
            }
        }
        true
    }

    async fn delete_prefix(&self, prefix: &Path) -> Result<usize, TierError> {
        // The manifest goes first, so a cut deletion never leaves a manifest naming
        // deleted objects.
        let manifest = layout::manifest_object(prefix);
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(TierError::store("delete", &manifest, err)),
        }
        let mut n = 0;
        let mut listing = self.store.list(Some(prefix));
        let mut keys = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|err| TierError::store("list", prefix, err))?;
            keys.push(meta.location);
        }
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(err) => return Err(TierError::store("delete", &key, err)),
            }
        }
        Ok(n)
    }

    /// Reads committed batches at `offset` from the remote tier. `Ok(None)` when the
    /// manifest has no segment there any more (retention raced the fetch).
    pub async fn read(
        &self,
        p: &Partition,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Option<Bytes>, TierError> {
        let (e, m) = self.loaded(p)?;
        let Some(seg) = m.segment_for(offset.max(m.log_start_offset)).cloned() else {
            return Ok(None);
        };
        let reader = self.reader.clone();
        let prefix = e.prefix.clone();
        let id = seg.id;
        // A task of its own: if the fetch stops waiting, the read still fills the cache.
        let task =
            tokio::spawn(
                async move { reader.read(&prefix, &seg, offset, max_bytes, min_one).await },
            );
        match task.await {
            Ok(Err(TierError::NotFound { key }))
                if e.manifest()
                    .is_none_or(|m| m.segments.iter().all(|s| s.id != id)) =>
            {
                // Retention removed the segment while this fetch read it: the offset is
                // gone, not damaged.
                tracing::debug!(object = %key, "remote segment deleted by retention during a read");
                Ok(None)
            }
            Ok(Err(err @ TierError::NotFound { .. })) => {
                self.metrics.remote_error(err.reason());
                Err(err)
            }
            Ok(r) => r.map(Some),
            Err(err) => Err(TierError::Local {
                what: "remote read task".into(),
                reason: err.to_string(),
            }),
        }
    }

    /// The partition's entry and manifest; an error while the manifest is not loaded.
    fn loaded(&self, p: &Partition) -> Result<(Arc<Entry>, Arc<Manifest>), TierError> {
        let e = self
            .entries
            .lock()
            .get(&(p.topic_id, p.index))
            .cloned()
            .ok_or_else(|| not_loaded(p))?;
        let m = e.manifest().ok_or_else(|| not_loaded(p))?;
        Ok((e, m))
    }

    /// ListOffsets by timestamp over the remote-only segments.
    pub async fn offset_for_timestamp(
        &self,
        p: &Partition,
        timestamp: i64,
    ) -> Result<Option<(i64, i64, i32)>, TierError> {
        let (e, m) = self.loaded(p)?;
        let (start, remote_only) = remote_only(p, &m);
        for seg in remote_only.filter(|s| s.max_timestamp >= timestamp) {
            if let Some(found) = self
                .reader
                .find_timestamp(&e.prefix, seg, timestamp, start)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP over the remote-only segments: the first record carrying
    /// the largest timestamp, found from the manifest's per-segment maxima and one batch.
    pub async fn max_timestamp_offset(
        &self,
        p: &Partition,
    ) -> Result<Option<(i64, i64, i32)>, TierError> {
        let (e, m) = self.loaded(p)?;
        let (start, remote_only) = remote_only(p, &m);
        let best =
            remote_only
                .filter(|s| s.max_timestamp >= 0)
                .fold(None::<&RemoteSegment>, |best, s| match best {
                    Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                    _ => Some(s),
                });
        match best {
            Some(seg) => {
                self.reader
                    .find_timestamp(&e.prefix, seg, seg.max_timestamp, start)
                    .await
            }
            None => Ok(None),
        }
    }

    /// A short health summary for `/readyz`: partitions whose remote work is failing.
    pub fn health(&self, broker: &Broker) -> Option<String> {
        let mut failing = 0;
        let mut example = None;
        let mut lag = 0u64;
        for p in broker.replicas.all_partitions() {
            let v = p.remote_view();
            lag += v.lag_bytes;
            if let Some(err) = v.last_error {
                failing += 1;
                example.get_or_insert_with(|| format!("{}-{}: {err}", p.topic, p.index));
            }
        }
        (failing > 0).then(|| {
            format!(
                "remote storage ({}) degraded: {failing} partition(s) failing, {lag} bytes waiting for upload and kept on local disk; e.g. {}",
                self.description,
                example.unwrap_or_default()
            )
        })
    }
}

/// Publishes a manifest's summary to the partition (log start, reads, metrics).
fn publish(p: &Partition, m: &Manifest) {
    p.update_remote(|v| {
        v.loaded = true;
        v.segments = m.segments.len();
        v.start = m.start_offset().unwrap_or(0);
        v.end = m.end_offset().unwrap_or(0);
        v.size_bytes = m.total_bytes();
        v.start_epoch = m
            .segments
            .first()
            .map(|s| s.epoch_at(v.start))
            .unwrap_or(-1);
        v.end_epoch = m
            .segments
            .last()
            .map(|s| s.epoch_at(s.end_offset - 1))
            .unwrap_or(-1);
    });
}

/// How many segments one round uploads before letting other partitions have the slot.
const SEGMENTS_PER_ROUND: usize = 8;

fn shutting_down() -> TierError {
    TierError::Local {
        what: "remote storage".into(),
        reason: "shutting down".into(),
    }
}

fn not_loaded(p: &Partition) -> TierError {
    TierError::Local {
        what: format!("{}-{}", p.topic, p.index),
        reason: "remote tier manifest not loaded".into(),
    }
}

/// The remote log start and the segments holding data only the bucket has: above the
/// remote start (after DeleteRecords), starting below the local log start.
fn remote_only<'m>(
    p: &Partition,
    m: &'m Manifest,
) -> (i64, impl Iterator<Item = &'m RemoteSegment>) {
    let local_start = p.local_log_start();
    let start = m
        .start_offset()
        .unwrap_or(0)
        .max(p.remote_view().requested_start);
    let segments = m
        .segments
        .iter()
        .filter(move |s| s.end_offset > start)
        .take_while(move |s| s.base_offset < local_start);
    (start, segments)
}
