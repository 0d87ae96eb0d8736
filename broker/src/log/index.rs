//! Sparse per-segment indexes in Kafka's on-disk layout.
//!
//! `.index` maps a relative offset to a file position (4 + 4 bytes, big endian);
//! `.timeindex` maps a timestamp to a relative offset (8 + 4 bytes). Entries are kept in
//! memory and appended to the files on flush; a segment's indexes are complete and
//! immutable once the segment is rolled.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("I/O on index file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> IndexError {
    IndexError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Offset -> file position, one entry roughly every `index.interval.bytes`.
#[derive(Debug, Clone)]
pub struct OffsetIndex {
    base_offset: i64,
    /// (relative offset, position)
    entries: Vec<(u32, u32)>,
    persisted: usize,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
            persisted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; ignored unless both offset and position move forward.
    pub fn append(&mut self, offset: i64, position: u32) {
        let rel = (offset - self.base_offset) as u32;
        if let Some(&(last_rel, last_pos)) = self.entries.last()
            && (rel <= last_rel || position <= last_pos)
        {
            return;
        }
        self.entries.push((rel, position));
    }

    /// The last entry at or below `offset`: where a forward scan for `offset` starts.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = offset - self.base_offset;
        let idx = self.entries.partition_point(|&(r, _)| i64::from(r) <= rel);
        if idx == 0 {
            (self.base_offset, 0)
        } else {
            let (r, p) = self.entries[idx - 1];
            (self.base_offset + i64::from(r), p)
        }
    }

    /// Drops entries at or past `position` (used when the log is truncated).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(keep);
    }

    /// Every entry in the on-disk format: what a tiered segment uploads.
    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for e in &self.entries {
            Self::encode_entry(*e, &mut out);
        }
        out
    }

    pub fn encode_entry(entry: (u32, u32), out: &mut Vec<u8>) {
        out.extend_from_slice(&entry.0.to_be_bytes());
        out.extend_from_slice(&entry.1.to_be_bytes());
    }

    /// Loads an index, checking it against the segment it belongs to.
    pub fn load(path: &Path, base_offset: i64, segment_size: u64) -> Result<Self, IndexError> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        if bytes.len() % 8 != 0 {
            return Err(corrupt(
                path,
                format!("size {} is not a multiple of 8", bytes.len()),
            ));
        }
        let mut entries = Vec::with_capacity(bytes.len() / 8);
        for chunk in bytes.chunks_exact(8) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if let Some(&(lr, lp)) = entries.last()
                && (rel <= lr || pos <= lp)
            {
                return Err(corrupt(path, "entries are not strictly increasing"));
            }
            if u64::from(pos) >= segment_size {
                return Err(corrupt(
                    path,
                    format!("position {pos} is beyond the segment size {segment_size}"),
                ));
            }
            entries.push((rel, pos));
        }
        let persisted = entries.len();
        Ok(Self {
            base_offset,
            entries,
            persisted,
        })
    }

    /// Appends entries not yet on disk. Returns whether anything was written.
    pub fn persist(&mut self, path: &Path) -> Result<bool, IndexError> {
        persist_tail(path, &self.entries, &mut self.persisted, |e, out| {
            Self::encode_entry(*e, out)
        })
    }

    /// Rewrites the whole file (after truncation or a rebuild).
    pub fn rewrite(&mut self, path: &Path) -> Result<(), IndexError> {
        self.persisted = 0;
        rewrite_all(path, &self.entries, |e, out| Self::encode_entry(*e, out))?;
        self.persisted = self.entries.len();
        Ok(())
    }
}

/// Timestamp -> offset. Entries only grow in timestamp: each records the largest timestamp
/// seen so far and the batch where it first appeared.
#[derive(Debug, Clone)]
pub struct TimeIndex {
    base_offset: i64,
    /// (timestamp, relative offset)
    entries: Vec<(i64, u32)>,
    persisted: usize,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
            persisted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base_offset + i64::from(r)))
    }

    /// Adds an entry if `timestamp` is larger than every entry so far.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let rel = (offset - self.base_offset) as u32;
        match self.entries.last() {
            Some(&(t, r)) if timestamp <= t || rel < r => {}
            Some(&(_, r)) if rel == r => {
                if let Some(last) = self.entries.last_mut() {
                    last.0 = timestamp;
                }
            }
            _ => self.entries.push((timestamp, rel)),
        }
    }

    /// The last entry whose timestamp is below `timestamp`: a scan for the first record at
    /// or after `timestamp` can start at its offset.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self.entries.partition_point(|&(t, _)| t < timestamp);
        if idx == 0 {
            self.base_offset
        } else {
            self.base_offset + i64::from(self.entries[idx - 1].1)
        }
    }

    pub fn truncate_to_offset(&mut self, offset: i64) {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(_, r)| i64::from(r) < rel);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(keep);
    }

    /// Every entry in the on-disk format: what a tiered segment uploads.
    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for e in &self.entries {
            Self::encode_entry(*e, &mut out);
        }
        out
    }

    pub fn encode_entry(entry: (i64, u32), out: &mut Vec<u8>) {
        out.extend_from_slice(&entry.0.to_be_bytes());
        out.extend_from_slice(&entry.1.to_be_bytes());
    }

    pub fn load(path: &Path, base_offset: i64, next_offset: i64) -> Result<Self, IndexError> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        if bytes.len() % 12 != 0 {
            return Err(corrupt(
                path,
                format!("size {} is not a multiple of 12", bytes.len()),
            ));
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for chunk in bytes.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(t);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(&(lt, lr)) = entries.last()
                && (ts <= lt || rel < lr)
            {
                return Err(corrupt(path, "entries are not increasing"));
            }
            if base_offset + i64::from(rel) >= next_offset.max(base_offset + 1) {
                return Err(corrupt(
                    path,
                    format!(
                        "offset {} is beyond the segment",
                        base_offset + i64::from(rel)
                    ),
                ));
            }
            entries.push((ts, rel));
        }
        let persisted = entries.len();
        Ok(Self {
            base_offset,
            entries,
            persisted,
        })
    }

    pub fn persist(&mut self, path: &Path) -> Result<bool, IndexError> {
        persist_tail(path, &self.entries, &mut self.persisted, |e, out| {
            Self::encode_entry(*e, out)
        })
    }

    pub fn rewrite(&mut self, path: &Path) -> Result<(), IndexError> {
        self.persisted = 0;
        rewrite_all(path, &self.entries, |e, out| Self::encode_entry(*e, out))?;
        self.persisted = self.entries.len();
        Ok(())
    }
}

fn persist_tail<T>(
    path: &Path,
    entries: &[T],
    persisted: &mut usize,
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Result<bool, IndexError> {
    if *persisted >= entries.len() {
        return Ok(false);
    }
    let mut buf = Vec::new();
    for e in &entries[*persisted..] {
        encode(e, &mut buf);
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(&buf).map_err(|e| io_err(path, e))?;
    *persisted = entries.len();
    Ok(true)
}

fn rewrite_all<T>(
    path: &Path,
    entries: &[T],
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Result<(), IndexError> {
    let mut buf = Vec::with_capacity(entries.len() * 12);
    for e in entries {
        encode(e, &mut buf);
    }
    let mut f = File::create(path).map_err(|e| io_err(path, e))?;
    f.write_all(&buf).map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Opens an index file for fsync.
pub fn sync_file(path: &Path) -> Result<(), IndexError> {
    match File::open(path) {
        Ok(f) => f.sync_data().map_err(|e| io_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::new(100);
        idx.append(100, 0);
        idx.append(150, 4096);
        idx.append(200, 8192);
        idx.append(190, 9000); // ignored: offset went backwards
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(100), (100, 0));
        assert_eq!(idx.lookup(175), (150, 4096));
        assert_eq!(idx.lookup(1_000), (200, 8192));
        idx.truncate_to_position(4096);
        assert_eq!(idx.lookup(1_000), (100, 0));
    }

    #[test]
    fn time_lookup_and_monotonicity() {
        let mut idx = TimeIndex::new(0);
        idx.maybe_append(10, 0);
        idx.maybe_append(5, 3); // older timestamp: ignored
        idx.maybe_append(20, 5);
        idx.maybe_append(30, 9);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(20), 0);
        assert_eq!(idx.lookup(21), 5);
        assert_eq!(idx.lookup(100), 9);
        assert_eq!(idx.last(), Some((30, 9)));
        idx.truncate_to_offset(5);
        assert_eq!(idx.last(), Some((10, 0)));
    }

    #[test]
    fn persist_and_reload_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let mut idx = OffsetIndex::new(0);
        idx.append(0, 0);
        idx.append(10, 100);
        assert!(idx.persist(&p).unwrap());
        idx.append(20, 200);
        assert!(idx.persist(&p).unwrap());
        assert!(!idx.persist(&p).unwrap());
        let back = OffsetIndex::load(&p, 0, 1_000).unwrap();
        assert_eq!(back.lookup(25), (20, 200));
        // A segment shorter than the indexed positions means the index is stale.
        assert!(OffsetIndex::load(&p, 0, 150).is_err());
        // Garbage length is detected.
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        assert!(OffsetIndex::load(&p, 0, 1_000).is_err());
    }
}
