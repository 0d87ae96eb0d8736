//! Uploading one sealed segment: the `.log` object (multipart above the part size),
//! then its `.index` and `.timeindex`. Every attempt writes under a fresh upload id, so
//! a failed attempt only leaves objects no manifest names (removed here when possible,
//! otherwise by the orphan sweep when the partition's manifest is next loaded).

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use parking_lot::Mutex;
use uuid::Uuid;

use super::TierError;
use super::layout::segment_object;
use super::manifest::RemoteSegment;
use crate::log::partition_log::UploadSource;

/// Broker-wide upload bandwidth cap (`remote.log.manager.copy.max.bytes.per.second`).
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: u64,
    next_free: Mutex<Instant>,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn acquire(&self, bytes: u64) {
        if self.bytes_per_second >= u64::MAX / 2 {
            return;
        }
        let delay = {
            let mut next = self.next_free.lock();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            start - now
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[derive(Debug)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    throttle: Throttle,
}

fn read_at(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

impl Uploader {
    pub fn new(store: Arc<dyn ObjectStore>, part_size: usize, bytes_per_second: u64) -> Self {
        Self {
            store,
            part_size: part_size.max(5 << 20),
            throttle: Throttle::new(bytes_per_second),
        }
    }

    async fn read_part(src: &UploadSource, pos: u64, len: usize) -> Result<Vec<u8>, TierError> {
        let file = src.file.clone();
        tokio::task::spawn_blocking(move || read_at(&file, pos, len))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| TierError::Local {
                what: format!("reading segment {} for upload", src.base_offset),
                reason,
            })
    }

    /// Uploads `src` under `prefix`; returns its manifest entry. Nothing a manifest names
    /// is touched.
    pub async fn upload(
        &self,
        prefix: &Path,
        src: &UploadSource,
        now_ms: i64,
    ) -> Result<RemoteSegment, TierError> {
        let id = Uuid::new_v4();
        let keys = ["log", "index", "timeindex"]
            .map(|ext| segment_object(prefix, src.base_offset, id, ext));
        let result = async {
            let crc = self.put_log(&keys[0], src).await?;
            for (key, data) in [(&keys[1], &src.index), (&keys[2], &src.time_index)] {
                self.throttle.acquire(data.len() as u64).await;
                self.store
                    .put(key, PutPayload::from(Bytes::from(data.clone())))
                    .await
                    .map_err(|e| TierError::store("upload", key, e))?;
            }
            Ok::<u32, TierError>(crc)
        }
        .await;
        match result {
            Ok(crc32c) => Ok(RemoteSegment {
                id,
                base_offset: src.base_offset,
                end_offset: src.end_offset,
                size_bytes: src.size,
                index_bytes: src.index.len() as u64,
                time_index_bytes: src.time_index.len() as u64,
                max_timestamp: src.max_timestamp,
                offset_of_max_timestamp: src.offset_of_max_timestamp,
                crc32c,
                leader_epochs: src.epochs.clone(),
                uploaded_at_ms: now_ms,
            }),
            Err(e) => {
                for key in &keys {
                    let _ = self.store.delete(key).await;
                }
                Err(e)
            }
        }
    }

    /// The `.log` object, streamed from the file; returns its CRC32C.
    async fn put_log(&self, key: &Path, src: &UploadSource) -> Result<u32, TierError> {
        let size = src.size;
        if size <= self.part_size as u64 {
            let data = Self::read_part(src, 0, size as usize).await?;
            let crc = crc32c::crc32c(&data);
            self.throttle.acquire(size).await;
            self.store
                .put(key, PutPayload::from(Bytes::from(data)))
                .await
                .map_err(|e| TierError::store("upload", key, e))?;
            return Ok(crc);
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| TierError::store("multipart upload start", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut crc = 0u32;
        let streamed = async {
            let mut pos = 0u64;
            while pos < size {
                let len = (size - pos).min(self.part_size as u64) as usize;
                let data = Self::read_part(src, pos, len).await?;
                crc = crc32c::crc32c_append(crc, &data);
                self.throttle.acquire(len as u64).await;
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| TierError::store("multipart upload", key, e))?;
                writer.put(Bytes::from(data));
                pos += len as u64;
            }
            Ok::<(), TierError>(())
        }
        .await;
        match streamed {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| TierError::store("multipart upload completion", key, e))?;
                Ok(crc)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn source(dir: &std::path::Path, size: usize) -> UploadSource {
        let path = dir.join("seg.log");
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        UploadSource {
            base_offset: 10,
            end_offset: 20,
            file: Arc::new(std::fs::File::open(&path).unwrap()),
            size: size as u64,
            index: vec![0; 8],
            time_index: vec![0; 12],
            max_timestamp: 5,
            offset_of_max_timestamp: 12,
            epochs: vec![(0, 10)],
        }
    }

    #[tokio::test]
    async fn small_and_multipart_uploads_are_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let up = Uploader::new(store.clone(), 5 << 20, u64::MAX);
        let prefix = Path::from("p");
        for size in [1000usize, (5 << 20) * 2 + 123] {
            let src = source(dir.path(), size);
            let seg = up.upload(&prefix, &src, 1).await.unwrap();
            let key = segment_object(&prefix, 10, seg.id, "log");
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.len(), size);
            assert_eq!(seg.crc32c, crc32c::crc32c(&got));
            assert_eq!(seg.size_bytes, size as u64);
            assert_eq!(seg.index_bytes, 8);
        }
    }

    #[tokio::test]
    async fn throttle_paces_bytes() {
        let t = Throttle::new(1_000_000);
        let start = Instant::now();
        t.acquire(100_000).await;
        t.acquire(100_000).await;
        assert!(start.elapsed() >= Duration::from_millis(90));
    }
}
