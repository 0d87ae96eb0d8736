//! A partition replica hosted by this broker: its log plus the leadership state
//! (leader epoch, ISR, high watermark) that decides what may be written and read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::partition_log::{self, FlushJob};
use crate::log::producer_state::ProducerError;
use crate::log::segment::FileSlice;
use crate::log::validate::PreparedBatch;
use crate::log::{AppendInfo, LogConfig, LogError, PartitionLog};
use crate::metadata::PartitionState;

/// Why a partition operation failed, with the Kafka error code clients act on.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("this broker is not the leader of {topic}-{partition} (leader {leader})")]
    NotLeader {
        topic: Arc<str>,
        partition: i32,
        leader: i32,
    },
    #[error("leader epoch {requested} is older than the current epoch {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("leader epoch {requested} is newer than the current epoch {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("{in_sync} replicas in sync, min.insync.replicas is {required}")]
    NotEnoughReplicas { in_sync: usize, required: i32 },
    #[error(
        "the remote tier manifest of {topic}-{partition} is not loaded yet (object store unreachable?)"
    )]
    RemoteNotLoaded { topic: Arc<str>, partition: i32 },
    #[error(
        "offset {offset} of {topic}-{partition} is only in the remote tier (local log starts at {local_start})"
    )]
    MovedToTieredStorage {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        local_start: i64,
    },
    #[error("broker {replica} is not a replica of {topic}-{partition}")]
    NotReplica {
        topic: Arc<str>,
        partition: i32,
        replica: i32,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

impl PartitionError {
    pub fn error_code(&self) -> i16 {
        match self {
            PartitionError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
            PartitionError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
            PartitionError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch.code(),
            PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
            // Retriable for every client, as for a partition whose leader is still loading.
            PartitionError::RemoteNotLoaded { .. } => ResponseError::NotLeaderOrFollower.code(),
            PartitionError::MovedToTieredStorage { .. } => {
                ResponseError::OffsetMovedToTieredStorage.code()
            }
            PartitionError::NotReplica { .. } => ResponseError::NotLeaderOrFollower.code(),
            PartitionError::Log(LogError::OffsetOutOfRange { .. }) => {
                ResponseError::OffsetOutOfRange.code()
            }
            PartitionError::Log(LogError::Closed { .. }) => {
                ResponseError::NotLeaderOrFollower.code()
            }
            PartitionError::Log(LogError::Producer { source, .. }) => match source {
                ProducerError::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
                ProducerError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
            },
            PartitionError::Log(_) => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// Leadership as last committed to the metadata log.
#[derive(Debug, Clone)]
pub struct Leadership {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas a reassignment is adding (their catch-up is throttled).
    pub adding: Vec<i32>,
}

impl From<&PartitionState> for Leadership {
    fn from(p: &PartitionState) -> Self {
        Self {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            adding: p.adding.clone(),
        }
    }
}

/// Counters exported per partition; updated with relaxed atomics on the hot path.
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    pub bytes_in: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// What this broker knows of the partition's remote tier (kept by `tiered::TierManager`).
#[derive(Debug, Clone, Default)]
pub struct RemoteView {
    /// The manifest was read (or found absent): offsets below the local log start are
    /// known to be remote or gone. Until then they are neither served nor refused.
    pub loaded: bool,
    /// First offset readable from the bucket (valid when `segments > 0`).
    pub start: i64,
    /// One past the last uploaded offset (valid when `segments > 0`).
    pub end: i64,
    /// Leader epochs of the first and last remote batches (ListOffsets answers).
    pub start_epoch: i32,
    pub end_epoch: i32,
    pub size_bytes: u64,
    pub segments: usize,
    /// Local bytes not yet in the bucket, and since when a sealed segment has waited.
    pub lag_bytes: u64,
    pub lag_since_ms: Option<i64>,
    /// DeleteRecords into the remote range: applied to the manifest by the next pass.
    pub requested_start: i64,
    /// The last upload, load or delete error, cleared by the next success.
    pub last_error: Option<String>,
}

impl RemoteView {
    pub fn has_data(&self) -> bool {
        self.loaded && self.segments > 0
    }

    /// The remote tier's first offset, after DeleteRecords.
    pub fn effective_start(&self) -> i64 {
        self.start.max(self.requested_start)
    }
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy, Default)]
struct FollowerState {
    /// The follower's log end: its last fetch offset; -1 until it fetched under this leader.
    leo: i64,
    last_fetch_ms: i64,
    /// The leader's log end at that fetch.
    last_fetch_leader_leo: i64,
    /// Last time the follower had everything the leader had.
    last_caught_up_ms: i64,
}

/// An ISR change sent to the controller and not answered by new metadata yet.
#[derive(Debug, Clone)]
struct PendingIsr {
    /// Union of every ISR proposed since the last committed change.
    isr: Vec<i32>,
    since_ms: i64,
}

/// A proposal whose outcome is unknown (the quorum timed out) is sent again after this.
const ISR_CHANGE_RETRY_MS: i64 = 5_000;

/// An ISR change a leader wants to propose to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    pub shrunk: Vec<i32>,
    pub expanded: Vec<i32>,
}

/// Offsets a fetch response reports alongside the data.
#[derive(Debug, Clone, Copy)]
pub struct LogOffsets {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug)]
pub struct ReadResult {
    pub offsets: LogOffsets,
    pub slice: Option<FileSlice>,
    /// The offset is only in the remote tier: read it there (`slice` is `None`).
    pub remote: bool,
}

#[derive(Debug)]
pub struct AppendOutcome {
    pub info: AppendInfo,
    pub leader_epoch: i32,
    /// `flush.messages` was reached: the produce response waits for [`Partition::flush`].
    pub flush_due: bool,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    /// The `log.dirs` entry holding this partition.
    pub log_root: PathBuf,
    broker_id: i32,
    log: Mutex<PartitionLog>,
    /// One flush at a time: a later job finishing first must not move the recovery point
    /// over data an earlier job has not synced yet.
    flush_lock: Mutex<()>,
    config: RwLock<Arc<LogConfig>>,
    leadership: RwLock<Leadership>,
    high_watermark: AtomicI64,
    hw_tx: watch::Sender<i64>,
    /// Log end offset, for follower fetches waiting on new appends.
    leo_tx: watch::Sender<i64>,
    followers: Mutex<HashMap<i32, FollowerState>>,
    /// Log end when this broker became leader: followers must reach it to join the ISR.
    leader_epoch_start: AtomicI64,
    /// The ISR of an AlterPartition in flight; no other is proposed until the metadata
    /// answers. Until then the high watermark counts the union of both ISRs (Kafka's
    /// "maximal ISR"): a joining follower is never behind what is committed once it
    /// is in the ISR, so it can take over leadership without losing acknowledged records.
    pending_isr: Mutex<Option<PendingIsr>>,
    remote: Mutex<RemoteView>,
    pub metrics: PartitionMetrics,
}

impl Partition {
    pub fn new(
        topic_id: Uuid,
        log_root: PathBuf,
        broker_id: i32,
        log: PartitionLog,
        leadership: Leadership,
        checkpointed_hw: Option<i64>,
    ) -> Self {
        let leo = log.log_end_offset();
        // A sole replica has everything it holds committed; otherwise only what the
        // checkpoint says was.
        let hw = if leadership.isr == [broker_id] {
            leo
        } else {
            checkpointed_hw
                .unwrap_or(0)
                .clamp(log.log_start_offset(), leo)
        };
        let (hw_tx, _) = watch::channel(hw);
        let (leo_tx, _) = watch::channel(leo);
        let initial = leadership.clone();
        let p = Self {
            topic: log.topic().clone(),
            index: log.partition(),
            topic_id,
            log_root,
            broker_id,
            config: RwLock::new(Arc::new(log.config().clone())),
            log: Mutex::new(log),
            flush_lock: Mutex::new(()),
            leadership: RwLock::new(Leadership {
                leader: -1,
                leader_epoch: -1,
                ..leadership
            }),
            high_watermark: AtomicI64::new(hw),
            hw_tx,
            leo_tx,
            followers: Mutex::new(HashMap::new()),
            leader_epoch_start: AtomicI64::new(leo),
            pending_isr: Mutex::new(None),
            remote: Mutex::new(RemoteView::default()),
            metrics: PartitionMetrics::default(),
        };
        p.set_leadership(initial);
        p
    }

    pub fn config(&self) -> Arc<LogConfig> {
        self.config.read().clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        if **self.config.read() == config {
            return;
        }
        self.log.lock().set_config(config.clone());
        *self.config.write() = Arc::new(config);
    }

    pub fn leadership(&self) -> Leadership {
        self.leadership.read().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.read().leader == self.broker_id
    }

    /// Applies committed leadership. Becoming leader (or a new epoch of it) starts a new
    /// leader epoch at the log end and resets what is known of the followers.
    pub fn set_leadership(&self, l: Leadership) {
        let now = crate::broker::now_ms();
        // Everything a new leadership resets happens under the write lock, so a high
        // watermark computed concurrently never mixes it with the previous term's state.
        let mut cur = self.leadership.write();
        let became_leader = l.leader == self.broker_id
            && (cur.leader != self.broker_id || cur.leader_epoch != l.leader_epoch);
        if cur.partition_epoch != l.partition_epoch || cur.leader_epoch != l.leader_epoch {
            *self.pending_isr.lock() = None;
        }
        if became_leader || l.leader != self.broker_id {
            self.followers.lock().clear();
        }
        *cur = l.clone();
        if became_leader {
            let leo = {
                let mut log = self.log.lock();
                if let Err(e) = log.start_leader_epoch(l.leader_epoch) {
                    tracing::error!(topic = %self.topic, partition = self.index, error = %e,
                        "could not persist the leader epoch cache");
                }
                log.log_end_offset()
            };
            self.leader_epoch_start.store(leo, Ordering::Release);
            let mut f = self.followers.lock();
            for r in l.replicas.iter().filter(|r| **r != self.broker_id) {
                f.insert(
                    *r,
                    FollowerState {
                        leo: -1,
                        last_fetch_leader_leo: -1,
                        // ISR members get a full lag window to show up.
                        last_caught_up_ms: if l.isr.contains(r) { now } else { 0 },
                        last_fetch_ms: 0,
                    },
                );
            }
            drop(f);
            tracing::info!(topic = %self.topic, partition = self.index, leader_epoch = l.leader_epoch,
                log_end_offset = leo, high_watermark = self.high_watermark(), isr = ?l.isr, "became leader");
        }
        drop(cur);
        self.recompute_high_watermark();
        // Wakes acks=all waits, which fail if this broker no longer leads in their epoch.
        self.hw_tx.send_modify(|_| {});
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Notified whenever the high watermark moves: what long-polling fetches wait on.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Notified whenever the log end moves: what follower fetches wait on.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    /// As leader: the high watermark is the smallest log end among the ISR. It never
    /// moves back, and does not move while an ISR member's log end is unknown.
    fn recompute_high_watermark(&self) {
        let l = self.leadership.read();
        if l.leader != self.broker_id {
            return;
        }
        let mut hw = self.log.lock().log_end_offset();
        // Held until the new value is stored, so an ISR change being proposed is either
        // seen here or sees the result (`begin_isr_change`).
        let pending = self.pending_isr.lock();
        let mut members = l.isr.clone();
        if let Some(p) = pending.as_ref() {
            members.extend(p.isr.iter().filter(|r| !l.isr.contains(r)));
        }
        {
            let f = self.followers.lock();
            for r in members.iter().filter(|r| **r != self.broker_id) {
                match f.get(r) {
                    Some(s) if s.leo >= 0 => hw = hw.min(s.leo),
                    _ => return,
                }
            }
        }
        drop(l);
        let moved = self.high_watermark.fetch_max(hw, Ordering::AcqRel) < hw;
        drop(pending);
        if moved {
            self.hw_tx.send_replace(hw);
        }
    }

    /// Follower-side changes are made only while this broker follows in `epoch`: a
    /// fetcher's answer arriving after a leadership change must not touch the log. The
    /// returned guard is held across the change.
    fn following(
        &self,
        epoch: i32,
    ) -> Result<parking_lot::RwLockReadGuard<'_, Leadership>, PartitionError> {
        let l = self.leadership.read();
        if l.leader == self.broker_id || l.leader_epoch != epoch {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                partition: self.index,
                leader: l.leader,
            });
        }
        Ok(l)
    }

    /// As follower in `epoch`: the leader's high watermark, bounded by what this replica
    /// has.
    pub fn set_follower_high_watermark(&self, leader_hw: i64, epoch: i32) {
        let Ok(_following) = self.following(epoch) else {
            return;
        };
        let hw = leader_hw.min(self.log.lock().log_end_offset());
        if self.high_watermark.swap(hw, Ordering::AcqRel) != hw {
            self.hw_tx.send_replace(hw);
        }
    }

    /// Leader side of a follower fetch at `offset` (the follower has everything below):
    /// tracks its progress, may advance the high watermark. Kafka's rule for "caught
    /// up": it fetched at the log end, or at least at the log end of its previous fetch.
    fn follower_fetched(
        &self,
        lead: &Leadership,
        follower: i32,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        if !lead.replicas.contains(&follower) {
            return Err(PartitionError::NotReplica {
                topic: self.topic.clone(),
                partition: self.index,
                replica: follower,
            });
        }
        let leo = self.log.lock().log_end_offset();
        {
            let mut f = self.followers.lock();
            let s = f.entry(follower).or_insert(FollowerState {
                leo: -1,
                last_fetch_leader_leo: -1,
                ..Default::default()
            });
            if offset >= leo {
                s.last_caught_up_ms = now_ms;
            } else if s.last_fetch_leader_leo >= 0 && offset >= s.last_fetch_leader_leo {
                s.last_caught_up_ms = s.last_caught_up_ms.max(s.last_fetch_ms);
            }
            s.leo = offset.min(leo);
            s.last_fetch_ms = now_ms;
            s.last_fetch_leader_leo = leo;
        }
        self.recompute_high_watermark();
        Ok(())
    }

    /// The ISR this leader wants: members that fell behind for `lag_max_ms` leave,
    /// followers that caught up (to the high watermark and this leader's epoch start)
    /// join if `eligible` (not fenced). `None` when nothing changes or a change is
    /// already in flight.
    pub fn desired_isr(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        if self
            .pending_isr
            .lock()
            .as_ref()
            .is_some_and(|p| now_ms - p.since_ms < ISR_CHANGE_RETRY_MS)
        {
            return None;
        }
        let l = self.leadership.read().clone();
        if l.leader != self.broker_id {
            return None;
        }
        let hw = self.high_watermark();
        let epoch_start = self.leader_epoch_start.load(Ordering::Acquire);
        let f = self.followers.lock();
        let mut shrunk = Vec::new();
        let mut expanded = Vec::new();
        for r in l.replicas.iter().filter(|r| **r != self.broker_id) {
            let Some(s) = f.get(r) else { continue };
            let in_isr = l.isr.contains(r);
            if in_isr && now_ms - s.last_caught_up_ms > lag_max_ms {
                shrunk.push(*r);
            } else if !in_isr
                && eligible(*r)
                && s.leo >= hw
                && s.leo >= epoch_start
                && now_ms - s.last_caught_up_ms <= lag_max_ms
            {
                expanded.push(*r);
            }
        }
        drop(f);
        if shrunk.is_empty() && expanded.is_empty() {
            return None;
        }
        let isr: Vec<i32> = l
            .replicas
            .iter()
            .copied()
            .filter(|r| (l.isr.contains(r) && !shrunk.contains(r)) || expanded.contains(r))
            .collect();
        Some(IsrChange {
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            isr,
            shrunk,
            expanded,
        })
    }

    /// Marks `change` as proposed. False (and nothing pending) if a follower it adds fell
    /// below the high watermark meanwhile: once pending, the high watermark waits for it.
    pub fn begin_isr_change(&self, change: &IsrChange, now_ms: i64) -> bool {
        let mut pending = self.pending_isr.lock();
        let hw = self.high_watermark();
        let f = self.followers.lock();
        let behind = change
            .expanded
            .iter()
            .any(|r| f.get(r).is_none_or(|s| s.leo < hw));
        if !behind {
            // A proposal whose fate is unknown may still commit: keep counting its members.
            let mut isr = pending.take().map(|p| p.isr).unwrap_or_default();
            isr.extend(
                change
                    .isr
                    .iter()
                    .filter(|r| !isr.contains(r))
                    .copied()
                    .collect::<Vec<_>>(),
            );
            *pending = Some(PendingIsr {
                isr,
                since_ms: now_ms,
            });
        }
        !behind
    }

    /// The controller refused the proposed ISR change (stale epochs, invalid ISR): it
    /// will never commit.
    pub fn abort_isr_change(&self) {
        *self.pending_isr.lock() = None;
        self.recompute_high_watermark();
    }

    /// As follower in `epoch`: appends what the leader sent.
    pub fn append_as_follower(
        &self,
        data: &[u8],
        now_ms: i64,
        epoch: i32,
    ) -> Result<AppendInfo, PartitionError> {
        let _following = self.following(epoch)?;
        let (info, leo) = {
            let mut log = self.log.lock();
            let info = log.append_replicated(data, now_ms)?;
            (info, log.log_end_offset())
        };
        if info.bytes > 0 {
            self.metrics
                .bytes_in
                .fetch_add(info.bytes, Ordering::Relaxed);
            self.leo_tx.send_replace(leo);
        }
        Ok(info)
    }

    /// As follower in `epoch`: drops everything from `offset` on (a diverged tail).
    pub fn truncate_to(&self, offset: i64, epoch: i32) -> Result<u64, PartitionError> {
        let _following = self.following(epoch)?;
        let mut log = self.log.lock();
        let before = log.log_end_offset();
        let removed = log.truncate_to(offset)?;
        let leo = log.log_end_offset();
        drop(log);
        if removed > 0 || leo != before {
            tracing::info!(topic = %self.topic, partition = self.index, from = before, to = leo,
                bytes = removed, "truncated the log to the leader's");
            self.leo_tx.send_replace(leo);
        }
        if self.high_watermark() > leo {
            self.high_watermark.store(leo, Ordering::Release);
            self.hw_tx.send_replace(leo);
        }
        Ok(removed)
    }

    /// As follower in `epoch`: starts the log over at `offset` (the leader no longer has
    /// what this replica would need next, or it is in the remote tier).
    pub fn restart_log_at(&self, offset: i64, epoch: i32) -> Result<(), PartitionError> {
        let _following = self.following(epoch)?;
        let mut log = self.log.lock();
        tracing::info!(topic = %self.topic, partition = self.index, from = log.log_end_offset(),
            to = offset, "starting the local log over at the leader's start");
        log.reset_to(offset, &[])?;
        let leo = log.log_end_offset();
        drop(log);
        self.leo_tx.send_replace(leo);
        self.high_watermark.store(leo, Ordering::Release);
        self.hw_tx.send_replace(leo);
        Ok(())
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    /// `(latest epoch, end offset for it)` of this replica's log, for truncation.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.lock().epoch_cache().latest_epoch()
    }

    pub fn local_end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.lock().end_offset_for_epoch(epoch)
    }

    /// Reads for a follower: everything up to the log end, not just the committed part.
    /// `follower`'s progress counts only once the leader epoch it follows is checked (a
    /// follower of an older epoch may hold a different tail).
    pub fn read_for_follower(
        &self,
        follower: i32,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        current_leader_epoch: i32,
    ) -> Result<ReadResult, PartitionError> {
        let lead = self.check_leader(current_leader_epoch)?;
        self.follower_fetched(&lead, follower, offset, crate::broker::now_ms())?;
        let hw = self.high_watermark();
        let log = self.log.lock();
        let offsets = self.offsets_of(&log, hw);
        let local_start = log.log_start_offset();
        if offset < local_start {
            let r = self.remote.lock();
            if r.has_data() && offset >= r.effective_start() {
                return Err(PartitionError::MovedToTieredStorage {
                    topic: self.topic.clone(),
                    partition: self.index,
                    offset,
                    local_start,
                });
            }
        }
        let slice = log.read(offset, log.log_end_offset(), max_bytes, min_one_batch)?;
        Ok(ReadResult {
            offsets,
            slice,
            remote: false,
        })
    }

    fn check_leader(&self, current_leader_epoch: i32) -> Result<Leadership, PartitionError> {
        let l = self.leadership.read();
        if l.leader != self.broker_id {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                partition: self.index,
                leader: l.leader,
            });
        }
        if current_leader_epoch >= 0 {
            if current_leader_epoch < l.leader_epoch {
                return Err(PartitionError::FencedLeaderEpoch {
                    requested: current_leader_epoch,
                    current: l.leader_epoch,
                });
            }
            if current_leader_epoch > l.leader_epoch {
                return Err(PartitionError::UnknownLeaderEpoch {
                    requested: current_leader_epoch,
                    current: l.leader_epoch,
                });
            }
        }
        Ok(l.clone())
    }

    /// Appends prepared batches as leader.
    pub fn append(
        &self,
        batches: &[PreparedBatch],
        acks: i16,
        now_ms: i64,
    ) -> Result<AppendOutcome, PartitionError> {
        let lead = self.check_leader(-1)?;
        let config = self.config();
        if acks == -1 && (lead.isr.len() as i32) < config.min_insync_replicas {
            return Err(PartitionError::NotEnoughReplicas {
                in_sync: lead.isr.len(),
                required: config.min_insync_replicas,
            });
        }
        if config.remote_storage
            && !self.remote.lock().loaded
            && self.log.lock().log_end_offset() == 0
        {
            // An empty local log may be a lost disk: the bucket may hold offsets this log
            // would hand out again. Writes wait for the manifest.
            return Err(PartitionError::RemoteNotLoaded {
                topic: self.topic.clone(),
                partition: self.index,
            });
        }
        let valid: smallvec_like::Batches<'_> = smallvec_like::Batches::new(batches);
        let (info, flush_due, leo) = {
            let mut log = self.log.lock();
            let info = log.append(valid.as_slice(), lead.leader_epoch, now_ms)?;
            (info, log.flush_messages_due(), log.log_end_offset())
        };
        if info.duplicate {
            return Ok(AppendOutcome {
                info,
                leader_epoch: lead.leader_epoch,
                flush_due: false,
            });
        }
        self.metrics
            .bytes_in
            .fetch_add(info.bytes, Ordering::Relaxed);
        self.metrics
            .messages_in
            .fetch_add(info.records as u64, Ordering::Relaxed);
        self.leo_tx.send_replace(leo);
        self.recompute_high_watermark();
        let info = AppendInfo {
            log_start_offset: self.log_start_with_remote(info.log_start_offset),
            ..info
        };
        Ok(AppendOutcome {
            info,
            leader_epoch: lead.leader_epoch,
            flush_due,
        })
    }

    /// fsyncs what the flush policy calls for (or, with `force`, everything unflushed) and
    /// advances the recovery point. Blocking. Returns whether anything was flushed. A
    /// failed fsync takes the log offline.
    pub fn flush(&self, force: bool) -> Result<bool, LogError> {
        let _one_at_a_time = self.flush_lock.lock();
        let job: FlushJob = {
            let mut log = self.log.lock();
            if log.is_closed() {
                return Ok(false);
            }
            if log.is_offline() {
                return Err(LogError::Offline {
                    topic: self.topic.clone(),
                    partition: self.index,
                });
            }
            if !(log.needs_flush() || (force && log.has_unflushed())) {
                return Ok(false);
            }
            log.begin_flush()?
        };
        match job.run() {
            Ok(()) => {
                self.log.lock().finish_flush(job.upto);
                Ok(true)
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e,
                    "fsync failed; taking the partition log offline (restart the broker once the disk is healthy)");
                self.log.lock().mark_offline();
                Err(e)
            }
        }
    }

    pub fn is_offline(&self) -> bool {
        self.log.lock().is_offline()
    }

    /// Deleted or moved off this broker.
    pub fn is_closed(&self) -> bool {
        self.log.lock().is_closed()
    }

    /// Offsets below this are on disk.
    pub fn recovery_point(&self) -> i64 {
        self.log.lock().recovery_point()
    }

    /// Stops writes to this partition's directory before it is deleted or moved.
    pub fn close(&self) {
        self.log.lock().close();
    }

    pub fn offsets(&self) -> LogOffsets {
        let hw = self.high_watermark();
        self.offsets_of(&self.log.lock(), hw)
    }

    fn offsets_of(&self, log: &PartitionLog, high_watermark: i64) -> LogOffsets {
        LogOffsets {
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: self.log_start_with_remote(log.log_start_offset()),
            log_end_offset: log.log_end_offset(),
        }
    }

    /// The log start offset clients see: the remote tier's start when it holds older data.
    fn log_start_with_remote(&self, local_start: i64) -> i64 {
        let r = self.remote.lock();
        if r.has_data() && r.start < local_start {
            r.effective_start().min(local_start)
        } else {
            local_start
        }
    }

    pub fn remote_view(&self) -> RemoteView {
        self.remote.lock().clone()
    }

    pub fn update_remote<T>(&self, f: impl FnOnce(&mut RemoteView) -> T) -> T {
        f(&mut self.remote.lock())
    }

    /// The local log start offset (ListOffsets EARLIEST_LOCAL, the remote tier's upper
    /// bound of interest).
    pub fn local_log_start(&self) -> i64 {
        self.log.lock().log_start_offset()
    }

    /// The next segment to upload at or after `from`, if it is sealed and committed.
    /// Only committed data that is also on disk locally is uploaded: after any crash the
    /// local log then still reaches the remote end, so it is never behind the bucket
    /// unless it is empty (a lost disk), which writes wait for.
    pub fn upload_candidate(&self, from: i64) -> Option<partition_log::UploadSource> {
        let hw = self.high_watermark();
        let log = self.log.lock();
        if log.is_closed() || log.is_offline() {
            return None;
        }
        log.upload_candidate(from, hw.min(log.recovery_point()))
    }

    /// Whether a sealed, committed, flushed segment after `from` waits for upload.
    pub fn upload_pending(&self, from: i64) -> bool {
        let hw = self.high_watermark();
        let log = self.log.lock();
        log.has_upload_candidate(from, hw.min(log.recovery_point()))
    }

    /// (local start, local bytes, local bytes at or after `from`).
    pub fn local_usage(&self, from: i64) -> (i64, u64, u64) {
        let log = self.log.lock();
        (
            log.log_start_offset(),
            log.size_bytes(),
            log.bytes_from(from),
        )
    }

    /// Starts the local log over at `offset` when the bucket already holds everything
    /// below it and more than the local log (a wiped disk). Returns whether it did.
    pub fn catch_up_to_remote(&self, offset: i64, epochs: &[(i32, i64)]) -> Result<bool, LogError> {
        let mut log = self.log.lock();
        if log.log_end_offset() >= offset || log.is_closed() {
            return Ok(false);
        }
        tracing::warn!(topic = %self.topic, partition = self.index,
            local_log_end = log.log_end_offset(), remote_end = offset,
            "local log ends before the remote tier: starting the local log at the remote end; older data is served from the bucket");
        log.reset_to(offset, epochs)?;
        let leo = log.log_end_offset();
        drop(log);
        if self.high_watermark.fetch_max(leo, Ordering::AcqRel) < leo {
            self.hw_tx.send_replace(leo);
        }
        Ok(true)
    }

    /// The partition's offsets, after the leader checks of a read.
    pub fn fetch_offsets(&self, current_leader_epoch: i32) -> Result<LogOffsets, PartitionError> {
        self.check_leader(current_leader_epoch)?;
        Ok(self.offsets())
    }

    /// Locates data for a consumer fetch; only committed data (below the high watermark)
    /// is visible.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        current_leader_epoch: i32,
    ) -> Result<ReadResult, PartitionError> {
        self.check_leader(current_leader_epoch)?;
        let hw = self.high_watermark();
        let log = self.log.lock();
        let offsets = self.offsets_of(&log, hw);
        let mut offset = offset;
        let local_start = log.log_start_offset();
        if offset < local_start {
            // Decided under the log lock, so local retention cannot delete the data between
            // this check and the read.
            let r = self.remote.lock();
            if !r.loaded && self.config().remote_storage {
                return Err(PartitionError::RemoteNotLoaded {
                    topic: self.topic.clone(),
                    partition: self.index,
                });
            }
            if r.has_data() && offset >= r.effective_start() {
                if offset < r.end {
                    return Ok(ReadResult {
                        offsets,
                        slice: None,
                        remote: true,
                    });
                }
                // Between the remote end and a later local start (data lost before its
                // upload): continue at the local start, as Kafka skips to the next batch.
                offset = local_start;
            }
        }
        let slice = log.read(offset, hw, max_bytes, min_one_batch)?;
        Ok(ReadResult {
            offsets,
            slice,
            remote: false,
        })
    }

    /// ListOffsets: `(offset, timestamp, leader epoch)` for a timestamp or one of Kafka's
    /// special values (-1 latest, -2 earliest, -3 max timestamp, -4 earliest local,
    /// -5 latest tiered).
    pub fn list_offset(
        &self,
        timestamp: i64,
        current_leader_epoch: i32,
    ) -> Result<(i64, i64, i32), PartitionError> {
        let lead = self.check_leader(current_leader_epoch)?;
        let hw = self.high_watermark();
        let committed = |found: Option<(i64, i64, i32)>| match found {
            Some((o, t, e)) if o < hw => (o, t, e),
            _ => (-1, -1, -1),
        };
        if matches!(timestamp, -2 | -5)
            && self.config().remote_storage
            && !self.remote.lock().loaded
        {
            // The earliest offset may be in the bucket: do not answer with the local one.
            return Err(PartitionError::RemoteNotLoaded {
                topic: self.topic.clone(),
                partition: self.index,
            });
        }
        Ok(match timestamp {
            -1 => (hw, -1, lead.leader_epoch),
            -2 if self.remote.lock().has_data() => {
                let local = self.log.lock().log_start_offset();
                let r = self.remote.lock();
                if r.start < local {
                    (r.effective_start(), -1, r.start_epoch)
                } else {
                    drop(r);
                    self.earliest_local(lead.leader_epoch)
                }
            }
            -2 | -4 => self.earliest_local(lead.leader_epoch),
            -5 => {
                let r = self.remote.lock();
                if r.has_data() {
                    (r.end - 1, -1, r.end_epoch)
                } else {
                    (-1, -1, -1)
                }
            }
            -3 => {
                let candidate = self.log.lock().batch_with_max_timestamp()?;
                committed(partition_log::offset_of_max_timestamp(candidate)?)
            }
            ts => committed(partition_log::offset_for_timestamp(ts, |from| {
                self.log.lock().batch_for_timestamp(ts, from)
            })?),
        })
    }

    /// The local log start and the leader epoch of its first batch.
    fn earliest_local(&self, current_epoch: i32) -> (i64, i64, i32) {
        let log = self.log.lock();
        let start = log.log_start_offset();
        let epoch = log
            .epoch_cache()
            .entries()
            .iter()
            .rev()
            .find(|(_, first)| *first <= start)
            .map(|(e, _)| *e)
            .unwrap_or(current_epoch);
        (start, -1, epoch)
    }

    /// DeleteRecords: moves the log start offset; `-1` means the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        self.check_leader(-1)?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let mut log = self.log.lock();
        let local_start = log.log_start_offset();
        if target < local_start && target <= hw && target >= 0 {
            // Inside the remote range: the tier manager drops whole remote segments below
            // it and records the new start in the manifest.
            let mut r = self.remote.lock();
            if r.has_data() {
                r.requested_start = r.requested_start.max(target);
                return Ok(r.effective_start().min(local_start));
            }
        }
        let start = log.advance_log_start(target, hw)?;
        drop(log);
        let mut r = self.remote.lock();
        r.requested_start = r.requested_start.max(start);
        Ok(start)
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` of the requested epoch.
    /// Consumers get offsets bounded by the high watermark; followers (truncating to the
    /// leader's log) the real end.
    pub fn end_offset_for_epoch(
        &self,
        epoch: i32,
        current_leader_epoch: i32,
        for_follower: bool,
    ) -> Result<(i32, i64), PartitionError> {
        self.check_leader(current_leader_epoch)?;
        let hw = self.high_watermark();
        let (e, end) = self.log.lock().end_offset_for_epoch(epoch);
        Ok((
            e,
            if end >= 0 && !for_follower {
                end.min(hw)
            } else {
                end
            },
        ))
    }

    /// Retention pass, bounded by the high watermark.
    pub fn apply_retention(
        &self,
        now_ms: i64,
    ) -> Result<partition_log::RetentionOutcome, LogError> {
        let hw = self.high_watermark();
        let uploaded_end = {
            let r = self.remote.lock();
            r.has_data().then_some(r.end)
        };
        let mut log = self.log.lock();
        if log.is_closed() {
            return Ok(partition_log::RetentionOutcome::default());
        }
        log.apply_retention(now_ms, hw, uploaded_end)
    }

    /// Writes a producer state snapshot if one is due (see
    /// [`PartitionLog::producer_snapshot`]). Blocking.
    pub fn snapshot_producers(&self, force: bool) -> Result<(), LogError> {
        let pending = {
            let mut log = self.log.lock();
            if log.is_closed() || log.is_offline() {
                return Ok(());
            }
            log.producer_snapshot(force)
        };
        match pending {
            Some(s) => s.write().map_err(|source| LogError::Checkpoint {
                topic: self.topic.clone(),
                partition: self.index,
                source,
            }),
            None => Ok(()),
        }
    }

    /// The log cleaner's next pass over this partition, if one is due.
    pub fn cleaning_plan(&self, now_ms: i64) -> Option<partition_log::CleaningPlan> {
        let hw = self.high_watermark();
        self.log.lock().cleaning_plan(now_ms, hw)
    }

    /// Swaps in a cleaned segment; see [`PartitionLog::install_cleaned`].
    pub fn install_cleaned(
        &self,
        base: i64,
        original: &Arc<std::fs::File>,
        cleaned: Option<crate::log::segment::Segment>,
    ) -> Result<bool, LogError> {
        self.log.lock().install_cleaned(base, original, cleaned)
    }

    pub fn cleaner_checkpoint(&self) -> crate::log::cleaner::CleanerCheckpoint {
        self.log.lock().cleaner_checkpoint().clone()
    }

    /// Persists a finished cleaning pass (the file is written outside the log lock).
    pub fn set_cleaner_checkpoint(
        &self,
        c: crate::log::cleaner::CleanerCheckpoint,
    ) -> Result<(), LogError> {
        let path = self.log.lock().cleaner_checkpoint_path();
        crate::log::checkpoint::write_atomic(&path, c.render().as_bytes()).map_err(|source| {
            LogError::Checkpoint {
                topic: self.topic.clone(),
                partition: self.index,
                source,
            }
        })?;
        self.log.lock().set_cleaner_checkpoint(c);
        Ok(())
    }

    /// Drops idle idempotent producers; returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.log.lock().expire_producers(now_ms, expiration_ms)
    }

    /// (recovery point, log start offset) for checkpoints.
    pub fn checkpoint_offsets(&self) -> (i64, i64) {
        let log = self.log.lock();
        (log.recovery_point(), log.log_start_offset())
    }

    /// Gauges for `/metrics`: (log start, log end, size bytes, segments).
    pub fn gauges(&self) -> (i64, i64, u64, usize) {
        let log = self.log.lock();
        (
            self.log_start_with_remote(log.log_start_offset()),
            log.log_end_offset(),
            log.size_bytes(),
            log.segment_count(),
        )
    }

    pub fn log_dir(&self) -> PathBuf {
        self.log.lock().dir().to_path_buf()
    }
}

/// Borrowed views of prepared batches for the log's append, without allocating for the
/// common single-batch request.
mod smallvec_like {
    use crate::log::ValidBatch;
    use crate::log::validate::PreparedBatch;

    pub enum Batches<'a> {
        One([ValidBatch<'a>; 1]),
        Many(Vec<ValidBatch<'a>>),
    }

    impl<'a> Batches<'a> {
        pub fn new(batches: &'a [PreparedBatch]) -> Self {
            let view = |b: &'a PreparedBatch| ValidBatch {
                bytes: &b.bytes,
                header: b.header,
            };
            match batches {
                [one] => Batches::One([view(one)]),
                many => Batches::Many(many.iter().map(view).collect()),
            }
        }

        pub fn as_slice(&self) -> &[ValidBatch<'a>] {
            match self {
                Batches::One(a) => a,
                Batches::Many(v) => v,
            }
        }
    }
}
