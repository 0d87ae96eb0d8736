//! Log compaction of one partition's closed segments: keep the latest record per key,
//! drop tombstones older than `delete.retention.ms`, keep every offset where it was.
//!
//! Batches are rewritten only when they lose records: the survivors' bytes are copied
//! verbatim (a record's offset and timestamp are deltas from the batch's base, which is
//! kept), recompressed with the batch's codec, and the batch keeps its base offset,
//! last offset delta and producer fields. Segments are replaced through
//! `<base>.log.cleaned` -> `<base>.log.swap` -> `<base>.log` (see `segment.rs`), so a
//! crash at any point leaves either the old or the new segment, never a mix.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::partition_log::CleanableSegment;
use super::records::{self, RecordsError};

use super::segment::{self, Segment, SegmentError};
use super::validate;

const READ_CHUNK: usize = 1 << 20;
/// Estimated bytes per key map entry: the 128-bit hash, the offset, and hash table slack.
pub const MAP_ENTRY_BYTES: u64 = 48;

#[derive(Debug, thiserror::Error)]
pub enum CleanerError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("batch at offset {offset}: {source}")]
    Records {
        offset: i64,
        #[source]
        source: RecordsError,
    },
    #[error("cannot rewrite batch at offset {offset}: {reason}")]
    Rewrite { offset: i64, reason: String },
}

/// What the cleaner remembers of a partition (`cleaner-offset-checkpoint`): where the
/// dirty section starts, when each pass ran (a tombstone's `delete.retention.ms` counts
/// from the pass that first cleaned it, Kafka's delete horizon), and when the next
/// retained tombstone may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerCheckpoint {
    pub first_dirty: i64,
    /// `(dirty end, time)` of past passes, oldest first.
    pub passes: Vec<(i64, i64)>,
    /// A retained tombstone becomes removable at this time: clean again then.
    pub tombstone_due: Option<i64>,
}

/// Passes remembered; older ones merge into the oldest kept (later time: tombstones stay
/// a little longer, never shorter).
const MAX_PASSES: usize = 64;

impl CleanerCheckpoint {
    pub fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["first_dirty", o] => c.first_dirty = o.parse().unwrap_or(0),
                ["tombstone_due", t] => c.tombstone_due = t.parse().ok(),
                ["pass", o, t] => {
                    if let (Ok(o), Ok(t)) = (o.parse(), t.parse()) {
                        c.passes.push((o, t));
                    }
                }
                // The first format: just the offset.
                [o] => c.first_dirty = o.parse().unwrap_or(0),
                _ => {}
            }
        }
        c
    }

    pub fn render(&self) -> String {
        let mut s = format!("first_dirty {}\n", self.first_dirty);
        if let Some(t) = self.tombstone_due {
            s.push_str(&format!("tombstone_due {t}\n"));
        }
        for (o, t) in &self.passes {
            s.push_str(&format!("pass {o} {t}\n"));
        }
        s
    }

    /// When the record at `offset` was first cleaned; `None` if it never was.
    pub fn first_cleaned(&self, offset: i64) -> Option<i64> {
        self.passes
            .iter()
            .find(|(end, _)| offset < *end)
            .map(|(_, t)| *t)
    }

    /// Records a finished pass.
    pub fn record_pass(&mut self, dirty_end: i64, now_ms: i64, tombstone_due: Option<i64>) {
        if dirty_end > self.first_dirty {
            self.passes.push((dirty_end, now_ms));
            if self.passes.len() > MAX_PASSES {
                let (_, t) = self.passes.remove(1);
                self.passes[0].1 = t;
            }
            self.first_dirty = dirty_end;
        }
        self.tombstone_due = tombstone_due;
    }
}

/// Keys of the dirty section and the offset of their latest record. Keys are kept as
/// 128-bit hashes, as Kafka keeps MD5 digests: memory per key is fixed.
#[derive(Debug, Default)]
pub struct OffsetMap {
    latest: HashMap<u128, i64>,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0xA5u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl OffsetMap {
    pub fn insert(&mut self, key: &[u8], offset: i64) {
        let e = self.latest.entry(key_hash(key)).or_insert(offset);
        *e = (*e).max(offset);
    }

    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&key_hash(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// Limits the cleaner's disk traffic (`log.cleaner.io.max.bytes.per.second`).
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            bytes: 0,
        }
    }

    pub fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        if self.bytes_per_second == u64::MAX {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep((due - elapsed).min(Duration::from_secs(1)));
        }
    }
}

/// Adds the keys of records in `[from, to)` of `segments` to `map`, stopping early (at a
/// batch boundary) once the map holds `max_entries`. Returns the offset up to which the
/// map is complete.
pub fn build_offset_map(
    segments: &[CleanableSegment],
    from: i64,
    to: i64,
    max_entries: usize,
    map: &mut OffsetMap,
    throttle: &mut Throttle,
) -> Result<i64, CleanerError> {
    let mut complete_to = from;
    let max_entries = max_entries.max(1);
    for seg in segments {
        if seg.next_offset <= from {
            continue;
        }
        if seg.base_offset >= to {
            break;
        }
        // Full: the map is complete up to the first batch it could not take.
        let mut full_at: Option<i64> = None;
        segment::for_each_batch(&seg.file, seg.size, READ_CHUNK, |bytes, h| {
            if full_at.is_some() {
                return Ok(());
            }
            throttle.account(bytes.len());
            if h.is_control() || h.next_offset() <= from || h.base_offset >= to {
                return Ok(());
            }
            if map.len() >= max_entries {
                full_at = Some(h.base_offset.max(from));
                return Ok(());
            }
            let raw = match records::records_section(h, bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(base_offset = h.base_offset, error = %e,
                        "cleaner cannot read a batch's records; its keys are not mapped");
                    return Ok(());
                }
            };
            for r in records::parse_records(h, &raw) {
                let Ok(r) = r else { break };
                if let Some(k) = r.key
                    && r.offset >= from
                    && r.offset < to
                {
                    map.insert(k, r.offset);
                }
            }
            Ok(())
        })?;
        if let Some(at) = full_at {
            return Ok(at);
        }
        complete_to = seg.next_offset.min(to);
    }
    Ok(complete_to)
}

/// What cleaning one segment did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Earliest time a tombstone kept by this pass may be removed.
    pub tombstone_due: Option<i64>,
    /// Batches kept as they are because their records could not be read.
    pub unreadable_batches: u64,
}

/// The result of cleaning one segment.
#[derive(Debug)]
pub enum Cleaned {
    /// Nothing to remove; the segment stays as it is.
    Unchanged,
    /// Every record was removed.
    Empty,
    /// A replacement, prepared for swap.
    Replacement(Box<Segment>),
}

/// Rewrites one sealed segment keeping, per key, only records at or after the offset in
/// `map` (records of keys the map does not know are kept: they were cleaned before), and
/// dropping tombstones whose timestamp is more than `delete_retention_ms` before `now_ms`.
/// Records without a key are dropped, as in Kafka.
#[allow(clippy::too_many_arguments)]
pub fn clean_segment(
    dir: &Path,
    seg: &CleanableSegment,
    map: &OffsetMap,
    checkpoint: &CleanerCheckpoint,
    now_ms: i64,
    delete_retention_ms: i64,
    index_interval: u64,
    keep_empty: bool,
    throttle: &mut Throttle,
) -> Result<(Cleaned, SegmentStats), CleanerError> {
    let mut out: Option<Segment> = None;
    let mut stats = SegmentStats {
        bytes_before: seg.size,
        ..Default::default()
    };
    // Batches kept whole before the first change are copied once a change is found.
    let mut changed = false;
    let result = segment::for_each_batch(&seg.file, seg.size, READ_CHUNK, |bytes, h| {
        throttle.account(bytes.len());
        let rewritten = filter_batch(
            bytes,
            h,
            map,
            checkpoint,
            now_ms,
            delete_retention_ms,
            &mut stats,
        )
        .map_err(|e| SegmentError::Io {
            path: format!("batch at offset {}", h.base_offset),
            source: std::io::Error::other(e.to_string()),
        })?;
        if !changed && matches!(rewritten, Kept::Whole) {
            return Ok(());
        }
        if !changed {
            changed = true;
            let mut s = Segment::create_cleaned(dir, seg.base_offset)?;
            // Copy the unchanged batches before this one.
            let mut copy_err = None;
            segment::for_each_batch(&seg.file, seg.size, READ_CHUNK, |b2, h2| {
                if h2.base_offset >= h.base_offset {
                    return Ok(());
                }
                if let Err(e) = append(&mut s, b2, h2, index_interval) {
                    copy_err = Some(e);
                }
                Ok(())
            })?;
            if let Some(e) = copy_err {
                return Err(e);
            }
            out = Some(s);
        }
        let Some(s) = out.as_mut() else {
            return Ok(());
        };
        match rewritten {
            Kept::Whole => append(s, bytes, h, index_interval),
            Kept::Nothing => Ok(()),
            Kept::Rewritten(b) => {
                let nh = batch::check_stored(&b).map_err(|e| SegmentError::Io {
                    path: format!("rewritten batch at offset {}", h.base_offset),
                    source: std::io::Error::other(e.to_string()),
                })?;
                append(s, &b, &nh, index_interval)
            }
        }
    });
    if let Err(e) = result {
        if let Some(s) = &out {
            s.discard();
        }
        return Err(e.into());
    }
    let Some(mut s) = out else {
        stats.bytes_after = seg.size;
        return Ok((Cleaned::Unchanged, stats));
    };
    stats.bytes_after = s.size();
    if s.is_empty() && !keep_empty {
        s.discard();
        return Ok((Cleaned::Empty, stats));
    }
    // The first segment stays even when emptied: its base offset is the log start.
    if let Err(e) = s.prepare_swap() {
        s.discard();
        return Err(e.into());
    }
    Ok((Cleaned::Replacement(Box::new(s)), stats))
}

fn append(
    s: &mut Segment,
    bytes: &[u8],
    h: &BatchHeader,
    index_interval: u64,
) -> Result<(), SegmentError> {
    let mut parts = [std::io::IoSlice::new(bytes)];
    s.append(&mut parts, h, index_interval)
}

enum Kept {
    Whole,
    Nothing,
    Rewritten(BytesMut),
}

fn filter_batch(
    bytes: &[u8],
    h: &BatchHeader,
    map: &OffsetMap,
    checkpoint: &CleanerCheckpoint,
    now_ms: i64,
    delete_retention_ms: i64,
    stats: &mut SegmentStats,
) -> Result<Kept, CleanerError> {
    if h.is_control() {
        // Transaction markers carry no keys; they stay.
        return Ok(Kept::Whole);
    }
    let raw = match records::records_section(h, bytes) {
        Ok(r) => r,
        Err(e) => {
            // Kept as it is rather than failing the partition's cleaning for good.
            tracing::warn!(base_offset = h.base_offset, error = %e,
                "cleaner cannot read a batch's records; keeping the batch unchanged");
            stats.unreadable_batches += 1;
            return Ok(Kept::Whole);
        }
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut total = 0u64;
    let mut due: Option<i64> = None;
    for r in records::parse_records(h, &raw) {
        let Ok(r) = r else {
            tracing::warn!(
                base_offset = h.base_offset,
                "cleaner found a malformed record; keeping the batch unchanged"
            );
            stats.unreadable_batches += 1;
            return Ok(Kept::Whole);
        };
        total += 1;
        let Some(key) = r.key else { continue };
        let latest = map.latest(key).is_none_or(|o| r.offset >= o);
        if !latest {
            continue;
        }
        if r.value_is_null {
            // Removable once delete.retention.ms has passed since the pass that first
            // cleaned it; a tombstone cleaned now for the first time stays.
            let horizon = checkpoint
                .first_cleaned(r.offset)
                .unwrap_or(now_ms)
                .saturating_add(delete_retention_ms);
            if now_ms > horizon {
                stats.tombstones_removed += 1;
                continue;
            }
            due = Some(due.map_or(horizon, |d: i64| d.min(horizon)));
        }
        kept.push(r.bytes);
    }
    if let Some(d) = due {
        stats.tombstone_due = Some(stats.tombstone_due.map_or(d, |x| x.min(d)));
    }
    stats.records_read += total;
    stats.records_kept += kept.len() as u64;
    if kept.len() as u64 == total {
        return Ok(Kept::Whole);
    }
    if kept.is_empty() {
        return Ok(Kept::Nothing);
    }
    let mut section = Vec::with_capacity(kept.iter().map(|k| k.len()).sum());
    for k in kept.iter() {
        section.extend_from_slice(k);
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + section.len());
    out.put_slice(&bytes[..HEADER_LEN]);
    validate::compress(h.compression(), &section, &mut out).map_err(|e| CleanerError::Rewrite {
        offset: h.base_offset,
        reason: e.to_string(),
    })?;
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Kept::Rewritten(out))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    use super::*;
    use crate::log::batch::{check_produced, check_stored, split_batches};
    use crate::log::{LogConfig, PartitionLog, ValidBatch};

    /// One batch of (key, value) records; `None` values are tombstones.
    fn batch(records: &[(String, Option<String>)], ts: i64, codec: Compression) -> Bytes {
        let plain: Vec<crate::log::batch::PlainRecord> = records
            .iter()
            .map(|(k, v)| (ts, Some(Bytes::from(k.clone())), v.clone().map(Bytes::from)))
            .collect();
        crate::log::batch::encode_batch(&plain, codec).unwrap()
    }

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 8 * 1024,
            index_interval_bytes: 1024,
            compact: true,
            delete: false,
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms: 1_000,
            ..LogConfig::default()
        }
    }

    fn append(log: &mut PartitionLog, b: &Bytes, now: i64) {
        let header = check_produced(b).unwrap();
        log.append(&[ValidBatch { bytes: b, header }], 0, now)
            .unwrap();
    }

    /// Everything readable: key -> (offset, value).
    fn read_all(log: &PartitionLog) -> BTreeMap<String, (i64, Option<String>)> {
        let mut out = BTreeMap::new();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        let mut last = -1;
        while let Some(slice) = log.read(offset, end, 1 << 20, true).unwrap() {
            let data = slice.read().unwrap();
            let mut buf = data.clone();
            for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
                for r in set.records {
                    assert!(r.offset > last, "offsets increase");
                    last = r.offset;
                    let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    let v = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                    out.insert(k, (r.offset, v));
                }
            }
            let next = split_batches(&data, check_stored)
                .map(|r| r.unwrap().1.next_offset())
                .last()
                .unwrap();
            if next <= offset {
                break;
            }
            offset = next;
        }
        out
    }

    fn clean(log: &mut PartitionLog, now: i64) -> usize {
        let Some(plan) = log.cleaning_plan(now, log.log_end_offset()) else {
            return 0;
        };
        let mut map = OffsetMap::default();
        let mut t = Throttle::new(u64::MAX);
        let to = build_offset_map(
            &plan.segments,
            plan.first_dirty,
            plan.dirty_end,
            usize::MAX,
            &mut map,
            &mut t,
        )
        .unwrap();
        let dir = log.dir().to_path_buf();
        let mut changed = 0;
        let mut checkpoint = log.cleaner_checkpoint().clone();
        let first = plan.segments[0].base_offset;
        let mut due = None;
        for seg in plan
            .segments
            .iter()
            .filter(|s| s.base_offset < to.max(plan.first_dirty))
        {
            let (out, stats) = clean_segment(
                &dir,
                seg,
                &map,
                &checkpoint,
                now,
                1_000,
                1024,
                seg.base_offset == first,
                &mut t,
            )
            .unwrap();
            due = due.or(stats.tombstone_due);
            let installed = match out {
                Cleaned::Unchanged => continue,
                Cleaned::Empty => log.install_cleaned(seg.base_offset, &seg.file, None),
                Cleaned::Replacement(s) => {
                    log.install_cleaned(seg.base_offset, &seg.file, Some(*s))
                }
            }
            .unwrap();
            assert!(installed);
            changed += 1;
        }
        checkpoint.record_pass(to, now, due);
        log.set_cleaner_checkpoint(checkpoint);
        changed
    }

    #[test]
    fn keeps_latest_per_key_and_drops_old_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) =
            PartitionLog::open(dir.path(), Arc::from("c"), 0, config(), None, None).unwrap();
        let mut expected: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
        let mut offset = 0;
        for version in 0..10 {
            for chunk in 0..10 {
                let recs: Vec<_> = (0..10)
                    .map(|i| {
                        let k = format!("key-{}", chunk * 10 + i);
                        let deleted = version == 9 && chunk == 0;
                        let v = (!deleted).then(|| format!("v{version}-{k}"));
                        (k, v)
                    })
                    .collect();
                let codec = if chunk % 2 == 0 {
                    Compression::None
                } else {
                    Compression::Zstd
                };
                append(&mut log, &batch(&recs, 5_000, codec), 5_000);
                for (k, v) in recs {
                    expected.insert(k, (offset, v));
                    offset += 1;
                }
            }
        }
        // Something newer so the last written segment rolls and can be cleaned.
        log.roll().unwrap();
        append(
            &mut log,
            &batch(&[("z".into(), Some("z".into()))], 5_000, Compression::None),
            5_000,
        );
        let size_before = log.size_bytes();
        // Tombstones are young (now = 5_500): kept.
        assert!(clean(&mut log, 5_500) > 0);
        assert!(
            log.size_bytes() < size_before / 5,
            "{} vs {size_before}",
            log.size_bytes()
        );
        let mut got = read_all(&log);
        got.remove("z");
        assert_eq!(got, expected);
        // Later, past delete.retention.ms, and with more dirty data: tombstones go.
        append(
            &mut log,
            &batch(
                &[("key-50".into(), Some("new".into()))],
                5_000,
                Compression::None,
            ),
            5_000,
        );
        log.roll().unwrap();
        append(
            &mut log,
            &batch(&[("y".into(), Some("y".into()))], 5_000, Compression::None),
            5_000,
        );
        clean(&mut log, 10_000);
        let got = read_all(&log);
        for i in 0..10 {
            assert!(
                !got.contains_key(&format!("key-{i}")),
                "tombstone key-{i} survived"
            );
        }
        assert_eq!(got["key-50"].1.as_deref(), Some("new"));
        assert_eq!(got["key-51"], expected["key-51"]);
        assert_eq!(got.len(), 100 - 10 + 2);
        // Reopening sees the same data.
        let end = log.log_end_offset();
        drop(log);
        let (log, _) =
            PartitionLog::open(dir.path(), Arc::from("c"), 0, config(), None, None).unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log), got);
    }

    #[test]
    fn a_swap_left_by_a_crash_is_completed_and_cleaned_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) =
            PartitionLog::open(dir.path(), Arc::from("c"), 0, config(), None, None).unwrap();
        let unique: Vec<_> = (0..10)
            .map(|i| (format!("u{i}"), Some("u".to_string())))
            .collect();
        append(&mut log, &batch(&unique, 5_000, Compression::Gzip), 5_000);
        for version in 0..5 {
            let recs: Vec<_> = (0..50)
                .map(|i| {
                    (
                        format!("k{i}"),
                        Some(format!("v{version}-{i}-{}", "x".repeat(40))),
                    )
                })
                .collect();
            append(&mut log, &batch(&recs, 5_000, Compression::None), 5_000);
        }
        log.roll().unwrap();
        append(
            &mut log,
            &batch(&[("z".into(), Some("z".into()))], 5_000, Compression::None),
            5_000,
        );
        let before = read_all(&log);
        let plan = log.cleaning_plan(5_000, log.log_end_offset()).unwrap();
        let mut map = OffsetMap::default();
        let mut t = Throttle::new(u64::MAX);
        build_offset_map(
            &plan.segments,
            0,
            plan.dirty_end,
            usize::MAX,
            &mut map,
            &mut t,
        )
        .unwrap();
        // Crash 1: the first segment's swap is prepared but not installed.
        let seg = &plan.segments[0];
        let checkpoint = CleanerCheckpoint::default();
        let (out, _) = clean_segment(
            log.dir(),
            seg,
            &map,
            &checkpoint,
            5_000,
            1_000,
            1024,
            true,
            &mut t,
        )
        .unwrap();
        let Cleaned::Replacement(mut out) = out else {
            panic!("expected a replacement")
        };
        // The commit point: renamed to .swap (as install does first), then a crash.
        let swap = segment::swap_path(log.dir(), seg.base_offset);
        std::fs::rename(out.log_path(), &swap).unwrap();
        let _ = &mut out;
        // Crash 2: a half-written cleaned file of the second segment.
        if let Some(seg2) = plan.segments.get(1) {
            let mut s = Segment::create_cleaned(log.dir(), seg2.base_offset).unwrap();
            let b = batch(
                &[("k1".into(), Some("garbage".into()))],
                1,
                Compression::None,
            );
            let h = check_produced(&b).unwrap();
            append_raw(&mut s, &b, &h);
        }
        drop(out);
        drop(log);
        let (log, _) =
            PartitionLog::open(dir.path(), Arc::from("c"), 0, config(), None, None).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
            "{names:?}"
        );
        // Latest values are all there; older versions in the swapped segment are gone.
        assert_eq!(read_all(&log), before);
    }

    fn append_raw(s: &mut Segment, b: &[u8], h: &BatchHeader) {
        let mut parts = [std::io::IoSlice::new(b)];
        s.append(&mut parts, h, 1024).unwrap();
    }
}
