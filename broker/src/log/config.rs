//! The settings a partition log obeys, already resolved from topic overrides and broker
//! defaults (see `config::topic`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `segment.jitter.ms`
    pub segment_jitter_ms: i64,
    /// `segment.index.bytes`: bounds the entries of one offset index (8 bytes each).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `retention.ms`; negative means unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`; negative means unlimited.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: fsync after this many messages.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when unflushed data is this old.
    pub flush_ms: i64,
    /// `message.timestamp.type`
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`
    pub timestamp_after_max_ms: i64,
    /// `min.insync.replicas`
    pub min_insync_replicas: i32,
    /// `compression.type`: `producer` keeps what the client sent.
    pub compression: Compression,
    /// `cleanup.policy` contains `compact`.
    pub compact: bool,
    /// `cleanup.policy` contains `delete` (time and size retention apply).
    pub delete: bool,
    /// `delete.retention.ms`
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`
    pub max_compaction_lag_ms: i64,
    /// `remote.storage.enable` (and the broker's tiered storage switched on).
    pub remote_storage: bool,
    /// `local.retention.ms`, with -2 resolved to `retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`, with -2 resolved to `retention.bytes`.
    pub local_retention_bytes: i64,
}

/// Target codec of `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec id in a batch's attributes, for a fixed target.
    pub fn codec_id(self) -> Option<i16> {
        match self {
            Compression::Producer => None,
            Compression::Uncompressed => Some(0),
            Compression::Gzip => Some(1),
            Compression::Snappy => Some(2),
            Compression::Lz4 => Some(3),
            Compression::Zstd => Some(4),
        }
    }
}

impl Default for LogConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_jitter_ms: 0,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            min_insync_replicas: 1,
            compression: Compression::Producer,
            compact: false,
            delete: true,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            remote_storage: false,
            local_retention_ms: 7 * 24 * 3_600_000,
            local_retention_bytes: -1,
        }
    }
}
