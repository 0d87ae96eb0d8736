//! Idempotent producer state of one partition (Kafka's ProducerStateManager): for each
//! producer id its epoch and last few batches, so a retried batch is recognised as a
//! duplicate and a gap in sequence numbers is refused.
//!
//! The state is derived from the log: a snapshot file (`<offset>.snapshot`) records it as
//! of an offset, and opening the log replays the batch headers after the newest snapshot
//! that the recovered log still covers.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::checkpoint::{self, CheckpointError};

/// Batches remembered per producer: Kafka's limit of in-flight requests per connection.
pub const RETAINED_BATCHES: usize = 5;
/// Snapshots kept per partition: the newest may be newer than what survives a crash.
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_EXT: &str = "snapshot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Last write, milliseconds since the epoch; drives `producer.id.expiration.ms`.
    pub last_timestamp: i64,
}

/// What to do with a batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log: acknowledge with the original offsets, write nothing.
    Duplicate(BatchMeta),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error(
        "producer {producer_id} wrote with epoch {epoch}, older than its current epoch {current}"
    )]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "out of order sequence number for producer {producer_id} epoch {epoch}: expected {expected}, got {got}"
    )]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
}

/// Sequence numbers wrap from i32::MAX to 0.
fn add_seq(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

fn last_seq(h: &BatchHeader) -> i32 {
    add_seq(h.base_sequence, h.last_offset_delta.max(0))
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    version: u16,
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
}

#[derive(Debug)]
pub struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// Changed since the last snapshot.
    dirty: bool,
    /// Offset of the newest snapshot on disk.
    last_snapshot: Option<i64>,
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_EXT}"))
}

fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    let mut out: Vec<i64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".snapshot")?.parse::<i64>().ok()
        })
        .collect();
    out.sort_unstable();
    out
}

impl ProducerStateManager {
    pub fn empty(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            dirty: false,
            last_snapshot: None,
        }
    }

    /// Loads the newest snapshot at or below `log_end` (newer ones describe data a crash
    /// lost and are deleted). Returns the state and the offset the log must be replayed
    /// from.
    pub fn load(dir: &Path, log_start: i64, log_end: i64) -> (Self, i64) {
        let mut state = Self::empty(dir);
        for offset in snapshot_offsets(dir).into_iter().rev() {
            let path = snapshot_path(dir, offset);
            if offset > log_end {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<SnapshotFile>(&b).ok())
                .filter(|s| s.version == 1 && s.offset == offset);
            match parsed {
                Some(s) => {
                    state.producers = s.producers.into_iter().collect();
                    state.last_snapshot = Some(offset);
                    return (state, offset.max(log_start));
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable producer state snapshot");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        (state, log_start)
    }

    /// Decides whether a batch of an idempotent producer is appended, is a duplicate, or
    /// is refused. Batches without a producer id are always appended.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown (new, or its state expired): any sequence starts it, as in Kafka.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        let last = last_seq(h);
        if h.producer_epoch == entry.epoch
            && let Some(b) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate(*b));
        }
        let expected = if h.producer_epoch > entry.epoch {
            0
        } else {
            match entry.batches.back() {
                Some(b) => add_seq(b.last_seq, 1),
                None => h.base_sequence,
            }
        };
        if h.base_sequence != expected {
            return Err(ProducerError::OutOfOrder {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch (its header carries the assigned base offset).
    pub fn update(&mut self, h: &BatchHeader, timestamp: i64) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(RETAINED_BATCHES),
                last_timestamp: timestamp,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        self.dirty = true;
    }

    /// Drops producers that have not written for `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        let removed = before - self.producers.len();
        if removed > 0 {
            self.dirty = true;
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn last_snapshot(&self) -> Option<i64> {
        self.last_snapshot
    }

    /// The state as a snapshot as of `offset` (the log end), to be written outside the log
    /// lock. `None` when nothing changed since the last one, unless `force`.
    pub fn take_snapshot(&mut self, offset: i64, force: bool) -> Option<PendingSnapshot> {
        if self.last_snapshot == Some(offset) || !(self.dirty || force) {
            return None;
        }
        self.dirty = false;
        self.last_snapshot = Some(offset);
        let file = SnapshotFile {
            version: 1,
            offset,
            producers: self
                .producers
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        };
        Some(PendingSnapshot {
            dir: self.dir.clone(),
            offset,
            json: serde_json::to_vec(&file).unwrap_or_default(),
        })
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.dirty = true;
    }
}

/// A snapshot ready to be written.
#[derive(Debug)]
pub struct PendingSnapshot {
    dir: PathBuf,
    offset: i64,
    json: Vec<u8>,
}

impl PendingSnapshot {
    /// Writes it atomically and removes all but the newest snapshots.
    pub fn write(&self) -> Result<(), CheckpointError> {
        if self.json.is_empty() {
            return Ok(());
        }
        checkpoint::write_atomic(&snapshot_path(&self.dir, self.offset), &self.json)?;
        let offsets = snapshot_offsets(&self.dir);
        if offsets.len() > SNAPSHOTS_KEPT {
            for o in &offsets[..offsets.len() - SNAPSHOTS_KEPT] {
                let _ = std::fs::remove_file(snapshot_path(&self.dir, *o));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::empty(dir.path());
        let b0 = header(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0), Ok(SequenceCheck::Append));
        s.update(&b0, 1);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1), Ok(SequenceCheck::Append));
        s.update(&b1, 1);
        // A retry of b0 is a duplicate with its original offsets.
        match s.check(&header(7, 0, 0, 3, -1)).unwrap() {
            SequenceCheck::Duplicate(m) => assert_eq!((m.first_offset, m.last_offset), (0, 2)),
            other => panic!("{other:?}"),
        }
        // A gap.
        assert!(matches!(
            s.check(&header(7, 0, 9, 1, -1)),
            Err(ProducerError::OutOfOrder {
                expected: 5,
                got: 9,
                ..
            })
        ));
        // A newer epoch restarts at 0; an older one is fenced.
        assert!(s.check(&header(7, 1, 4, 1, -1)).is_err());
        let e1 = header(7, 1, 0, 1, 5);
        assert_eq!(s.check(&e1), Ok(SequenceCheck::Append));
        s.update(&e1, 1);
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, -1)),
            Err(ProducerError::InvalidEpoch { current: 1, .. })
        ));
        // Non-idempotent batches pass.
        assert_eq!(
            s.check(&header(-1, -1, -1, 1, -1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(add_seq(i32::MAX, 1), 0);
        assert_eq!(add_seq(i32::MAX - 1, 3), 1);
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::empty(dir.path());
        s.update(&header(1, 0, i32::MAX - 1, 2, 0), 1);
        assert_eq!(s.check(&header(1, 0, 0, 1, 2)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn snapshots_round_trip_and_newer_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::empty(dir.path());
        s.update(&header(3, 2, 0, 10, 0), 1);
        s.take_snapshot(10, false).unwrap().write().unwrap();
        s.update(&header(3, 2, 10, 10, 10), 1);
        s.take_snapshot(20, false).unwrap().write().unwrap();
        s.update(&header(3, 2, 20, 10, 20), 1);
        s.take_snapshot(30, false).unwrap().write().unwrap();
        assert_eq!(snapshot_offsets(dir.path()), vec![20, 30]);
        // The log ends at 25 after a crash: the snapshot at 30 goes, 20 is used.
        let (loaded, from) = ProducerStateManager::load(dir.path(), 0, 25);
        assert_eq!(from, 20);
        assert_eq!(loaded.producers[&3].batches.back().unwrap().last_offset, 19);
        assert_eq!(snapshot_offsets(dir.path()), vec![20]);
        // Expiry.
        let mut loaded = loaded;
        assert_eq!(loaded.expire(1_000, 100), 1);
        assert!(loaded.is_empty());
    }
}
