//! Leader epoch -> first offset written in that epoch (Kafka's `leader-epoch-checkpoint`).
//!
//! Consumers and followers ask "where does epoch N end?" (OffsetForLeaderEpoch) to detect
//! log truncation after a leader change.

use std::path::{Path, PathBuf};

use super::checkpoint::{CheckpointError, write_atomic};

pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    /// (epoch, start offset), strictly increasing in both.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint; `None` when the file is absent or unreadable, so the caller
    /// rebuilds it from batch headers.
    pub fn load(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(count);
        for line in lines.take(count) {
            let mut it = line.split_whitespace();
            let epoch: i32 = it.next()?.parse().ok()?;
            let offset: i64 = it.next()?.parse().ok()?;
            if let Some(&(e, o)) = entries.last()
                && (epoch <= e || offset < o)
            {
                return None;
            }
            entries.push((epoch, offset));
        }
        (entries.len() == count).then(|| Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn empty(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            entries: Vec::new(),
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `offset`. Returns true if the cache changed.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, _)) if epoch <= e => false,
            _ => {
                self.entries.push((epoch, offset));
                true
            }
        }
    }

    /// `(epoch, end offset)` for a requested epoch, with Kafka's semantics: the end of an
    /// epoch is the start of the next higher one, or the log end for the latest epoch.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().find(|&&(e, _)| e > requested);
        let Some(&(_, higher_start)) = higher else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.entries.iter().rev().find(|&&(e, _)| e <= requested) {
            Some(&(floor_epoch, _)) => (floor_epoch, higher_start),
            None => (requested, higher_start),
        }
    }

    /// Drops entries starting at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < end_offset);
        before != self.entries.len()
    }

    /// Moves the first entries up to the new log start offset.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self.entries.iter().rposition(|&(_, o)| o <= start_offset);
        match covering {
            Some(i) => {
                let changed = i > 0 || self.entries[0].1 != start_offset;
                self.entries.drain(..i);
                self.entries[0].1 = start_offset;
                changed
            }
            None => false,
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn persist(&self) -> Result<(), CheckpointError> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        write_atomic(&self.path, s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(&dir.path().join("leader-epoch-checkpoint"));
        assert_eq!(c.end_offset_for(0, 10), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(c.assign(3, 10));
        assert!(c.assign(5, 20));
        assert_eq!(c.end_offset_for(5, 30), (5, 30));
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20));
        assert_eq!(c.end_offset_for(0, 30), (0, 0));
        assert_eq!(c.end_offset_for(6, 30), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));

        c.persist().unwrap();
        let back = LeaderEpochCache::load(&dir.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(back.entries(), c.entries());

        assert!(c.truncate_from_end(20));
        assert_eq!(c.latest_epoch(), Some(3));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(3, 12)]);
    }
}
