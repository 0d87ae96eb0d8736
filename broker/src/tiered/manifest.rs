//! The per-partition manifest: which segments are in the bucket, and what they hold.
//!
//! Written as one JSON object, replaced whole after every change. Segment objects are
//! written before the manifest that names them and deleted after the manifest that
//! dropped them, so a crash at any point leaves a manifest whose every object exists.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteSegment {
    /// The upload id, part of every object key of this segment.
    pub id: Uuid,
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    pub size_bytes: u64,
    pub index_bytes: u64,
    pub time_index_bytes: u64,
    /// -1 when no record carries a timestamp.
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    /// CRC32C of the whole `.log` object.
    pub crc32c: u32,
    /// (leader epoch, first offset) of every epoch starting inside this segment, plus the
    /// epoch in force at its base offset.
    pub leader_epochs: Vec<(i32, i64)>,
    pub uploaded_at_ms: i64,
}

impl RemoteSegment {
    /// What `retention.ms` measures: the newest record, else the upload time.
    pub fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.uploaded_at_ms
        }
    }

    /// The leader epoch of the batch holding `offset`.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.leader_epochs
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .or(self.leader_epochs.first())
            .map(|(e, _)| *e)
            .unwrap_or(-1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// Incremented by every write; tooling can tell two copies apart.
    pub generation: u64,
    /// Leader epoch of the broker that wrote this generation.
    pub leader_epoch: i32,
    /// The partition's log start offset as far as the remote tier knows it (DeleteRecords
    /// and retention move it).
    pub log_start_offset: i64,
    /// Ordered by end offset, strictly increasing; a segment may start before the previous
    /// one ends.
    pub segments: Vec<RemoteSegment>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest version {0} is newer than this broker understands ({FORMAT_VERSION})")]
    Version(u32),
    #[error("manifest belongs to topic id {found}, expected {expected}")]
    WrongTopic { found: Uuid, expected: Uuid },
    #[error("manifest segments are out of order at offset {0}")]
    Order(i64),
}

/// What retention may remove, given the state of the local log.
#[derive(Debug, Clone, Copy)]
pub struct RetentionInput {
    pub now_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// Segments at or above the local log start are still on disk: only data below it is
    /// remote-only.
    pub local_start: i64,
    pub local_bytes: u64,
    /// DeleteRecords' start offset.
    pub log_start: i64,
}

impl Manifest {
    pub fn new(topic: &str, topic_id: Uuid, partition: i32) -> Self {
        Self {
            version: FORMAT_VERSION,
            topic: topic.to_string(),
            topic_id,
            partition,
            generation: 0,
            leader_epoch: -1,
            log_start_offset: 0,
            segments: Vec::new(),
        }
    }

    pub fn decode(bytes: &[u8], topic_id: Uuid) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.version > FORMAT_VERSION {
            return Err(ManifestError::Version(m.version));
        }
        if m.topic_id != topic_id {
            return Err(ManifestError::WrongTopic {
                found: m.topic_id,
                expected: topic_id,
            });
        }
        // Segments may overlap (a local segment straddling the remote end is uploaded
        // whole) but each must end later than the one before.
        let mut end = i64::MIN;
        for s in &m.segments {
            if s.end_offset <= end || s.end_offset <= s.base_offset {
                return Err(ManifestError::Order(s.base_offset));
            }
            end = s.end_offset;
        }
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// One past the last uploaded offset.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.end_offset)
    }

    /// The first offset readable from the bucket.
    pub fn start_offset(&self) -> Option<i64> {
        self.segments
            .first()
            .map(|s| s.base_offset.max(self.log_start_offset))
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// The segment holding `offset`, or the first one after it (data in a gap is gone;
    /// the reader skips forward, as Kafka's fetch does).
    pub fn segment_for(&self, offset: i64) -> Option<&RemoteSegment> {
        let idx = self.segments.partition_point(|s| s.end_offset <= offset);
        self.segments.get(idx)
    }

    /// How many segments at the front retention removes.
    pub fn retention_count(&self, r: &RetentionInput) -> usize {
        let remote_only: u64 = self
            .segments
            .iter()
            .filter(|s| s.end_offset <= r.local_start)
            .map(|s| s.size_bytes)
            .sum();
        let mut total = remote_only + r.local_bytes;
        let mut n = 0;
        for s in &self.segments {
            let below_start = s.end_offset <= r.log_start.max(self.log_start_offset);
            let remote_only = s.end_offset <= r.local_start;
            let expired = r.retention_ms >= 0
                && r.now_ms.saturating_sub(s.retention_timestamp()) > r.retention_ms;
            let oversized =
                r.retention_bytes >= 0 && total >= s.size_bytes + r.retention_bytes as u64;
            if !(below_start || (remote_only && (expired || oversized))) {
                break;
            }
            total = total.saturating_sub(s.size_bytes);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, end: i64, size: u64, ts: i64) -> RemoteSegment {
        RemoteSegment {
            id: Uuid::new_v4(),
            base_offset: base,
            end_offset: end,
            size_bytes: size,
            index_bytes: 0,
            time_index_bytes: 0,
            max_timestamp: ts,
            offset_of_max_timestamp: base,
            crc32c: 0,
            leader_epochs: vec![(0, base)],
            uploaded_at_ms: 0,
        }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::new("t", Uuid::from_u128(1), 0);
        m.segments = vec![
            seg(0, 100, 1000, 1_000),
            seg(100, 200, 1000, 2_000),
            seg(200, 300, 1000, 3_000),
        ];
        m
    }

    #[test]
    fn round_trip_and_validation() {
        let m = manifest();
        let back = Manifest::decode(&m.encode(), Uuid::from_u128(1)).unwrap();
        assert_eq!(back, m);
        assert!(matches!(
            Manifest::decode(&m.encode(), Uuid::from_u128(2)),
            Err(ManifestError::WrongTopic { .. })
        ));
        let mut overlap = m.clone();
        overlap.segments[1].base_offset = 50;
        assert!(Manifest::decode(&overlap.encode(), Uuid::from_u128(1)).is_ok());
        assert_eq!(overlap.segment_for(60).unwrap().base_offset, 0);
        assert_eq!(overlap.segment_for(100).unwrap().base_offset, 50);
        let mut bad = m.clone();
        bad.segments.swap(0, 1);
        assert!(matches!(
            Manifest::decode(&bad.encode(), Uuid::from_u128(1)),
            Err(ManifestError::Order(_))
        ));
        assert!(Manifest::decode(b"{not json", Uuid::from_u128(1)).is_err());
        let mut newer = m;
        newer.version = 99;
        assert!(matches!(
            Manifest::decode(&newer.encode(), Uuid::from_u128(1)),
            Err(ManifestError::Version(99))
        ));
    }

    #[test]
    fn lookups() {
        let mut m = manifest();
        assert_eq!(m.end_offset(), Some(300));
        assert_eq!(m.start_offset(), Some(0));
        assert_eq!(m.segment_for(0).unwrap().base_offset, 0);
        assert_eq!(m.segment_for(150).unwrap().base_offset, 100);
        assert_eq!(m.segment_for(299).unwrap().base_offset, 200);
        assert!(m.segment_for(300).is_none());
        m.log_start_offset = 42;
        assert_eq!(m.start_offset(), Some(42));
        let s = &m.segments[1];
        assert_eq!(s.epoch_at(150), 0);
    }

    #[test]
    fn retention_only_removes_remote_only_segments_from_the_front() {
        let m = manifest();
        let base = RetentionInput {
            now_ms: 10_000,
            retention_ms: -1,
            retention_bytes: -1,
            local_start: 200,
            local_bytes: 5000,
            log_start: 0,
        };
        assert_eq!(m.retention_count(&base), 0);
        // Time: segments older than 8.5 s go, but the third is still local.
        let by_time = RetentionInput {
            retention_ms: 7_500,
            ..base
        };
        assert_eq!(m.retention_count(&by_time), 2);
        let by_time_local = RetentionInput {
            local_start: 100,
            ..by_time
        };
        assert_eq!(m.retention_count(&by_time_local), 1);
        // Size: 2000 remote-only + 5000 local; keep at most 6000.
        let by_size = RetentionInput {
            retention_bytes: 6000,
            ..base
        };
        assert_eq!(m.retention_count(&by_size), 1);
        // DeleteRecords past the first two segments.
        let deleted = RetentionInput {
            log_start: 250,
            ..base
        };
        assert_eq!(m.retention_count(&deleted), 2);
    }
}
