//! One log segment: a `.log` file of record batches plus its `.index` and `.timeindex`.
//!
//! Only the last segment of a partition is ever appended to. Once rolled, a segment and
//! its indexes never change again, which is what lets tiered storage upload it as is.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{BatchError, BatchHeader, HEADER_LEN, check_stored};
use super::index::{IndexError, OffsetIndex, TimeIndex, sync_file};

/// Kafka's file naming: the base offset, zero-padded to 20 digits.
pub fn file_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_base_offset(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("I/O on segment {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Where a scan of a segment file stopped early, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub position: u64,
    pub reason: String,
}

/// A byte range of a segment file to be sent to a client as is.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl FileSlice {
    /// Reads the slice. Reads that hit end-of-file (the segment was truncated under us)
    /// return what was there; clients discard a trailing partial batch.
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len);
        let mut done = 0;
        while done < self.len {
            let n = self
                .file
                .read_at(&mut buf[done..], self.position + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf.freeze())
    }
}

#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    index_path: PathBuf,
    time_index_path: PathBuf,
    file: Arc<File>,
    size: u64,
    t: BatchTracker,
    created_ms: i64,
    /// Picks this segment's share of `segment.jitter.ms`, so partitions roll at
    /// different times.
    jitter_seed: u64,
    sealed: bool,
}

fn jitter_seed() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

fn io_err(path: &Path, source: std::io::Error) -> SegmentError {
    SegmentError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open_log_file(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
}

/// What a segment knows about its batches: indexes, timestamps, end offset. Kept up to
/// date the same way whether a batch is appended or found by a recovery scan.
#[derive(Debug)]
struct BatchTracker {
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: `segment.ms` counts from here, as in Kafka.
    first_batch_timestamp: Option<i64>,
}

impl BatchTracker {
    fn new(base_offset: i64) -> Self {
        Self {
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
        }
    }

    /// Accounts for the batch `h` stored at `position`.
    fn record(&mut self, position: u64, h: &BatchHeader, index_interval: u64) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        if self.bytes_since_index >= index_interval || position == 0 {
            self.offset_index.append(h.base_offset, position as u32);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        self.next_offset = h.next_offset();
    }
}

/// State accumulated while scanning a segment file batch by batch.
struct ScanState {
    t: BatchTracker,
    end: u64,
    epochs: Vec<(i32, i64)>,
}

impl ScanState {
    fn new(base_offset: i64) -> Self {
        Self {
            t: BatchTracker::new(base_offset),
            end: 0,
            epochs: Vec::new(),
        }
    }

    fn add(&mut self, position: u64, h: &BatchHeader, index_interval: u64) {
        self.t.record(position, h, index_interval);
        self.end = position + h.size() as u64;
        if self
            .epochs
            .last()
            .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
            && h.partition_leader_epoch >= 0
        {
            self.epochs.push((h.partition_leader_epoch, h.base_offset));
        }
    }
}

/// What a recovery scan of a segment found.
#[derive(Debug)]
pub struct Recovered {
    pub segment: Segment,
    pub corruption: Option<Corruption>,
    /// Bytes cut off the end of the file because of `corruption`.
    pub truncated_bytes: u64,
    /// Leader epochs first seen in this segment, as (epoch, first offset).
    pub epochs: Vec<(i32, i64)>,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64) -> Result<Self, SegmentError> {
        let log_path = file_path(dir, base_offset, "log");
        let file = open_log_file(&log_path, true).map_err(|e| io_err(&log_path, e))?;
        // Stale indexes of an earlier segment with the same base offset would lie.
        for ext in ["index", "timeindex"] {
            let p = file_path(dir, base_offset, ext);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io_err(&p, e));
            }
        }
        let size = file.metadata().map_err(|e| io_err(&log_path, e))?.len();
        Ok(Self {
            base_offset,
            index_path: file_path(dir, base_offset, "index"),
            time_index_path: file_path(dir, base_offset, "timeindex"),
            log_path,
            file: Arc::new(file),
            size,
            t: BatchTracker::new(base_offset),
            created_ms: now_ms(),
            jitter_seed: jitter_seed(),
            sealed: false,
        })
    }

    /// A new, empty replacement for the sealed segment at `base_offset`, written by the log
    /// cleaner under `<name>.cleaned` names and put in place by [`Segment::install`].
    pub fn create_cleaned(dir: &Path, base_offset: i64) -> Result<Self, SegmentError> {
        let cleaned = |ext: &str| {
            let mut p = file_path(dir, base_offset, ext).into_os_string();
            p.push(".cleaned");
            PathBuf::from(p)
        };
        let log_path = cleaned("log");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        file.set_len(0).map_err(|e| io_err(&log_path, e))?;
        Ok(Self {
            base_offset,
            index_path: cleaned("index"),
            time_index_path: cleaned("timeindex"),
            log_path,
            file: Arc::new(file),
            size: 0,
            t: BatchTracker::new(base_offset),
            created_ms: now_ms(),
            jitter_seed: jitter_seed(),
            sealed: false,
        })
    }

    /// Seals a cleaned segment and makes it durable, still under its `.cleaned` names.
    pub fn prepare_swap(&mut self) -> Result<(), SegmentError> {
        self.seal()?;
        self.sync_handles().sync()
    }

    /// Puts a prepared cleaned segment in place of the original. Called under the log
    /// lock after checking the original is still there, so a segment removed meanwhile
    /// (retention, DeleteRecords, truncation) can never come back. The `.swap` rename is
    /// the commit point (recovery completes a `.swap`, see [`complete_swap`]); the old
    /// indexes go before the log is replaced, so no index ever describes the wrong file.
    pub fn install(&mut self, dir: &Path) -> Result<(), SegmentError> {
        let base = self.base_offset;
        let swap = swap_path(dir, base);
        std::fs::rename(&self.log_path, &swap).map_err(|e| io_err(&swap, e))?;
        self.log_path = swap;
        crate::log::checkpoint::sync_dir(dir).map_err(|e| io_err(dir, e))?;
        for ext in ["index", "timeindex"] {
            let p = file_path(dir, base, ext);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io_err(&p, e));
            }
        }
        let log_path = file_path(dir, base, "log");
        std::fs::rename(&self.log_path, &log_path).map_err(|e| io_err(&log_path, e))?;
        self.log_path = log_path;
        // An empty segment has no index files; missing indexes are rebuilt at open.
        let move_index = |from: &Path, to: PathBuf| match std::fs::rename(from, &to) {
            Ok(()) => Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(to),
            Err(e) => Err(io_err(&to, e)),
        };
        self.index_path = move_index(&self.index_path, file_path(dir, base, "index"))?;
        self.time_index_path =
            move_index(&self.time_index_path, file_path(dir, base, "timeindex"))?;
        crate::log::checkpoint::sync_dir(dir).map_err(|e| io_err(dir, e))?;
        Ok(())
    }

    /// Removes a cleaned segment that will not be installed.
    pub fn discard(&self) {
        for p in [&self.log_path, &self.index_path, &self.time_index_path] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The file handle and size, for reading a sealed segment outside the log lock.
    pub fn file(&self) -> (Arc<File>, u64) {
        (self.file.clone(), self.size)
    }

    /// Opens a segment by scanning every batch header, rebuilding its indexes. Batches at
    /// or past `verify_from` also have their CRC checked. The file is truncated at the
    /// first bad batch.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        verify_from: i64,
        index_interval: u64,
    ) -> Result<Recovered, SegmentError> {
        let log_path = file_path(dir, base_offset, "log");
        let file = open_log_file(&log_path, false).map_err(|e| io_err(&log_path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(&log_path, e))?.len();
        let mut state = ScanState::new(base_offset);
        let corruption = scan(
            &file,
            file_len,
            base_offset,
            verify_from,
            index_interval,
            &mut state,
        )
        .map_err(|e| io_err(&log_path, e))?;
        if corruption.is_some() {
            file.set_len(state.end).map_err(|e| io_err(&log_path, e))?;
            file.sync_all().map_err(|e| io_err(&log_path, e))?;
        }
        let created_ms = file_mtime_ms(&file);
        let mut segment = Self {
            base_offset,
            index_path: file_path(dir, base_offset, "index"),
            time_index_path: file_path(dir, base_offset, "timeindex"),
            log_path,
            file: Arc::new(file),
            size: state.end,
            t: state.t,
            created_ms,
            jitter_seed: jitter_seed(),
            sealed: false,
        };
        segment.t.offset_index.rewrite(&segment.index_path)?;
        segment.t.time_index.rewrite(&segment.time_index_path)?;
        Ok(Recovered {
            segment,
            corruption,
            truncated_bytes: file_len - state.end,
            epochs: state.epochs,
        })
    }

    /// Opens a rolled segment that is known to be flushed, trusting its indexes when they
    /// are consistent with the file. `Ok(None)`: they are missing or inconsistent, and the
    /// caller must recover the segment by scanning it.
    pub fn open_sealed(dir: &Path, base_offset: i64) -> Result<Option<Self>, SegmentError> {
        let log_path = file_path(dir, base_offset, "log");
        let file = open_log_file(&log_path, false).map_err(|e| io_err(&log_path, e))?;
        let size = file.metadata().map_err(|e| io_err(&log_path, e))?.len();
        if size == 0 {
            return Ok(None);
        }
        let index_path = file_path(dir, base_offset, "index");
        let time_index_path = file_path(dir, base_offset, "timeindex");
        let Ok(offset_index) = OffsetIndex::load(&index_path, base_offset, size) else {
            return Ok(None);
        };
        // The batches after the last index entry must lead exactly to the end of the file.
        let (_, pos) = offset_index.lookup(i64::MAX);
        let Some(last) =
            last_batch_after(&file, u64::from(pos), size).map_err(|e| io_err(&log_path, e))?
        else {
            return Ok(None);
        };
        let Ok(time_index) = TimeIndex::load(&time_index_path, base_offset, last.next_offset())
        else {
            return Ok(None);
        };
        // Sealing writes a final time index entry, so it covers the last batch's timestamp.
        let (max_timestamp, offset_of_max_timestamp) =
            time_index.last().unwrap_or((-1, base_offset));
        if last.max_timestamp > max_timestamp {
            return Ok(None);
        }
        let first_batch_timestamp = read_header_at(&file, 0, size)
            .map_err(|e| io_err(&log_path, e))?
            .map(|h| h.max_timestamp);
        Ok(Some(Self {
            base_offset,
            created_ms: file_mtime_ms(&file),
            log_path,
            index_path,
            time_index_path,
            file: Arc::new(file),
            size,
            t: BatchTracker {
                offset_index,
                time_index,
                bytes_since_index: 0,
                next_offset: last.next_offset(),
                max_timestamp,
                offset_of_max_timestamp,
                first_batch_timestamp,
            },
            jitter_seed: jitter_seed(),
            sealed: true,
        }))
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.t.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn max_timestamp(&self) -> i64 {
        self.t.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.t.offset_of_max_timestamp
    }
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }
    pub fn index_entries(&self) -> usize {
        self.t.offset_index.len()
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How long this segment has been collecting, as `segment.ms` measures it (Kafka's
    /// rule): from its first batch's timestamp to the incoming batch's, or, without a
    /// usable first timestamp, from the segment's creation to now.
    pub fn time_waited_for_roll(&self, now_ms: i64, incoming_max_timestamp: i64) -> i64 {
        match self.t.first_batch_timestamp {
            Some(first) if first >= 0 => incoming_max_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// This segment's jitter: a fixed random share of `segment.jitter.ms`.
    pub fn roll_jitter_ms(&self, segment_jitter_ms: i64) -> i64 {
        if segment_jitter_ms <= 0 {
            0
        } else {
            (self.jitter_seed % segment_jitter_ms as u64) as i64
        }
    }

    /// The newest timestamp in the segment, or the file's modification time when no
    /// record carries one (what `retention.ms` measures, as in Kafka).
    pub fn largest_timestamp(&self) -> i64 {
        if self.t.max_timestamp >= 0 {
            self.t.max_timestamp
        } else {
            file_mtime_ms(&self.file)
        }
    }

    /// Appends one stamped batch given as `parts` (header prefix + rest). On failure the
    /// file is cut back so no partial batch stays in the log.
    pub fn append(
        &mut self,
        parts: &mut [IoSlice<'_>],
        header: &BatchHeader,
        index_interval: u64,
    ) -> Result<(), SegmentError> {
        debug_assert!(!self.sealed, "append to a sealed segment");
        if let Err(e) = write_all_vectored(&self.file, parts) {
            // Best effort: remove whatever part of the batch reached the file.
            let _ = self.file.set_len(self.size);
            return Err(io_err(&self.log_path, e));
        }
        self.t.record(self.size, header, index_interval);
        self.size += header.size() as u64;
        Ok(())
    }

    /// Position and header of the first batch that holds `offset` or comes after it.
    pub fn translate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, SegmentError> {
        let (_, start) = self.t.offset_index.lookup(offset);
        let mut pos = u64::from(start);
        while pos < self.size {
            let Some(h) = read_header_at(&self.file, pos, self.size)
                .map_err(|e| io_err(&self.log_path, e))?
            else {
                return Ok(None);
            };
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }

    /// Bytes from the batch holding `start_offset` up to (not including) the batch holding
    /// `end_offset`, capped at `max_bytes` unless the first batch alone is bigger and
    /// `min_one_batch` is set (KIP-74: a consumer must always make progress).
    pub fn slice(
        &self,
        start_offset: i64,
        end_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, SegmentError> {
        let Some((start, first)) = self.translate(start_offset)? else {
            return Ok(None);
        };
        if first.base_offset >= end_offset {
            return Ok(None);
        }
        let end = if end_offset >= self.t.next_offset {
            self.size
        } else {
            match self.translate(end_offset)? {
                Some((p, h)) if h.base_offset >= end_offset => p,
                Some((p, h)) => p + h.size() as u64,
                None => self.size,
            }
        };
        let available = (end - start) as usize;
        let mut len = available.min(max_bytes);
        if min_one_batch && len < first.size() {
            len = first.size().min(available);
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(FileSlice {
            file: self.file.clone(),
            position: start,
            len,
        }))
    }

    /// First batch holding offsets at or after `min_offset` whose max timestamp is at or
    /// after `timestamp`.
    pub fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, SegmentError> {
        if self.t.max_timestamp < timestamp || self.t.next_offset <= min_offset {
            return Ok(None);
        }
        let from = self.t.time_index.lookup(timestamp).max(min_offset);
        let Some((mut pos, _)) = self.translate(from)? else {
            return Ok(None);
        };
        while pos < self.size {
            let Some(h) = read_header_at(&self.file, pos, self.size)
                .map_err(|e| io_err(&self.log_path, e))?
            else {
                break;
            };
            if h.max_timestamp >= timestamp && h.last_offset() >= min_offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }

    /// Cuts the segment so that it ends before `offset`. Returns bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64, SegmentError> {
        if offset >= self.t.next_offset {
            return Ok(0);
        }
        let new_size = match self.translate(offset)? {
            Some((pos, h)) if h.base_offset >= offset => pos,
            // `offset` falls inside a batch: the whole batch goes.
            Some((pos, _)) => pos,
            None => self.size,
        };
        let removed = self.size - new_size;
        self.file
            .set_len(new_size)
            .map_err(|e| io_err(&self.log_path, e))?;
        self.size = new_size;
        self.t.offset_index.truncate_to_position(new_size as u32);
        self.t.time_index.truncate_to_offset(offset);
        self.t.offset_index.rewrite(&self.index_path)?;
        self.t.time_index.rewrite(&self.time_index_path)?;
        // Recompute what the rest of the segment knows from a header scan.
        let mut state = ScanState::new(self.base_offset);
        scan(
            &self.file,
            new_size,
            self.base_offset,
            i64::MAX,
            u64::MAX,
            &mut state,
        )
        .map_err(|e| io_err(&self.log_path, e))?;
        self.t.next_offset = state.t.next_offset;
        self.t.max_timestamp = state.t.max_timestamp;
        self.t.offset_of_max_timestamp = state.t.offset_of_max_timestamp;
        self.t.first_batch_timestamp = state.t.first_batch_timestamp;
        self.sealed = false;
        Ok(removed)
    }

    /// Writes index entries that are not on disk yet.
    pub fn persist_indexes(&mut self) -> Result<(), SegmentError> {
        if self.t.max_timestamp >= 0 {
            self.t
                .time_index
                .maybe_append(self.t.max_timestamp, self.t.offset_of_max_timestamp);
        }
        self.t.offset_index.persist(&self.index_path)?;
        self.t.time_index.persist(&self.time_index_path)?;
        Ok(())
    }

    /// Makes the segment the active one again (after the log was truncated back into it).
    pub fn reopen_for_append(&mut self) {
        self.sealed = false;
    }

    /// Makes the segment immutable: final time index entry, indexes written in full.
    pub fn seal(&mut self) -> Result<(), SegmentError> {
        self.persist_indexes()?;
        self.sealed = true;
        Ok(())
    }

    /// The offset and time indexes in their file format, from memory (they are complete
    /// even if writing the files failed).
    pub fn encoded_indexes(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.t.offset_index.encode_all(),
            self.t.time_index.encode_all(),
        )
    }

    /// The whole batch at `position` as a slice to read outside the log lock.
    pub fn batch_slice(&self, position: u64, header: &BatchHeader) -> FileSlice {
        FileSlice {
            file: self.file.clone(),
            position,
            len: header.size(),
        }
    }

    /// Handles needed to fsync this segment outside the partition lock.
    pub fn sync_handles(&self) -> SyncHandles {
        SyncHandles {
            file: self.file.clone(),
            log_path: self.log_path.clone(),
            index_paths: [self.index_path.clone(), self.time_index_path.clone()],
        }
    }

    /// Removes the segment's files. Readers holding the file handle can finish.
    pub fn delete(&self) -> Result<(), SegmentError> {
        for p in [&self.log_path, &self.index_path, &self.time_index_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p, e)),
            }
        }
        Ok(())
    }
}

/// `<base>.log.swap`: a cleaned segment that replaces `<base>.log`.
pub fn swap_path(dir: &Path, base_offset: i64) -> PathBuf {
    let mut p = file_path(dir, base_offset, "log").into_os_string();
    p.push(".swap");
    PathBuf::from(p)
}

/// Finishes a segment swap a crash interrupted: a `.swap` file is complete (it was
/// fsynced before it got its name), so it replaces the segment; indexes are rebuilt.
pub fn complete_swap(dir: &Path, base_offset: i64) -> Result<(), SegmentError> {
    for ext in ["index", "timeindex"] {
        let p = file_path(dir, base_offset, ext);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io_err(&p, e));
        }
    }
    let log_path = file_path(dir, base_offset, "log");
    std::fs::rename(swap_path(dir, base_offset), &log_path).map_err(|e| io_err(&log_path, e))?;
    crate::log::checkpoint::sync_dir(dir).map_err(|e| io_err(dir, e))
}

/// Calls `f` with every whole batch (bytes and header) of a sealed segment file, reading
/// in chunks of about `chunk` bytes. Stops at the first unparsable batch.
pub fn for_each_batch(
    file: &File,
    size: u64,
    chunk: usize,
    mut f: impl FnMut(&[u8], &BatchHeader) -> Result<(), SegmentError>,
) -> Result<(), SegmentError> {
    let read_err = |e: std::io::Error| SegmentError::Io {
        path: "segment being cleaned".into(),
        source: e,
    };
    let corrupt = |pos: u64, why: String| SegmentError::Io {
        path: "segment being cleaned".into(),
        source: std::io::Error::other(format!("unreadable batch at position {pos}: {why}")),
    };
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos < size {
        let want = chunk.max(HEADER_LEN).min((size - pos) as usize);
        buf.resize(want, 0);
        file.read_exact_at(&mut buf, pos).map_err(read_err)?;
        let mut used = 0usize;
        while used < buf.len() {
            let rest = &buf[used..];
            let at = pos + used as u64;
            let h = match BatchHeader::parse(rest) {
                Ok(h) => h,
                // The header continues in the next chunk.
                Err(BatchError::Truncated { .. }) if used > 0 => break,
                Err(e) => return Err(corrupt(at, e.to_string())),
            };
            if h.size() as u64 > size - at {
                return Err(corrupt(
                    at,
                    format!("batch of {} bytes runs past the end", h.size()),
                ));
            }
            if h.size() > rest.len() {
                if used == 0 {
                    // A batch larger than the chunk: read it whole.
                    let mut big = vec![0u8; h.size()];
                    file.read_exact_at(&mut big, at).map_err(read_err)?;
                    f(&big, &h)?;
                    used = h.size();
                }
                break;
            }
            f(&rest[..h.size()], &h)?;
            used += h.size();
        }
        pos += used as u64;
    }
    Ok(())
}

/// Removes the files of the segment at `base_offset` without opening it. Returns the
/// size of its log file.
pub fn delete_files(dir: &Path, base_offset: i64) -> Result<u64, SegmentError> {
    let log_path = file_path(dir, base_offset, "log");
    let size = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    for ext in ["log", "index", "timeindex"] {
        let p = file_path(dir, base_offset, ext);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p, e)),
        }
    }
    Ok(size)
}

/// fsync targets of one segment, usable without holding the log lock.
#[derive(Debug, Clone)]
pub struct SyncHandles {
    file: Arc<File>,
    log_path: PathBuf,
    index_paths: [PathBuf; 2],
}

impl SyncHandles {
    pub fn sync(&self) -> Result<(), SegmentError> {
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.log_path, e))?;
        for p in &self.index_paths {
            sync_file(p)?;
        }
        Ok(())
    }
}

fn file_mtime_ms(file: &File) -> i64 {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(now_ms)
}

fn write_all_vectored(mut file: &File, mut parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !parts.is_empty() {
        match file.write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Header of the batch at `pos`, or `None` if no complete, plausible header is there.
fn read_header_at(file: &File, pos: u64, size: u64) -> std::io::Result<Option<BatchHeader>> {
    if pos + HEADER_LEN as u64 > size {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    match BatchHeader::parse(&buf) {
        Ok(h) if pos + h.size() as u64 <= size => Ok(Some(h)),
        _ => Ok(None),
    }
}

/// The last batch of the file, walking headers from `pos`.
fn last_batch_after(file: &File, mut pos: u64, size: u64) -> std::io::Result<Option<BatchHeader>> {
    let mut last = None;
    while pos < size {
        match read_header_at(file, pos, size)? {
            Some(h) => {
                pos += h.size() as u64;
                last = Some(h);
            }
            None => return Ok(None),
        }
    }
    Ok(last)
}

/// Walks batches from the start of the file, validating framing, offset order and (from
/// `verify_from` on) CRCs. Returns where and why it stopped early, if it did.
fn scan(
    file: &File,
    file_len: u64,
    base_offset: i64,
    verify_from: i64,
    index_interval: u64,
    state: &mut ScanState,
) -> std::io::Result<Option<Corruption>> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(0))?;
    let mut pos = 0u64;
    let mut header_buf = [0u8; HEADER_LEN];
    let mut body = Vec::new();
    let corrupt = |position: u64, reason: String| Ok(Some(Corruption { position, reason }));
    while pos < file_len {
        let remaining = file_len - pos;
        if remaining < HEADER_LEN as u64 {
            return corrupt(
                pos,
                format!("{remaining} trailing bytes are too short for a batch"),
            );
        }
        reader.read_exact(&mut header_buf)?;
        let h = match BatchHeader::parse(&header_buf) {
            Ok(h) => h,
            Err(e) => return corrupt(pos, e.to_string()),
        };
        if h.size() as u64 > remaining {
            return corrupt(
                pos,
                BatchError::Truncated {
                    needed: h.size(),
                    available: remaining as usize,
                }
                .to_string(),
            );
        }
        if h.base_offset < state.t.next_offset.max(base_offset) || h.last_offset_delta < 0 {
            return corrupt(
                pos,
                format!(
                    "batch offsets {}..={} do not follow the previous batch (next offset {})",
                    h.base_offset,
                    h.last_offset(),
                    state.t.next_offset
                ),
            );
        }
        let rest = h.size() - HEADER_LEN;
        if h.last_offset() >= verify_from {
            body.clear();
            body.extend_from_slice(&header_buf);
            body.resize(h.size(), 0);
            reader.read_exact(&mut body[HEADER_LEN..])?;
            if let Err(e) = check_stored(&body) {
                return corrupt(pos, e.to_string());
            }
        } else {
            reader.seek_relative(rest as i64)?;
        }
        state.add(pos, &h, index_interval);
        pos += h.size() as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::batch::{stamp_prefix, test_util::make_batch};
    use super::*;

    fn append(seg: &mut Segment, offset: i64, count: usize, ts: i64) -> BatchHeader {
        let b = make_batch(count, ts, 100);
        let prefix = stamp_prefix(&b, offset, 0);
        let mut h = BatchHeader::parse(&b).unwrap();
        h.base_offset = offset;
        let mut parts = [IoSlice::new(&prefix), IoSlice::new(&b[16..])];
        seg.append(&mut parts, &h, 256).unwrap();
        h
    }

    #[test]
    fn append_translate_and_slice() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 10).unwrap();
        let mut sizes = vec![];
        for i in 0..20 {
            let h = append(&mut seg, 10 + i * 3, 3, 1_000 + i);
            sizes.push(h.size());
        }
        assert_eq!(seg.next_offset(), 70);
        assert!(seg.index_entries() > 1);
        let (pos, h) = seg.translate(35).unwrap().unwrap();
        assert_eq!(h.base_offset, 34);
        assert_eq!(pos, sizes.iter().take(8).sum::<usize>() as u64);
        assert!(seg.translate(70).unwrap().is_none());

        let s = seg.slice(10, 70, usize::MAX, false).unwrap().unwrap();
        assert_eq!(s.len as u64, seg.size());
        // Up to but excluding the batch holding offset 16.
        let s = seg.slice(10, 16, usize::MAX, false).unwrap().unwrap();
        assert_eq!(s.len, sizes[0] + sizes[1]);
        // max_bytes smaller than a batch: still one whole batch with min_one_batch.
        let s = seg.slice(10, 70, 10, true).unwrap().unwrap();
        assert_eq!(s.len, sizes[0]);
        let data = s.read().unwrap();
        let h = check_stored(&data).unwrap();
        assert_eq!(h.base_offset, 10);

        let (_, h) = seg.find_batch_by_timestamp(1_010, 0).unwrap().unwrap();
        assert_eq!(h.base_offset, 10 + 8 * 3);
        let (_, h) = seg.find_batch_by_timestamp(1_010, 50).unwrap().unwrap();
        assert_eq!(h.base_offset, 49);
        assert!(seg.find_batch_by_timestamp(5_000, 0).unwrap().is_none());
    }

    #[test]
    fn recovery_truncates_garbage_tail_and_rebuilds_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        for i in 0..10 {
            append(&mut seg, i * 2, 2, 1_000 + i);
        }
        let good_size = seg.size();
        seg.seal().unwrap();
        drop(seg);
        let log = file_path(dir.path(), 0, "log");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[0xAB; 100]).unwrap();
        std::fs::remove_file(file_path(dir.path(), 0, "index")).unwrap();

        let r = Segment::recover(dir.path(), 0, 0, 256).unwrap();
        assert!(r.corruption.is_some());
        assert_eq!(r.segment.size(), good_size);
        assert_eq!(r.segment.next_offset(), 20);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), good_size);
        assert!(r.segment.translate(13).unwrap().is_some());
        assert!(file_path(dir.path(), 0, "index").exists());
    }

    #[test]
    fn recovery_detects_bad_crc_only_past_verify_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        let mut positions = vec![];
        for i in 0..5 {
            positions.push(seg.size());
            append(&mut seg, i, 1, 1_000);
        }
        drop(seg);
        let log = file_path(dir.path(), 0, "log");
        let mut bytes = std::fs::read(&log).unwrap();
        let flip = positions[3] as usize + 70;
        bytes[flip] ^= 0x01;
        std::fs::write(&log, &bytes).unwrap();

        // Trusting everything: the flipped bit is not noticed (that is the recovery point
        // contract: flushed data is not re-verified).
        let r = Segment::recover(dir.path(), 0, i64::MAX, 256).unwrap();
        assert!(r.corruption.is_none());
        assert_eq!(r.segment.next_offset(), 5);
        drop(r);
        // Verifying from offset 2: batch 3 fails its CRC, 3 and 4 are dropped.
        let r = Segment::recover(dir.path(), 0, 2, 256).unwrap();
        assert_eq!(r.corruption.unwrap().position, positions[3]);
        assert_eq!(r.segment.next_offset(), 3);
    }

    #[test]
    fn sealed_segment_reopens_from_indexes_or_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        for i in 0..30 {
            append(&mut seg, i, 1, 2_000 + i);
        }
        seg.seal().unwrap();
        drop(seg);
        let seg = Segment::open_sealed(dir.path(), 0).unwrap().unwrap();
        assert_eq!(seg.next_offset(), 30);
        assert_eq!(seg.max_timestamp(), 2_029);
        drop(seg);
        std::fs::write(file_path(dir.path(), 0, "index"), [9u8; 13]).unwrap();
        assert!(Segment::open_sealed(dir.path(), 0).unwrap().is_none());
        // A time index that stops short of the last batch is not trusted either.
        let mut seg = Segment::recover(dir.path(), 0, i64::MAX, 256)
            .unwrap()
            .segment;
        seg.seal().unwrap();
        drop(seg);
        std::fs::write(file_path(dir.path(), 0, "timeindex"), []).unwrap();
        assert!(Segment::open_sealed(dir.path(), 0).unwrap().is_none());
    }

    #[test]
    fn truncate_to_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        for i in 0..10 {
            append(&mut seg, i * 2, 2, 1_000 + i);
        }
        seg.truncate_to(7).unwrap();
        assert_eq!(seg.next_offset(), 6);
        assert_eq!(seg.max_timestamp(), 1_003);
        assert!(seg.translate(6).unwrap().is_none());
    }

    #[test]
    fn file_names() {
        let p = file_path(Path::new("/d"), 1234, "log");
        assert_eq!(p, Path::new("/d/00000000000000001234.log"));
        assert_eq!(
            parse_base_offset("00000000000000001234.log", "log"),
            Some(1234)
        );
        assert_eq!(parse_base_offset("1234.log", "log"), None);
        assert_eq!(parse_base_offset("00000000000000001234.index", "log"), None);
    }
}
