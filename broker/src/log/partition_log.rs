//! The append-only log of one partition: an ordered run of segments, the last one active.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::batch::{BatchHeader, stamp_prefix};
use super::checkpoint::{CheckpointError, sync_dir};
use super::config::LogConfig;
use super::epoch_cache::LeaderEpochCache;
use super::producer_state::{PendingSnapshot, ProducerError, ProducerStateManager, SequenceCheck};
use super::records;
use super::segment::{self, FileSlice, Segment, SegmentError, SyncHandles};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: log holds [{log_start}, {log_end})"
    )]
    OffsetOutOfRange {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("{topic}-{partition}: {source}")]
    Segment {
        topic: Arc<str>,
        partition: i32,
        #[source]
        source: SegmentError,
    },
    #[error("{topic}-{partition}: {source}")]
    Checkpoint {
        topic: Arc<str>,
        partition: i32,
        #[source]
        source: CheckpointError,
    },
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{topic}-{partition}: replicated batch at offset {offset} is invalid: {reason}")]
    BadReplicatedBatch {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("log of {topic}-{partition} is offline after a storage error")]
    Offline { topic: Arc<str>, partition: i32 },
    #[error("{topic}-{partition} was deleted or moved off this broker")]
    Closed { topic: Arc<str>, partition: i32 },
    #[error("{topic}-{partition}: {source}")]
    Producer {
        topic: Arc<str>,
        partition: i32,
        #[source]
        source: ProducerError,
    },
}

/// A batch that passed validation and is ready to be appended.
#[derive(Debug, Clone, Copy)]
pub struct ValidBatch<'a> {
    pub bytes: &'a [u8],
    pub header: BatchHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    pub bytes: u64,
    pub records: i64,
    /// An idempotent producer's retry of a batch already in the log: nothing was written
    /// and the offsets are the original ones.
    pub duplicate: bool,
}

/// What opening a log had to repair.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: usize,
    pub segments_scanned: usize,
    pub indexes_rebuilt: usize,
    pub truncated_bytes: u64,
    pub corruption: Option<String>,
    pub segments_removed: usize,
    pub duration_ms: u128,
}

/// What a retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// fsyncs to run without holding the partition lock.
#[derive(Debug)]
pub struct FlushJob {
    handles: Vec<SyncHandles>,
    dir: PathBuf,
    pub upto: i64,
}

impl FlushJob {
    pub fn run(&self) -> Result<(), LogError> {
        for h in &self.handles {
            h.sync().map_err(|source| LogError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(source.to_string()),
            })?;
        }
        sync_dir(&self.dir).map_err(|source| LogError::Io {
            path: self.dir.display().to_string(),
            source,
        })
    }
}

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    topic: Arc<str>,
    partition: i32,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    size: u64,
    epoch_cache: LeaderEpochCache,
    unflushed_messages: i64,
    last_flush: Instant,
    pending_sync: Vec<SyncHandles>,
    offline: bool,
    /// Set before the partition's directory is deleted or moved: nothing may write to
    /// its old path any more.
    closed: bool,
    producers: ProducerStateManager,
    /// The log cleaner's position and pass history.
    cleaner: super::cleaner::CleanerCheckpoint,
}

/// A sealed segment to upload to the remote tier, read outside the log lock.
#[derive(Debug, Clone)]
pub struct UploadSource {
    pub base_offset: i64,
    pub end_offset: i64,
    pub file: Arc<std::fs::File>,
    pub size: u64,
    pub index: Vec<u8>,
    pub time_index: Vec<u8>,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub epochs: Vec<(i32, i64)>,
}

/// A sealed segment handed to the log cleaner, read outside the log lock.
#[derive(Debug, Clone)]
pub struct CleanableSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub file: Arc<std::fs::File>,
    pub size: u64,
}

/// What one cleaning pass covers: every sealed segment below `dirty_end`; the key map is
/// built from offsets in `[first_dirty, dirty_end)`.
#[derive(Debug, Clone)]
pub struct CleaningPlan {
    pub segments: Vec<CleanableSegment>,
    pub first_dirty: i64,
    pub dirty_end: i64,
    pub dirty_ratio: f64,
}

const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

#[cfg(test)]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const EPOCH_FILE: &str = "leader-epoch-checkpoint";

impl PartitionLog {
    /// Opens (and repairs) the log in `dir`, creating it if needed.
    ///
    /// `recovery_point`: everything below it was fsynced and is trusted; `None` means
    /// every batch is verified. `log_start_offset`: the persisted start (DeleteRecords).
    pub fn open(
        dir: &Path,
        topic: Arc<str>,
        partition: i32,
        config: LogConfig,
        recovery_point: Option<i64>,
        log_start_offset: Option<i64>,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let started = Instant::now();
        let io = |path: &Path, source: std::io::Error| LogError::Io {
            path: path.display().to_string(),
            source,
        };
        let seg_err = |source: SegmentError| LogError::Segment {
            topic: topic.clone(),
            partition,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut bases = Vec::new();
        let mut swapped = Vec::new();
        let mut index_files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = segment::parse_base_offset(&name, "log") {
                bases.push(base);
            } else if let Some(base) = name
                .strip_suffix(".swap")
                .and_then(|n| segment::parse_base_offset(n, "log"))
            {
                // The cleaner crashed after its output became complete: finish the swap.
                segment::complete_swap(dir, base).map_err(seg_err)?;
                tracing::info!(topic = %topic, partition, base_offset = base,
                    "completed a segment swap interrupted by a crash");
                swapped.push(base);
            } else if name.ends_with(".tmp")
                || name.ends_with(".deleted")
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
            {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(base) = segment::parse_base_offset(&name, "index")
                .or_else(|| segment::parse_base_offset(&name, "timeindex"))
            {
                index_files.push((base, entry.path()));
            }
        }
        bases.extend(swapped);
        bases.sort_unstable();
        bases.dedup();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }

        let epoch_path = dir.join(EPOCH_FILE);
        let loaded_epochs = LeaderEpochCache::load(&epoch_path);
        let rebuild_epochs = loaded_epochs.is_none();
        let mut epoch_cache = loaded_epochs.unwrap_or_else(|| LeaderEpochCache::empty(&epoch_path));

        let verify_from = recovery_point.unwrap_or(i64::MIN);
        let mut report = RecoveryReport::default();
        let mut segments = BTreeMap::new();
        if bases.is_empty() {
            let base = log_start_offset.unwrap_or(0).max(0);
            segments.insert(base, Segment::create(dir, base).map_err(seg_err)?);
        }
        let mut scanned = Vec::new();
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let next_base = bases.get(i + 1).copied();
            let is_last = next_base.is_none();
            let trusted = next_base.is_some_and(|nb| nb <= verify_from) && !rebuild_epochs;
            if trusted {
                if let Some(seg) = Segment::open_sealed(dir, base).map_err(seg_err)? {
                    segments.insert(base, seg);
                    i += 1;
                    continue;
                }
                report.indexes_rebuilt += 1;
            }
            // A flushed segment whose indexes are unusable may be damaged in other ways
            // too: every batch of it is verified.
            let segment_verify_from = if trusted { i64::MIN } else { verify_from };
            report.segments_scanned += 1;
            let recovered =
                Segment::recover(dir, base, segment_verify_from, config.index_interval_bytes)
                    .map_err(seg_err)?;
            let mut seg = recovered.segment;
            scanned.push(seg.sync_handles());
            if rebuild_epochs {
                for (e, o) in recovered.epochs {
                    epoch_cache.assign(e, o);
                }
            }
            if let Some(c) = recovered.corruption {
                report.corruption = Some(format!(
                    "segment {} at position {}: {}",
                    seg.log_path().display(),
                    c.position,
                    c.reason
                ));
                report.truncated_bytes += recovered.truncated_bytes;
                // Later segments start after a hole: they cannot be served.
                for &later in &bases[i + 1..] {
                    report.truncated_bytes += segment::delete_files(dir, later).map_err(seg_err)?;
                    report.segments_removed += 1;
                }
                seg.reopen_for_append();
                segments.insert(base, seg);
                break;
            }
            // An empty first segment is kept: the cleaner empties one rather than remove
            // it, so its base offset stays the log start.
            if !is_last && seg.is_empty() && i > 0 {
                // Nothing to serve; keeping it would only stall retention.
                segment::delete_files(dir, base).map_err(seg_err)?;
                report.segments_removed += 1;
                i += 1;
                continue;
            }
            if !is_last {
                seg.seal().map_err(seg_err)?;
            }
            segments.insert(base, seg);
            i += 1;
        }
        report.segments = segments.len();

        let log_end = segments
            .values()
            .next_back()
            .map(|s| s.next_offset())
            .unwrap_or(0);
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_start = log_start_offset
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        let mut epochs_changed = rebuild_epochs;
        epochs_changed |= epoch_cache.truncate_from_end(log_end);
        epochs_changed |= epoch_cache.truncate_from_start(log_start);
        if epochs_changed {
            epoch_cache
                .persist()
                .map_err(|source| LogError::Checkpoint {
                    topic: topic.clone(),
                    partition,
                    source,
                })?;
        }
        let size = segments.values().map(|s| s.size()).sum();
        let mut log = Self {
            dir: dir.to_path_buf(),
            topic,
            partition,
            config,
            segments,
            log_start_offset: log_start,
            recovery_point: recovery_point.unwrap_or(0).min(log_end),
            size,
            epoch_cache,
            unflushed_messages: 0,
            last_flush: Instant::now(),
            // Everything scanned (data and rewritten indexes) is fsynced before it
            // becomes the new recovery point.
            pending_sync: scanned,
            offline: false,
            closed: false,
            producers: ProducerStateManager::empty(dir),
            cleaner: {
                let mut c = super::cleaner::CleanerCheckpoint::parse(
                    &std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).unwrap_or_default(),
                );
                c.first_dirty = c.first_dirty.min(log_end);
                c
            },
        };
        if report.segments_scanned > 0 {
            // What recovery validated becomes the new recovery point once it is on disk.
            let job = log.begin_flush()?;
            job.run()?;
            log.finish_flush(job.upto);
        }
        log.rebuild_producer_state()?;
        report.duration_ms = started.elapsed().as_millis();
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }
    pub fn partition(&self) -> i32 {
        self.partition
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().map(|s| s.next_offset()).unwrap_or(0)
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn size_bytes(&self) -> u64 {
        self.size
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn is_offline(&self) -> bool {
        self.offline
    }
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    fn seg_err(&self, source: SegmentError) -> LogError {
        LogError::Segment {
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        }
    }

    fn checkpoint_err(&self, source: CheckpointError) -> LogError {
        LogError::Checkpoint {
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        }
    }

    fn producer_err(&self, source: ProducerError) -> LogError {
        LogError::Producer {
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        }
    }

    /// Rebuilds idempotent producer state: the newest usable snapshot plus the batch
    /// headers after it.
    fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let end = self.log_end_offset();
        let (state, from) = ProducerStateManager::load(&self.dir, self.log_start_offset, end);
        self.producers = state;
        let mut offset = from;
        let mut batches = 0u64;
        while offset < end {
            let Some(slice) = self.read(offset, end, 1 << 20, true)? else {
                break;
            };
            let data = slice.read().map_err(|source| LogError::Io {
                path: self.dir.display().to_string(),
                source,
            })?;
            let before = offset;
            for item in super::batch::split_batches(&data, BatchHeader::parse) {
                let Ok((_, h)) = item else { break };
                if h.next_offset() > offset {
                    self.producers.update(&h, h.max_timestamp);
                    offset = h.next_offset();
                    batches += 1;
                }
            }
            if offset == before {
                break;
            }
        }
        if batches > 0 {
            tracing::debug!(topic = %self.topic, partition = self.partition, from, batches,
                producers = self.producers.len(), "rebuilt producer state from the log");
        }
        Ok(())
    }

    /// A producer state snapshot as of the log end, when the state changed or (`force`)
    /// the newest snapshot predates the active segment, so replay at the next start stays
    /// short.
    pub fn producer_snapshot(&mut self, force: bool) -> Option<PendingSnapshot> {
        let end = self.log_end_offset();
        let active_base = self.active().map(|s| s.base_offset()).unwrap_or(0);
        let stale = self
            .producers
            .last_snapshot()
            .is_none_or(|o| o < active_base);
        self.producers.take_snapshot(end, force || stale)
    }

    /// The next cleaning pass, if the dirty part of the log calls for one: closed segments
    /// wholly below `limit` (the high watermark) and older than `min.compaction.lag.ms`,
    /// with a dirty share of at least `min.cleanable.dirty.ratio` (or dirty records older
    /// than `max.compaction.lag.ms`).
    pub fn cleaning_plan(&self, now_ms: i64, limit: i64) -> Option<CleaningPlan> {
        if !self.config.compact || self.closed || self.offline {
            return None;
        }
        let active_base = self.active()?.base_offset();
        let first_dirty = self.cleaner.first_dirty.max(self.log_start_offset);
        let tombstones_due = self.cleaner.tombstone_due.is_some_and(|t| now_ms >= t);
        let lag = self.config.min_compaction_lag_ms;
        let mut segments = Vec::new();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut dirty_end = first_dirty;
        let mut oldest_dirty_ts: Option<i64> = None;
        for seg in self.segments.values() {
            if seg.base_offset() >= active_base || seg.next_offset() > limit {
                break;
            }
            let dirty = seg.next_offset() > first_dirty;
            if dirty {
                if now_ms.saturating_sub(seg.largest_timestamp()) < lag {
                    break;
                }
                dirty_bytes += seg.size();
                dirty_end = seg.next_offset();
                oldest_dirty_ts.get_or_insert(seg.largest_timestamp());
            } else {
                clean_bytes += seg.size();
            }
            let (file, size) = seg.file();
            segments.push(CleanableSegment {
                base_offset: seg.base_offset(),
                next_offset: seg.next_offset(),
                file,
                size,
            });
        }
        if dirty_bytes == 0 && !tombstones_due {
            return None;
        }
        let total = (clean_bytes + dirty_bytes).max(1);
        let ratio = dirty_bytes as f64 / total as f64;
        let overdue = oldest_dirty_ts
            .is_some_and(|ts| now_ms.saturating_sub(ts) > self.config.max_compaction_lag_ms);
        if ratio < self.config.min_cleanable_dirty_ratio && !overdue && !tombstones_due {
            return None;
        }
        segments.retain(|s| s.base_offset < dirty_end.max(first_dirty));
        Some(CleaningPlan {
            segments,
            first_dirty,
            dirty_end,
            dirty_ratio: ratio,
        })
    }

    /// Installs a cleaned replacement of the segment at `base` (prepared with
    /// [`Segment::prepare_swap`]), unless that segment changed meanwhile (retention or
    /// truncation removed it). `None` replaces it with nothing: every record was removed.
    pub fn install_cleaned(
        &mut self,
        base: i64,
        original: &Arc<std::fs::File>,
        cleaned: Option<Segment>,
    ) -> Result<bool, LogError> {
        let current = self.segments.get(&base).map(|s| s.file().0);
        let unchanged = current.is_some_and(|f| Arc::ptr_eq(&f, original));
        let is_active = self.active().map(|s| s.base_offset()) == Some(base);
        if !unchanged || is_active || self.closed {
            if let Some(c) = &cleaned {
                c.discard();
            }
            return Ok(false);
        }
        let old_size = self.segments.get(&base).map(|s| s.size()).unwrap_or(0);
        match cleaned {
            Some(mut seg) => {
                seg.install(&self.dir).map_err(|e| self.seg_err(e))?;
                self.size = self.size - old_size + seg.size();
                self.segments.insert(base, seg);
            }
            None => {
                if let Some(seg) = self.segments.remove(&base) {
                    seg.delete().map_err(|e| self.seg_err(e))?;
                    self.size -= old_size;
                }
            }
        }
        Ok(true)
    }

    pub fn cleaner_checkpoint(&self) -> &super::cleaner::CleanerCheckpoint {
        &self.cleaner
    }

    /// Takes a finished pass's state; the caller has written it to
    /// [`PartitionLog::cleaner_checkpoint_path`] (outside the lock).
    pub fn set_cleaner_checkpoint(&mut self, c: super::cleaner::CleanerCheckpoint) {
        self.cleaner = c;
    }

    pub fn cleaner_checkpoint_path(&self) -> PathBuf {
        self.dir.join(CLEANER_CHECKPOINT)
    }

    /// Drops producers idle for `producer.id.expiration.ms`.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.expire(now_ms, expiration_ms)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start: self.log_start_offset,
            log_end: self.log_end_offset(),
        }
    }

    fn should_roll(&self, active: &Segment, batch: &BatchHeader, now_ms: i64) -> bool {
        if active.is_empty() {
            return false;
        }
        let too_big = active.size() + batch.size() as u64 > self.config.segment_bytes;
        let too_old = active.time_waited_for_roll(now_ms, batch.max_timestamp)
            > self
                .config
                .segment_ms
                .saturating_sub(active.roll_jitter_ms(self.config.segment_jitter_ms));
        let index_full = (active.index_entries() as u64 + 1) * 8 > self.config.segment_index_bytes;
        let offsets_overflow = batch.last_offset() - active.base_offset() > i64::from(i32::MAX);
        too_big || too_old || index_full || offsets_overflow
    }

    /// Starts a new active segment at the log end; the old one is sealed and queued for
    /// fsync.
    pub fn roll(&mut self) -> Result<(), LogError> {
        self.roll_at(self.log_end_offset())
    }

    /// Rolls to a segment starting at `new_base` (after the log end when replicating a
    /// compacted leader's gap).
    fn roll_at(&mut self, new_base: i64) -> Result<(), LogError> {
        if self.segments.contains_key(&new_base) {
            return Ok(());
        }
        let new_segment = Segment::create(&self.dir, new_base).map_err(|e| self.seg_err(e))?;
        if let Some(active) = self.segments.values_mut().next_back() {
            if let Err(e) = active.seal() {
                // Indexes are rebuilt on the next start; the data itself is intact.
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                    "could not write indexes of rolled segment");
            }
            self.pending_sync.push(active.sync_handles());
        }
        self.segments.insert(new_base, new_segment);
        Ok(())
    }

    fn check_writable(&self) -> Result<(), LogError> {
        if self.closed {
            return Err(LogError::Closed {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        if self.offline {
            return Err(LogError::Offline {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        Ok(())
    }

    /// Writes one batch (`parts`, described by `header`) to the active segment and
    /// records it: leader epoch cache, producer state, size and flush accounting (per
    /// batch, so a failure on a later batch loses nothing already counted).
    fn write_batch(
        &mut self,
        parts: &mut [IoSlice<'_>],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let interval = self.config.index_interval_bytes;
        let Some(active) = self.segments.values_mut().next_back() else {
            return Err(self.out_of_range(header.base_offset));
        };
        let size_before = active.size();
        if let Err(e) = active.append(parts, header, interval) {
            // The segment cut itself back; if it could not, stop taking writes.
            if std::fs::metadata(active.log_path()).map(|m| m.len()).ok() != Some(size_before) {
                self.offline = true;
            }
            return Err(self.seg_err(e));
        }
        if self
            .epoch_cache
            .assign(header.partition_leader_epoch, header.base_offset)
            && let Err(e) = self.epoch_cache.persist()
        {
            // The batch is in the log: failing the request now would make the client
            // write it twice. The cache is rebuilt from batch headers if its file is
            // unreadable at the next start.
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                "could not persist the leader epoch cache");
        }
        self.producers.update(header, now_ms);
        self.size += header.size() as u64;
        self.unflushed_messages += header.offset_count();
        Ok(())
    }

    /// Appends validated batches, assigning offsets from the log end and stamping the
    /// leader epoch. All or nothing per batch: a failed write leaves no partial batch.
    pub fn append(
        &mut self,
        batches: &[ValidBatch<'_>],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let first_offset = self.log_end_offset();
        let mut bytes = 0u64;
        let mut records = 0i64;
        for batch in batches {
            match self.producers.check(&batch.header) {
                Ok(SequenceCheck::Append) => {}
                Ok(SequenceCheck::Duplicate(meta)) if batches.len() == 1 => {
                    return Ok(AppendInfo {
                        first_offset: meta.first_offset,
                        last_offset: meta.last_offset,
                        log_start_offset: self.log_start_offset,
                        bytes: 0,
                        records: 0,
                        duplicate: true,
                    });
                }
                Ok(SequenceCheck::Duplicate(meta)) => {
                    return Err(self.producer_err(ProducerError::OutOfOrder {
                        producer_id: batch.header.producer_id,
                        epoch: batch.header.producer_epoch,
                        expected: meta.last_seq,
                        got: batch.header.base_sequence,
                    }));
                }
                Err(e) => return Err(self.producer_err(e)),
            }
            let base_offset = self.log_end_offset();
            let mut header = batch.header;
            header.base_offset = base_offset;
            header.partition_leader_epoch = leader_epoch;
            let roll = match self.active() {
                Some(active) => self.should_roll(active, &header, now_ms),
                None => true,
            };
            if roll {
                self.roll()?;
            }
            let prefix = stamp_prefix(batch.bytes, base_offset, leader_epoch);
            let mut parts = [IoSlice::new(&prefix), IoSlice::new(&batch.bytes[16..])];
            self.write_batch(&mut parts, &header, now_ms)?;
            bytes += header.size() as u64;
            records += header.offset_count();
        }
        Ok(AppendInfo {
            first_offset,
            last_offset: self.log_end_offset() - 1,
            log_start_offset: self.log_start_offset,
            bytes,
            records,
            duplicate: false,
        })
    }

    /// Appends batches fetched from the leader as they are: offsets and leader epochs were
    /// assigned there. A trailing incomplete batch (the fetch was cut at its size limit)
    /// is left for the next fetch.
    pub fn append_replicated(&mut self, data: &[u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let first_offset = self.log_end_offset();
        let mut bytes = 0u64;
        let mut records = 0i64;
        for item in super::batch::split_batches(data, super::batch::check_stored) {
            let (range, header) = match item {
                Ok(b) => b,
                Err(super::batch::BatchError::Truncated { .. }) => break,
                Err(e) => {
                    return Err(LogError::BadReplicatedBatch {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        offset: self.log_end_offset(),
                        reason: e.to_string(),
                    });
                }
            };
            let base_offset = header.base_offset;
            // Compaction on the leader can leave gaps, never overlaps.
            if base_offset < self.log_end_offset() {
                return Err(LogError::BadReplicatedBatch {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: base_offset,
                    reason: format!("it starts before the log end {}", self.log_end_offset()),
                });
            }
            let roll = match self.active() {
                Some(active) => {
                    self.should_roll(active, &header, now_ms)
                        || (active.size() > 0 && base_offset != self.log_end_offset())
                }
                None => true,
            };
            if roll {
                self.roll_at(base_offset)?;
            }
            let mut parts = [IoSlice::new(&data[range])];
            self.write_batch(&mut parts, &header, now_ms)?;
            bytes += header.size() as u64;
            records += header.offset_count();
        }
        Ok(AppendInfo {
            first_offset,
            last_offset: self.log_end_offset() - 1,
            log_start_offset: self.log_start_offset,
            bytes,
            records,
            duplicate: false,
        })
    }

    /// A new leader epoch starts at the log end (recorded before any batch of it, so
    /// OffsetForLeaderEpoch answers followers right after the election).
    pub fn start_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        if self.epoch_cache.assign(epoch, leo) {
            self.epoch_cache
                .persist()
                .map_err(|e| self.checkpoint_err(e))?;
        }
        Ok(())
    }

    /// Locates bytes to serve from `offset` up to (excluding) `max_offset`, normally the
    /// high watermark. `Ok(None)` means nothing to return yet.
    pub fn read(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset >= max_offset {
            return Ok(None);
        }
        let mut from = offset;
        for seg in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .map(|(_, s)| s)
            .chain(self.segments.range(offset + 1..).map(|(_, s)| s))
        {
            if seg.base_offset() >= max_offset {
                break;
            }
            if let Some(slice) = seg
                .slice(from, max_offset, max_bytes, min_one_batch)
                .map_err(|e| self.seg_err(e))?
            {
                return Ok(Some(slice));
            }
            from = seg.next_offset();
        }
        Ok(None)
    }

    /// The first batch at or after `min_offset` (and the log start) that holds a record
    /// with a timestamp at or after `timestamp`; its records are then read outside the
    /// log lock (see `records::find_record`).
    pub fn batch_for_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<Candidate>, LogError> {
        let min_offset = min_offset.max(self.log_start_offset);
        for seg in self.segments.values() {
            if seg.next_offset() <= min_offset || seg.max_timestamp() < timestamp {
                continue;
            }
            if let Some((pos, h)) = seg
                .find_batch_by_timestamp(timestamp, min_offset)
                .map_err(|e| self.seg_err(e))?
            {
                return Ok(Some((seg.batch_slice(pos, &h), h, min_offset)));
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp (ListOffsets MAX_TIMESTAMP).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Candidate>, LogError> {
        let best = self
            .segments
            .values()
            .filter(|s| s.next_offset() > self.log_start_offset && s.max_timestamp() >= 0)
            .fold(None::<&Segment>, |best, s| match best {
                Some(b) if b.max_timestamp() >= s.max_timestamp() => Some(b),
                _ => Some(s),
            });
        let Some(seg) = best else {
            return Ok(None);
        };
        Ok(seg
            .translate(seg.offset_of_max_timestamp())
            .map_err(|e| self.seg_err(e))?
            .map(|(pos, h)| (seg.batch_slice(pos, &h), h, self.log_start_offset)))
    }

    /// Advances the log start offset (DeleteRecords). `offset` must not exceed `limit`
    /// (the high watermark). Returns the new log start offset.
    pub fn advance_log_start(&mut self, offset: i64, limit: i64) -> Result<i64, LogError> {
        if offset > limit || offset < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            if self.epoch_cache.truncate_from_start(offset) {
                self.epoch_cache
                    .persist()
                    .map_err(|e| self.checkpoint_err(e))?;
            }
            self.delete_segments_while(limit, |_, s, _| s.next_offset() <= offset)?;
        }
        Ok(self.log_start_offset)
    }

    /// Applies `retention.ms` and `retention.bytes`, never deleting past `limit` (the
    /// high watermark). With remote storage, `uploaded_end` (one past the last offset the
    /// manifest confirms) bounds deletion too and `local.retention.*` applies instead: a
    /// segment leaves the disk only once it is safely in the bucket.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        limit: i64,
        uploaded_end: Option<i64>,
    ) -> Result<RetentionOutcome, LogError> {
        if !self.config.delete {
            return Ok(RetentionOutcome::default());
        }
        let (retention_ms, retention_bytes, limit) = if self.config.remote_storage {
            (
                self.config.local_retention_ms,
                self.config.local_retention_bytes,
                limit.min(uploaded_end.unwrap_or(i64::MIN)),
            )
        } else {
            (self.config.retention_ms, self.config.retention_bytes, limit)
        };
        let total = self.size;
        self.delete_segments_while(limit, |_, s, deleted_so_far| {
            let expired =
                retention_ms >= 0 && now_ms.saturating_sub(s.largest_timestamp()) > retention_ms;
            let oversized =
                retention_bytes >= 0 && total - deleted_so_far >= s.size() + retention_bytes as u64;
            expired || oversized
        })
    }

    /// Deletes the oldest segments while `pred(log, segment, bytes deleted so far)` holds
    /// and the segment is wholly below `limit`. Rolls first if the active segment goes.
    fn delete_segments_while(
        &mut self,
        limit: i64,
        pred: impl Fn(&Self, &Segment, u64) -> bool,
    ) -> Result<RetentionOutcome, LogError> {
        let mut doomed = Vec::new();
        let mut deleted_bytes = 0u64;
        let last = self.segments.keys().next_back().copied();
        for seg in self.segments.values() {
            let is_last = Some(seg.base_offset()) == last;
            if seg.next_offset() > limit || (is_last && seg.is_empty()) {
                break;
            }
            // An empty segment other than the active one holds nothing to keep.
            if !(seg.is_empty() || pred(self, seg, deleted_bytes)) {
                break;
            }
            deleted_bytes += seg.size();
            doomed.push(seg.base_offset());
        }
        if doomed.is_empty() {
            return Ok(RetentionOutcome::default());
        }
        if doomed.len() == self.segments.len() {
            self.roll()?;
        }
        let mut outcome = RetentionOutcome::default();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete().map_err(|e| self.seg_err(e))?;
                self.size -= seg.size();
                outcome.segments_deleted += 1;
                outcome.bytes_deleted += seg.size();
            }
        }
        if let Some(&first) = self.segments.keys().next()
            && first > self.log_start_offset
        {
            self.log_start_offset = first;
            if self.epoch_cache.truncate_from_start(first) {
                self.epoch_cache
                    .persist()
                    .map_err(|e| self.checkpoint_err(e))?;
            }
        }
        Ok(outcome)
    }

    /// Drops every local segment and starts an empty log at `offset`: the remote tier
    /// already holds everything below it (a broker whose disk was lost, or one far behind
    /// the bucket). `epochs` are the leader epochs the remote tier recorded.
    pub fn reset_to(&mut self, offset: i64, epochs: &[(i32, i64)]) -> Result<(), LogError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete().map_err(|e| self.seg_err(e))?;
            }
        }
        let seg = Segment::create(&self.dir, offset).map_err(|e| self.seg_err(e))?;
        self.segments.insert(offset, seg);
        self.size = 0;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.pending_sync.clear();
        self.epoch_cache.clear();
        for (epoch, start) in epochs {
            self.epoch_cache.assign(*epoch, *start);
        }
        self.epoch_cache
            .persist()
            .map_err(|e| self.checkpoint_err(e))?;
        self.rebuild_producer_state()?;
        sync_dir(&self.dir).map_err(|source| LogError::Io {
            path: self.dir.display().to_string(),
            source,
        })
    }

    /// The oldest sealed segment holding offsets at or after `from`, if it lies wholly
    /// below `limit`: the next one to upload. A segment straddling `from` is uploaded
    /// whole (the manifest allows the overlap), never skipped: skipping it would let
    /// local retention delete offsets the bucket does not hold.
    pub fn upload_candidate(&self, from: i64, limit: i64) -> Option<UploadSource> {
        let seg = self.next_to_upload(from, limit)?;
        let (file, size) = seg.file();
        let (index, time_index) = seg.encoded_indexes();
        let (base, next) = (seg.base_offset(), seg.next_offset());
        let entries = self.epoch_cache.entries();
        let mut epochs: Vec<(i32, i64)> = entries
            .iter()
            .rev()
            .find(|(_, start)| *start <= base)
            .map(|(e, _)| vec![(*e, base)])
            .unwrap_or_default();
        epochs.extend(
            entries
                .iter()
                .filter(|(_, start)| *start > base && *start < next),
        );
        Some(UploadSource {
            base_offset: base,
            end_offset: next,
            file,
            size,
            index,
            time_index,
            max_timestamp: seg.max_timestamp(),
            offset_of_max_timestamp: seg.offset_of_max_timestamp(),
            epochs,
        })
    }

    fn next_to_upload(&self, from: i64, limit: i64) -> Option<&Segment> {
        let last = self.segments.keys().next_back().copied();
        self.segments
            .values()
            .find(|s| s.next_offset() > from && Some(s.base_offset()) != last)
            .filter(|s| s.next_offset() <= limit && !s.is_empty())
    }

    /// Whether [`Self::upload_candidate`] would find a segment, without copying indexes.
    pub fn has_upload_candidate(&self, from: i64, limit: i64) -> bool {
        self.next_to_upload(from, limit).is_some()
    }

    /// Bytes of local segments holding offsets at or after `from`: the upload lag.
    pub fn bytes_from(&self, from: i64) -> u64 {
        self.segments
            .values()
            .filter(|s| s.next_offset() > from)
            .map(|s| s.size())
            .sum()
    }

    /// Removes everything at and after `offset` (a follower diverged from its leader, or
    /// recovery found a hole). Returns bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64, LogError> {
        let offset = offset.max(self.log_start_offset);
        if offset >= self.log_end_offset() {
            return Ok(0);
        }
        let mut removed = 0;
        let later: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete().map_err(|e| self.seg_err(e))?;
                removed += seg.size();
            }
        }
        if self.segments.is_empty() {
            let seg = Segment::create(&self.dir, offset).map_err(|e| self.seg_err(e))?;
            self.segments.insert(offset, seg);
        }
        if let Some(active) = self.segments.values_mut().next_back() {
            removed += active
                .truncate_to(offset)
                .map_err(|source| LogError::Segment {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    source,
                })?;
            active.reopen_for_append();
        }
        self.size -= removed;
        self.recovery_point = self.recovery_point.min(self.log_end_offset());
        if self.epoch_cache.truncate_from_end(self.log_end_offset()) {
            self.epoch_cache
                .persist()
                .map_err(|e| self.checkpoint_err(e))?;
        }
        self.rebuild_producer_state()?;
        Ok(removed)
    }

    /// Whether `flush.messages` or `flush.ms` call for an fsync, or a rolled segment
    /// still waits for one.
    pub fn needs_flush(&self) -> bool {
        !self.pending_sync.is_empty()
            || (self.unflushed_messages > 0
                && (self.unflushed_messages >= self.config.flush_messages
                    || self.last_flush.elapsed().as_millis() as i64 >= self.config.flush_ms))
    }

    /// Whether `flush.messages` is reached: the appending request must wait for an fsync.
    pub fn flush_messages_due(&self) -> bool {
        self.unflushed_messages > 0 && self.unflushed_messages >= self.config.flush_messages
    }

    pub fn has_unflushed(&self) -> bool {
        !self.pending_sync.is_empty() || self.recovery_point < self.log_end_offset()
    }

    /// Writes pending index entries and collects what must be fsynced to make everything
    /// up to the current log end durable.
    pub fn begin_flush(&mut self) -> Result<FlushJob, LogError> {
        let upto = self.log_end_offset();
        // Index writes first: if they fail, the queued fsyncs stay queued.
        if let Some(active) = self.segments.values_mut().next_back() {
            active
                .persist_indexes()
                .map_err(|source| LogError::Segment {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    source,
                })?;
        }
        let mut handles = std::mem::take(&mut self.pending_sync);
        if let Some(active) = self.active() {
            handles.push(active.sync_handles());
        }
        self.unflushed_messages = 0;
        self.last_flush = Instant::now();
        Ok(FlushJob {
            handles,
            dir: self.dir.clone(),
            upto,
        })
    }

    pub fn finish_flush(&mut self, upto: i64) {
        self.recovery_point = self.recovery_point.max(upto.min(self.log_end_offset()));
    }

    /// Takes the log offline after a failed fsync. Retrying is not safe: Linux may report
    /// the next fsync of the same file as successful although the pages were lost.
    pub fn mark_offline(&mut self) {
        self.offline = true;
    }

    /// Stops all writes, flushes and retention: the directory is about to be deleted.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Epoch bookkeeping for OffsetForLeaderEpoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Segment files and their sizes, for metrics and tooling.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }
}

/// How many batches a timestamp lookup inspects before giving up; each candidate batch
/// holds a record at or after the timestamp, so more than one is rare.
const MAX_TIMESTAMP_CANDIDATES: usize = 1000;

/// A located batch: its bytes, header, and the lowest offset that may be returned.
pub type Candidate = (FileSlice, BatchHeader, i64);

/// ListOffsets by timestamp: the first record at or after `timestamp`, among offsets the
/// log still holds, as `(offset, timestamp, leader epoch)`. `locate(min_offset)` finds the
/// next candidate batch under the log lock; its records are read here, without the lock.
pub fn offset_for_timestamp(
    timestamp: i64,
    mut locate: impl FnMut(i64) -> Result<Option<Candidate>, LogError>,
) -> Result<Option<(i64, i64, i32)>, LogError> {
    let mut from = i64::MIN;
    for _ in 0..MAX_TIMESTAMP_CANDIDATES {
        let Some((slice, h, min)) = locate(from)? else {
            return Ok(None);
        };
        let found = read_and_find(&slice, &h, |o, t| o >= min && t >= timestamp)?;
        match found {
            Some((o, t)) => return Ok(Some((o, t, h.partition_leader_epoch))),
            None => from = h.next_offset(),
        }
    }
    Ok(None)
}

/// ListOffsets MAX_TIMESTAMP: the first record carrying the batch's max timestamp.
pub fn offset_of_max_timestamp(
    candidate: Option<Candidate>,
) -> Result<Option<(i64, i64, i32)>, LogError> {
    let Some((slice, h, min)) = candidate else {
        return Ok(None);
    };
    let found = read_and_find(&slice, &h, |o, t| o >= min && t >= h.max_timestamp)?;
    Ok(found.map(|(o, t)| (o, t, h.partition_leader_epoch)))
}

fn read_and_find(
    slice: &FileSlice,
    h: &BatchHeader,
    pred: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, LogError> {
    let bytes = slice.read().map_err(|source| LogError::Io {
        path: "segment".into(),
        source,
    })?;
    match records::find_record(h, &bytes, pred) {
        Ok(found) => Ok(found),
        Err(e) => {
            // The batch passed its CRC when written, so this is a producer's malformed
            // records (or a decompression bomb): answer with the batch itself.
            tracing::warn!(base_offset = h.base_offset, error = %e,
                "cannot read the records of a batch for a timestamp lookup; answering with its base offset");
            Ok(Some((h.base_offset, h.max_timestamp)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::{check_produced, check_stored, split_batches, test_util::make_batch};
    use super::*;

    fn open(dir: &Path, config: LogConfig, rp: Option<i64>) -> (PartitionLog, RecoveryReport) {
        PartitionLog::open(dir, Arc::from("t"), 0, config, rp, None).unwrap()
    }

    fn append_batch(log: &mut PartitionLog, count: usize, ts: i64, value_len: usize) -> AppendInfo {
        let b = make_batch(count, ts, value_len);
        let header = check_produced(&b).unwrap();
        log.append(&[ValidBatch { bytes: &b, header }], 0, ts)
            .unwrap()
    }

    fn read_all(log: &PartitionLog, from: i64) -> Vec<BatchHeader> {
        let mut out = vec![];
        let mut offset = from;
        while let Some(slice) = log
            .read(offset, log.log_end_offset(), 1 << 20, true)
            .unwrap()
        {
            let data = slice.read().unwrap();
            for r in split_batches(&data, check_stored) {
                let (_, h) = r.unwrap();
                offset = h.next_offset();
                out.push(h);
            }
        }
        out
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 512,
            ..LogConfig::default()
        }
    }

    #[test]
    fn append_assigns_offsets_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default(), None);
        let a = append_batch(&mut log, 3, 1_000, 10);
        let b = append_batch(&mut log, 2, 1_001, 10);
        assert_eq!((a.first_offset, a.last_offset), (0, 2));
        assert_eq!((b.first_offset, b.last_offset), (3, 4));
        assert_eq!(log.log_end_offset(), 5);
        let batches = read_all(&log, 0);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].base_offset, 3);
        // Reading from the middle of a batch returns the whole batch.
        let batches = read_all(&log, 4);
        assert_eq!(batches[0].base_offset, 3);
        // Reads stop at max_offset (the high watermark).
        let s = log.read(0, 3, 1 << 20, true).unwrap().unwrap();
        assert_eq!(split_batches(&s.read().unwrap(), check_stored).count(), 1);
        assert!(log.read(5, 5, 100, true).unwrap().is_none());
        assert!(matches!(
            log.read(6, 6, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn rolls_segments_by_size_and_reads_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..100 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        assert!(log.segment_count() > 5, "{}", log.segment_count());
        let batches = read_all(&log, 0);
        assert_eq!(batches.len(), 100);
        for (i, h) in batches.iter().enumerate() {
            assert_eq!(h.base_offset, i as i64 * 2);
        }
        for s in log.segments().take(log.segment_count() - 1) {
            assert!(s.is_sealed());
            assert!(s.size() <= 4096);
        }
    }

    #[test]
    fn rolls_by_segment_ms_of_record_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 1_000,
            ..LogConfig::default()
        };
        let (mut log, _) = open(dir.path(), config, None);
        // Old timestamps alone do not roll: what counts is the span between batches.
        let old = now_ms() - 30 * 24 * 3_600_000;
        for i in 0..5 {
            append_batch(&mut log, 1, old + i * 100, 10);
        }
        assert_eq!(log.segment_count(), 1);
        append_batch(&mut log, 1, old + 5_000, 10);
        assert_eq!(log.segment_count(), 2);
    }

    #[test]
    fn retention_by_time_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..100 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let segs = log.segment_count();
        let leo = log.log_end_offset();
        // Nothing is older than a day relative to "now" = 2_000.
        let out = log.apply_retention(2_000, leo, None).unwrap();
        assert_eq!(out, RetentionOutcome::default());

        let mut config = small_segments();
        config.retention_bytes = 8192;
        log.set_config(config.clone());
        let out = log.apply_retention(2_000, leo, None).unwrap();
        assert!(out.segments_deleted > 0);
        assert!(log.size_bytes() <= 8192 + 4096);
        assert!(log.size_bytes() >= 8192);
        assert_eq!(
            log.log_start_offset(),
            log.segments().next().unwrap().base_offset()
        );
        assert!(log.segment_count() < segs);

        // Time: everything older than 10 ms at now = 1_000_000 goes, the active segment too
        // (after a roll), but never past the limit.
        config.retention_bytes = -1;
        config.retention_ms = 10;
        log.set_config(config);
        log.apply_retention(1_000_000, leo, None).unwrap();
        assert_eq!(log.log_start_offset(), leo);
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(log.size_bytes(), 0);
        // Appends continue at the same offsets.
        let a = append_batch(&mut log, 1, 5, 10);
        assert_eq!(a.first_offset, leo);
    }

    #[test]
    fn time_retention_uses_file_time_for_batches_without_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_segments();
        config.retention_ms = 60_000;
        let (mut log, _) = open(dir.path(), config, None);
        // NO_TIMESTAMP (-1) records: the segment's age is its file's modification time.
        for _ in 0..80 {
            append_batch(&mut log, 1, -1, 100);
        }
        append_batch(&mut log, 1, now_ms(), 100);
        let now = now_ms();
        assert_eq!(
            log.apply_retention(now, log.log_end_offset(), None)
                .unwrap()
                .segments_deleted,
            0
        );
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for s in log.segments().take(2) {
            std::fs::File::options()
                .write(true)
                .open(s.log_path())
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let out = log
            .apply_retention(now, log.log_end_offset(), None)
            .unwrap();
        assert_eq!(out.segments_deleted, 2);
    }

    #[test]
    fn empty_middle_segments_are_dropped_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..20 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let leo = log.log_end_offset();
        drop(log);
        // A crash right after a roll, then more segments: an empty one in the middle.
        std::fs::File::create(segment::file_path(dir.path(), leo, "log")).unwrap();
        std::fs::File::create(segment::file_path(dir.path(), leo + 1, "log")).unwrap();
        let (log, report) = open(dir.path(), small_segments(), None);
        assert_eq!(report.segments_removed, 1);
        assert_eq!(log.log_end_offset(), leo + 1);
    }

    #[test]
    fn retention_keeps_uncommitted_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_segments();
        config.retention_ms = 0;
        let (mut log, _) = open(dir.path(), config, None);
        for i in 0..50 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        log.apply_retention(1_000_000, 10, None).unwrap();
        assert!(log.log_start_offset() <= 10);
        assert!(!read_all(&log, log.log_start_offset()).is_empty());
    }

    #[test]
    fn advance_log_start_deletes_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..100 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let leo = log.log_end_offset();
        assert_eq!(log.advance_log_start(51, leo).unwrap(), 51);
        assert!(log.segments().next().unwrap().base_offset() <= 51);
        assert!(matches!(
            log.read(10, leo, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let first = read_all(&log, 51)[0];
        assert!(first.base_offset <= 51 && first.last_offset() >= 51);
        assert!(log.advance_log_start(leo + 1, leo).is_err());
        // Moving backwards is a no-op.
        assert_eq!(log.advance_log_start(20, leo).unwrap(), 51);
    }

    #[test]
    fn timestamp_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..50 {
            // Records of batch i have timestamps 10_000 + 10 i + {0, 1, 2}.
            append_batch(&mut log, 3, 10_000 + i * 10, 50);
        }
        let lookup = |log: &PartitionLog, ts: i64| {
            offset_for_timestamp(ts, |from| log.batch_for_timestamp(ts, from)).unwrap()
        };
        assert_eq!(lookup(&log, 0).unwrap().0, 0);
        let (o, t, _) = lookup(&log, 10_251).unwrap();
        assert_eq!((o, t), (25 * 3 + 1, 10_251));
        let (o, t, _) = lookup(&log, 10_253).unwrap();
        assert_eq!((o, t), (26 * 3, 10_260));
        assert!(lookup(&log, 20_000).is_none());
        let (o, t, _) = offset_of_max_timestamp(log.batch_with_max_timestamp().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((o, t), (149, 10_492));
        // Records below the log start offset are never an answer.
        let leo = log.log_end_offset();
        log.advance_log_start(76, leo).unwrap();
        let (o, t, _) = lookup(&log, 0).unwrap();
        assert_eq!((o, t), (76, 10_251));
    }

    #[test]
    fn reopen_after_clean_flush_trusts_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..60 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let job = log.begin_flush().unwrap();
        job.run().unwrap();
        log.finish_flush(job.upto);
        let rp = log.recovery_point();
        assert_eq!(rp, 120);
        drop(log);
        let (mut log, report) = open(dir.path(), small_segments(), Some(rp));
        assert_eq!(
            report.segments_scanned, 1,
            "only the active segment is scanned"
        );
        assert!(report.corruption.is_none());
        assert_eq!(log.log_end_offset(), 120);
        let a = append_batch(&mut log, 1, 5_000, 10);
        assert_eq!(a.first_offset, 120);
        assert_eq!(read_all(&log, 0).len(), 61);
    }

    #[test]
    fn recovery_truncates_torn_tail_and_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..60 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let second = log.segments().nth(1).unwrap().log_path().to_path_buf();
        let second_base = log.segments().nth(1).unwrap().base_offset();
        drop(log);
        // Tear the second segment: cut its last batch in half.
        let len = std::fs::metadata(&second).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&second)
            .unwrap();
        f.set_len(len - 50).unwrap();
        drop(f);
        let (log, report) = open(dir.path(), small_segments(), None);
        assert!(report.corruption.is_some(), "{report:?}");
        assert!(report.segments_removed > 0);
        assert_eq!(log.segment_count(), 2);
        let batches = read_all(&log, 0);
        let last = batches.last().unwrap();
        assert_eq!(last.next_offset(), log.log_end_offset());
        assert!(log.log_end_offset() > second_base);
        // Everything still present is contiguous from 0.
        let mut expect = 0;
        for h in batches {
            assert_eq!(h.base_offset, expect);
            expect = h.next_offset();
        }
    }

    #[test]
    fn recovery_after_garbage_appended_to_flushed_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default(), None);
        for i in 0..10 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let job = log.begin_flush().unwrap();
        job.run().unwrap();
        log.finish_flush(job.upto);
        let path = log.segments().next().unwrap().log_path().to_path_buf();
        drop(log);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0x5A; 333]).unwrap();
        drop(f);
        // Even with everything "flushed", the bytes past the recovery point are checked.
        let (mut log, report) = open(dir.path(), LogConfig::default(), Some(20));
        assert_eq!(report.truncated_bytes, 333);
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(read_all(&log, 0).len(), 10);
        assert_eq!(append_batch(&mut log, 1, 5, 1).first_offset, 20);
    }

    #[test]
    fn epoch_cache_tracks_appends_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), LogConfig::default(), None);
        let b = make_batch(2, 1, 1);
        let header = check_produced(&b).unwrap();
        let vb = [ValidBatch { bytes: &b, header }];
        log.append(&vb, 0, 1).unwrap();
        log.append(&vb, 0, 1).unwrap();
        log.append(&vb, 3, 1).unwrap();
        assert_eq!(log.end_offset_for_epoch(0), (0, 4));
        assert_eq!(log.end_offset_for_epoch(3), (3, 6));
        drop(log);
        std::fs::remove_file(dir.path().join(EPOCH_FILE)).unwrap();
        let (log, _) = open(dir.path(), LogConfig::default(), None);
        assert_eq!(log.epoch_cache().entries(), &[(0, 0), (3, 4)]);
    }

    #[test]
    fn truncate_to_offset_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..60 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        log.truncate_to(31).unwrap();
        assert_eq!(log.log_end_offset(), 30);
        let a = append_batch(&mut log, 1, 1, 1);
        assert_eq!(a.first_offset, 30);
        assert_eq!(read_all(&log, 0).len(), 16);
    }

    #[test]
    fn tiered_retention_waits_for_uploads_and_uses_local_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_segments();
        config.remote_storage = true;
        config.retention_bytes = -1;
        config.local_retention_bytes = 8192;
        let (mut log, _) = open(dir.path(), config, None);
        for i in 0..100 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let leo = log.log_end_offset();
        // Nothing uploaded: nothing goes, however large the log.
        let out = log.apply_retention(2_000, leo, None).unwrap();
        assert_eq!(out, RetentionOutcome::default());
        // Uploaded up to the third segment's end: at most those go.
        let third_end = log.segments().nth(2).unwrap().next_offset();
        let out = log.apply_retention(2_000, leo, Some(third_end)).unwrap();
        assert_eq!(out.segments_deleted, 3);
        assert_eq!(log.log_start_offset(), third_end);
        // Everything uploaded: local.retention.bytes bounds the local log.
        log.apply_retention(2_000, leo, Some(leo)).unwrap();
        assert!(log.size_bytes() <= 8192 + 4096, "{}", log.size_bytes());
    }

    #[test]
    fn upload_candidates_are_sealed_committed_segments_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        for i in 0..40 {
            append_batch(&mut log, 2, 1_000 + i, 100);
        }
        let segs: Vec<(i64, i64)> = log
            .segments()
            .map(|s| (s.base_offset(), s.next_offset()))
            .collect();
        assert!(segs.len() >= 3);
        let leo = log.log_end_offset();
        let first = log.upload_candidate(i64::MIN, leo).unwrap();
        assert_eq!((first.base_offset, first.end_offset), segs[0]);
        assert_eq!(first.size, log.segments().next().unwrap().size());
        assert!(!first.index.is_empty() || first.size < 4096);
        assert_eq!(first.epochs, vec![(0, 0)]);
        let second = log.upload_candidate(first.end_offset, leo).unwrap();
        assert_eq!(second.base_offset, segs[1].0);
        // Not committed yet (high watermark inside it): not a candidate.
        assert!(log.upload_candidate(segs[1].0, segs[1].1 - 1).is_none());
        // The active segment never is.
        assert!(log.upload_candidate(segs[segs.len() - 1].0, leo).is_none());
        assert_eq!(log.bytes_from(segs[1].0), log.size_bytes() - first.size);
    }

    #[test]
    fn reset_to_starts_an_empty_log_at_the_remote_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), small_segments(), None);
        append_batch(&mut log, 3, 1_000, 100);
        log.reset_to(5_000, &[(0, 0), (2, 4_000)]).unwrap();
        assert_eq!(log.log_start_offset(), 5_000);
        assert_eq!(log.log_end_offset(), 5_000);
        assert_eq!(log.size_bytes(), 0);
        assert_eq!(log.epoch_cache().entries(), &[(0, 0), (2, 4_000)]);
        let info = append_batch(&mut log, 2, 2_000, 10);
        assert_eq!(info.first_offset, 5_000);
        drop(log);
        // Survives a reopen.
        let (log, _) = open(dir.path(), small_segments(), None);
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (5_000, 5_002)
        );
    }
}
