//! Serving fetches and timestamp lookups from remote segments.
//!
//! Segments are read in aligned chunks (`remote.log.reader.chunk.size.bytes`) through
//! the chunk cache; a chunk being downloaded is shared by every reader that wants it,
//! and the download runs as its own task, so a fetch that stops waiting still leaves
//! the chunk in the cache for its retry. After serving a read, the next chunks are
//! fetched ahead for the sequential consumer that most likely comes back for them.
//! Batches are never decoded; their headers are parsed to cut responses at batch
//! boundaries and their CRCs checked, so a damaged object yields an error, not bad data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::TierError;
use super::cache::{ChunkCache, IndexCache};
use super::layout::segment_object;
use super::manifest::RemoteSegment;
use crate::log::batch::{BatchHeader, HEADER_LEN, check_stored};
use crate::log::records;
use crate::metrics::Metrics;

type Download = Shared<BoxFuture<'static, Result<Bytes, TierError>>>;

#[derive(Debug)]
pub struct RemoteReader {
    store: Arc<dyn ObjectStore>,
    chunk_size: u64,
    readahead: u64,
    chunks: ChunkCache,
    indexes: IndexCache,
    permits: Arc<Semaphore>,
    inflight: Mutex<HashMap<String, Download>>,
    metrics: Arc<Metrics>,
}

/// Most batches a timestamp lookup inspects in one segment.
const MAX_TIMESTAMP_CANDIDATES: usize = 1000;

impl RemoteReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        chunks: ChunkCache,
        index_cache_bytes: u64,
        chunk_size: u64,
        readahead: u64,
        threads: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            chunk_size: chunk_size.max(1),
            readahead,
            chunks,
            indexes: IndexCache::new(index_cache_bytes),
            permits: Arc::new(Semaphore::new(threads.max(1))),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Drops cached chunks and indexes of an object that left the bucket.
    pub fn forget(&self, key: &Path) {
        let k = key.to_string();
        self.chunks.invalidate_prefix(&format!("{k}#"));
        self.indexes.invalidate_prefix(&k);
    }

    /// Drops everything cached under a partition's prefix.
    pub fn forget_prefix(&self, prefix: &Path) {
        let k = format!("{prefix}/");
        self.chunks.invalidate_prefix(&k);
        self.indexes.invalidate_prefix(&k);
    }

    fn chunk_key(key: &Path, idx: u64) -> String {
        format!("{key}#{idx}")
    }

    /// Chunk `idx` of `key` (an object of `size` bytes), from the cache or the store.
    async fn chunk(self: &Arc<Self>, key: &Path, size: u64, idx: u64) -> Result<Bytes, TierError> {
        let ck = Self::chunk_key(key, idx);
        let this = self.clone();
        let probe = ck.clone();
        if let Ok(Some(b)) = tokio::task::spawn_blocking(move || this.chunks.get(&probe)).await {
            self.metrics.remote_cache_hits.inc();
            return Ok(b);
        }
        self.metrics.remote_cache_misses.inc();
        self.download(key, size, idx, ck).await
    }

    fn download(self: &Arc<Self>, key: &Path, size: u64, idx: u64, ck: String) -> Download {
        let mut inflight = self.inflight.lock();
        if let Some(d) = inflight.get(&ck) {
            return d.clone();
        }
        let this = self.clone();
        let key = key.clone();
        let ck2 = ck.clone();
        let task = tokio::spawn(async move {
            // Removed from the in-flight map however the download ends (even a panic), so
            // a later reader starts a fresh one.
            let _done = InflightGuard {
                reader: this.clone(),
                key: ck2.clone(),
            };
            this.fetch_range(&key, size, idx, &ck2).await
        });
        let d: Download = async move {
            task.await.unwrap_or_else(|e| {
                Err(TierError::Local {
                    what: "remote chunk download task".into(),
                    reason: e.to_string(),
                })
            })
        }
        .boxed()
        .shared();
        inflight.insert(ck, d.clone());
        d
    }

    async fn fetch_range(
        self: &Arc<Self>,
        key: &Path,
        size: u64,
        idx: u64,
        ck: &str,
    ) -> Result<Bytes, TierError> {
        let start = idx * self.chunk_size;
        let end = (start + self.chunk_size).min(size);
        if start >= end {
            return Err(TierError::Corrupt {
                key: key.to_string(),
                position: start,
                reason: format!("read past the end of a {size}-byte object"),
            });
        }
        let _permit = self.permits.acquire().await.map_err(|_| TierError::Local {
            what: "remote reader".into(),
            reason: "shutting down".into(),
        })?;
        let t = Instant::now();
        let bytes = match self.store.get_range(key, start..end).await {
            Ok(b) => b,
            Err(e) => {
                let err = TierError::store("ranged read", key, e);
                // A missing object is judged by the caller (retention may have raced).
                if !matches!(err, TierError::NotFound { .. }) {
                    self.metrics.remote_error(err.reason());
                    tracing::error!(object = %key, range = ?(start..end), error = %err, "remote read failed");
                }
                return Err(err);
            }
        };
        self.metrics
            .remote_fetch_duration
            .observe(t.elapsed().as_secs_f64());
        self.metrics.remote_fetch_bytes.inc_by(bytes.len() as u64);
        if bytes.len() as u64 != end - start {
            let err = TierError::Corrupt {
                key: key.to_string(),
                position: start + bytes.len() as u64,
                reason: format!("object is shorter than the manifest says ({size} bytes)"),
            };
            self.metrics.remote_error(err.reason());
            return Err(err);
        }
        let this = self.clone();
        let (ck, data) = (ck.to_string(), bytes.clone());
        let _ = tokio::task::spawn_blocking(move || this.chunks.insert(&ck, &data)).await;
        Ok(bytes)
    }

    /// Starts downloads of the chunks after `last` (not already cached or in flight),
    /// without waiting for them.
    fn read_ahead(self: &Arc<Self>, key: &Path, size: u64, last: u64) {
        let chunks = size.div_ceil(self.chunk_size);
        for idx in last + 1..=(last + self.readahead).min(chunks.saturating_sub(1)) {
            let ck = Self::chunk_key(key, idx);
            if self.chunks.contains(&ck) || self.inflight.lock().contains_key(&ck) {
                continue;
            }
            // Only when a reader slot is free: read-ahead never delays a consumer's read.
            if self.permits.available_permits() == 0 {
                break;
            }
            drop(self.download(key, size, idx, ck));
        }
    }

    /// An index object of a segment (`ext` is `index` or `timeindex`), cached in memory.
    async fn index(
        &self,
        prefix: &Path,
        seg: &RemoteSegment,
        ext: &str,
        expected: u64,
    ) -> Result<Bytes, TierError> {
        let key = segment_object(prefix, seg.base_offset, seg.id, ext);
        let ck = key.to_string();
        if let Some(b) = self.indexes.get(&ck) {
            return Ok(b);
        }
        let _permit = self.permits.acquire().await.map_err(|_| TierError::Local {
            what: "remote reader".into(),
            reason: "shutting down".into(),
        })?;
        // Another reader may have fetched it while this one waited for a slot.
        if let Some(b) = self.indexes.get(&ck) {
            return Ok(b);
        }
        let t = Instant::now();
        let result = match self.store.get(&key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = result.map_err(|e| {
            let err = TierError::store("read", &key, e);
            if !matches!(err, TierError::NotFound { .. }) {
                self.metrics.remote_error(err.reason());
                tracing::error!(object = %key, error = %err, "remote index read failed");
            }
            err
        })?;
        self.metrics
            .remote_fetch_duration
            .observe(t.elapsed().as_secs_f64());
        self.metrics.remote_fetch_bytes.inc_by(bytes.len() as u64);
        let entry = if ext == "index" { 8 } else { 12 };
        if bytes.len() as u64 != expected || bytes.len() % entry != 0 {
            let err = TierError::Corrupt {
                key: ck,
                position: 0,
                reason: format!("{} bytes, the manifest says {expected}", bytes.len()),
            };
            self.metrics.remote_error(err.reason());
            return Err(err);
        }
        self.indexes.insert(&ck, bytes.clone());
        Ok(bytes)
    }

    /// Record batches of `seg` from the one holding `offset`, whole batches up to
    /// `max_bytes` (at least one when `min_one`), checked against their CRCs.
    pub async fn read(
        self: &Arc<Self>,
        prefix: &Path,
        seg: &RemoteSegment,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes, TierError> {
        let index = self.index(prefix, seg, "index", seg.index_bytes).await?;
        let key = segment_object(prefix, seg.base_offset, seg.id, "log");
        let mut cur = Cursor::new(self.clone(), key.clone(), seg.size_bytes);
        let mut pos = u64::from(floor_position(&index, seg.base_offset, offset));
        // Skip to the batch holding `offset` (at most one index interval of batches).
        loop {
            if pos >= seg.size_bytes {
                return Ok(Bytes::new());
            }
            let h = cur.header(pos).await?;
            if h.next_offset() > offset {
                break;
            }
            pos += h.size() as u64;
        }
        let first = pos;
        let mut end = pos;
        while end < seg.size_bytes {
            let size = cur.header(end).await?.size() as u64;
            let taken = end - first;
            if taken + size > max_bytes as u64 && (taken > 0 || !min_one) {
                break;
            }
            end += size;
        }
        if end == first {
            return Ok(Bytes::new());
        }
        let data = cur.bytes(first, end - first).await?;
        let good = verified_prefix(&data);
        if good == 0 {
            // The first batch's header was parsed above; its CRC is what failed.
            let first_len = BatchHeader::parse(&data).map_or(data.len(), |h| h.size());
            let reason = match check_stored(&data[..data.len().min(first_len)]) {
                Err(e) => e.to_string(),
                Ok(_) => "unreadable batch".into(),
            };
            let err = TierError::Corrupt {
                key: key.to_string(),
                position: first,
                reason,
            };
            self.metrics.remote_error(err.reason());
            tracing::error!(object = %key, offset, error = %err, "remote segment failed its CRC check; answering the fetch with an error");
            return Err(err);
        }
        self.read_ahead(&key, seg.size_bytes, (end - 1) / self.chunk_size);
        Ok(data.slice(..good))
    }

    /// The first record at or after `timestamp` (and `min_offset`) in `seg`, as
    /// `(offset, timestamp, leader epoch)`.
    pub async fn find_timestamp(
        self: &Arc<Self>,
        prefix: &Path,
        seg: &RemoteSegment,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64, i32)>, TierError> {
        if seg.max_timestamp < timestamp {
            return Ok(None);
        }
        let time_index = self
            .index(prefix, seg, "timeindex", seg.time_index_bytes)
            .await?;
        let index = self.index(prefix, seg, "index", seg.index_bytes).await?;
        let from = time_floor_offset(&time_index, seg.base_offset, timestamp).max(min_offset);
        let key = segment_object(prefix, seg.base_offset, seg.id, "log");
        let mut cur = Cursor::new(self.clone(), key, seg.size_bytes);
        let mut pos = u64::from(floor_position(&index, seg.base_offset, from));
        let mut candidates = 0;
        while pos < seg.size_bytes && candidates < MAX_TIMESTAMP_CANDIDATES {
            let h = cur.header(pos).await?;
            if h.next_offset() > from && h.max_timestamp >= timestamp {
                candidates += 1;
                let batch = cur.bytes(pos, h.size() as u64).await?;
                match records::find_record(&h, &batch, |o, t| o >= min_offset && t >= timestamp) {
                    Ok(Some((o, t))) => return Ok(Some((o, t, h.partition_leader_epoch))),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(base_offset = h.base_offset, error = %e,
                            "cannot read the records of a remote batch for a timestamp lookup; answering with its base offset");
                        return Ok(Some((
                            h.base_offset,
                            h.max_timestamp,
                            h.partition_leader_epoch,
                        )));
                    }
                }
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }
}

struct InflightGuard {
    reader: Arc<RemoteReader>,
    key: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.reader.inflight.lock().remove(&self.key);
    }
}

/// Reads through one object, keeping the chunk it is in.
struct Cursor {
    reader: Arc<RemoteReader>,
    key: Path,
    size: u64,
    current: Option<(u64, Bytes)>,
}

impl Cursor {
    fn new(reader: Arc<RemoteReader>, key: Path, size: u64) -> Self {
        Self {
            reader,
            key,
            size,
            current: None,
        }
    }

    async fn chunk(&mut self, idx: u64) -> Result<Bytes, TierError> {
        if let Some((i, b)) = &self.current
            && *i == idx
        {
            return Ok(b.clone());
        }
        let b = self.reader.chunk(&self.key, self.size, idx).await?;
        self.current = Some((idx, b.clone()));
        Ok(b)
    }

    /// `len` bytes from `pos` (fewer at the end of the object).
    async fn bytes(&mut self, pos: u64, len: u64) -> Result<Bytes, TierError> {
        let end = (pos + len).min(self.size);
        if pos >= end {
            return Ok(Bytes::new());
        }
        let cs = self.reader.chunk_size;
        let (first, last) = (pos / cs, (end - 1) / cs);
        if first == last {
            let c = self.chunk(first).await?;
            let (a, b) = ((pos - first * cs) as usize, (end - first * cs) as usize);
            return c
                .get(a..b)
                .map(|_| c.slice(a..b))
                .ok_or_else(|| self.short(pos));
        }
        let mut out = BytesMut::with_capacity((end - pos) as usize);
        for idx in first..=last {
            let c = self.chunk(idx).await?;
            let chunk_start = idx * cs;
            let a = pos.max(chunk_start) - chunk_start;
            let b = end.min(chunk_start + c.len() as u64) - chunk_start;
            out.extend_from_slice(
                c.get(a as usize..b as usize)
                    .ok_or_else(|| self.short(pos))?,
            );
        }
        Ok(out.freeze())
    }

    fn short(&self, pos: u64) -> TierError {
        TierError::Corrupt {
            key: self.key.to_string(),
            position: pos,
            reason: "chunk shorter than expected".into(),
        }
    }

    async fn header(&mut self, pos: u64) -> Result<BatchHeader, TierError> {
        let bytes = self.bytes(pos, HEADER_LEN as u64).await?;
        let h = BatchHeader::parse(&bytes).map_err(|e| TierError::Corrupt {
            key: self.key.to_string(),
            position: pos,
            reason: e.to_string(),
        })?;
        if h.size() < HEADER_LEN || pos + h.size() as u64 > self.size {
            return Err(TierError::Corrupt {
                key: self.key.to_string(),
                position: pos,
                reason: format!("batch of {} bytes does not fit the object", h.size()),
            });
        }
        Ok(h)
    }
}

/// Position of the last offset index entry at or below `offset` (0 if none).
fn floor_position(index: &[u8], base: i64, offset: i64) -> u32 {
    let rel = offset - base;
    let entries = index.len() / 8;
    let entry = |i: usize| {
        let e = &index[i * 8..i * 8 + 8];
        (
            i64::from(u32::from_be_bytes([e[0], e[1], e[2], e[3]])),
            u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        )
    };
    let (mut lo, mut hi) = (0usize, entries);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if entry(mid).0 <= rel {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 { 0 } else { entry(lo - 1).1 }
}

/// The offset of the last time index entry whose timestamp is below `timestamp`: every
/// record before it is older, so a scan for `timestamp` starts there.
fn time_floor_offset(index: &[u8], base: i64, timestamp: i64) -> i64 {
    let entries = index.len() / 12;
    let entry = |i: usize| {
        let e = &index[i * 12..i * 12 + 12];
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        (
            i64::from_be_bytes(ts),
            i64::from(u32::from_be_bytes([e[8], e[9], e[10], e[11]])),
        )
    };
    let (mut lo, mut hi) = (0usize, entries);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if entry(mid).0 < timestamp {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        base
    } else {
        base + entry(lo - 1).1
    }
}

/// Bytes of whole batches at the start of `data` that pass their CRC check.
fn verified_prefix(data: &[u8]) -> usize {
    let mut pos = 0;
    while pos < data.len() {
        let Ok(h) = BatchHeader::parse(&data[pos..]) else {
            break;
        };
        let end = pos + h.size();
        if end > data.len() || check_stored(&data[pos..end]).is_err() {
            break;
        }
        pos = end;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::index::{OffsetIndex, TimeIndex};

    #[test]
    fn index_lookups_match_the_local_indexes() {
        let mut idx = OffsetIndex::new(100);
        idx.append(110, 4096);
        idx.append(130, 8192);
        let bytes = idx.encode_all();
        assert_eq!(floor_position(&bytes, 100, 100), 0);
        assert_eq!(floor_position(&bytes, 100, 115), 4096);
        assert_eq!(floor_position(&bytes, 100, 130), 8192);
        assert_eq!(floor_position(&bytes, 100, 999), 8192);
        assert_eq!(floor_position(&[], 100, 150), 0);
        let mut t = TimeIndex::new(100);
        t.maybe_append(1_000, 105);
        t.maybe_append(2_000, 120);
        let bytes = t.encode_all();
        assert_eq!(time_floor_offset(&bytes, 100, 500), 100);
        assert_eq!(time_floor_offset(&bytes, 100, 1_000), 100);
        assert_eq!(time_floor_offset(&bytes, 100, 1_500), 105);
        assert_eq!(time_floor_offset(&bytes, 100, 9_000), 120);
    }

    #[test]
    fn crc_damage_cuts_the_served_prefix() {
        let a = crate::log::batch::test_util::make_batch(3, 1_000, 10);
        let b = crate::log::batch::test_util::make_batch(3, 1_000, 10);
        let mut data = BytesMut::new();
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        assert_eq!(verified_prefix(&data), a.len() + b.len());
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert_eq!(verified_prefix(&data), a.len());
        data[a.len() - 1] ^= 0xff;
        assert_eq!(verified_prefix(&data), 0);
    }
}
