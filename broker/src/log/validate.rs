//! Produce-side checks of record batches against a topic's settings, and the few
//! rewrites the broker performs (LogAppendTime stamping, `compression.type` conversion).
//! Records themselves are only touched when a topic asks for recompression.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, None as NoCompression, Snappy, Zstd};

use super::batch::{self, BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::config::{LogConfig, TimestampType};
use super::records::{self, MAX_DECOMPRESSED};

/// A batch ready for [`crate::log::PartitionLog::append`]: the client's bytes (shared with
/// the request buffer) or a rewritten copy.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    pub bytes: Bytes,
    pub header: BatchHeader,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes={max}")]
    TooLarge { size: usize, max: usize },
    #[error("timestamp {timestamp} of a batch is out of range: {reason}")]
    InvalidTimestamp { timestamp: i64, reason: String },
    #[error("produce request carries no records")]
    Empty,
}

impl ValidationError {
    pub fn error_code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            ValidationError::Corrupt(BatchError::UnsupportedMagic(m)) if *m < 2 => {
                E::UnsupportedForMessageFormat.code()
            }
            ValidationError::Corrupt(BatchError::CountMismatch { .. })
            | ValidationError::Corrupt(BatchError::ControlBatch)
            | ValidationError::InvalidRecord(_)
            | ValidationError::Empty => E::InvalidRecord.code(),
            ValidationError::Corrupt(_) => E::CorruptMessage.code(),
            ValidationError::TooLarge { .. } => E::MessageTooLarge.code(),
            ValidationError::InvalidTimestamp { .. } => E::InvalidTimestamp.code(),
        }
    }
}

/// Validates every batch of a partition's record set and prepares it for append.
pub fn prepare(
    records: &Bytes,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Vec<PreparedBatch>, ValidationError> {
    if records.is_empty() {
        return Err(ValidationError::Empty);
    }
    let mut out: Vec<PreparedBatch> = Vec::with_capacity(1);
    for item in batch::split_batches(records, batch::check_produced) {
        let (range, header) = item.map_err(ValidationError::Corrupt)?;
        if !out.is_empty() {
            // As Kafka since Produce v3: appending all of them or none must be possible.
            return Err(ValidationError::InvalidRecord(
                "a produce request may carry only one record batch per partition".into(),
            ));
        }
        if header.is_transactional() {
            return Err(ValidationError::InvalidRecord(
                "transactional batches are not supported by this Sluice version".into(),
            ));
        }
        let mut prepared = PreparedBatch {
            bytes: records.slice(range),
            header,
        };
        if let Some(target) = config.compression.codec_id()
            && target != header.compression()
        {
            prepared = recompress(&prepared, target)?;
        }
        if prepared.header.size() > config.max_message_bytes {
            return Err(ValidationError::TooLarge {
                size: prepared.header.size(),
                max: config.max_message_bytes,
            });
        }
        check_timestamps(&prepared.header, config, now_ms)?;
        if config.compact {
            check_keys(&prepared)?;
        }
        if config.timestamp_type == TimestampType::LogAppendTime {
            let mut owned = BytesMut::from(&prepared.bytes[..]);
            batch::set_log_append_time(&mut owned, now_ms);
            prepared.header = BatchHeader::parse(&owned).map_err(ValidationError::Corrupt)?;
            prepared.bytes = owned.freeze();
        }
        out.push(prepared);
    }
    Ok(out)
}

/// Compacted topics keep the latest record per key: a record without a key could never
/// be compacted, so Kafka refuses it.
fn check_keys(b: &PreparedBatch) -> Result<(), ValidationError> {
    match records::all_records_have_keys(&b.header, &b.bytes) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ValidationError::InvalidRecord(
            "Compacted topic cannot accept message without key".into(),
        )),
        Err(e) => Err(ValidationError::InvalidRecord(e.to_string())),
    }
}

fn check_timestamps(
    h: &BatchHeader,
    config: &LogConfig,
    now_ms: i64,
) -> Result<(), ValidationError> {
    // -1 is Kafka's "no timestamp"; anything lower is invalid in every mode.
    for ts in [h.base_timestamp, h.max_timestamp] {
        if ts < -1 {
            return Err(ValidationError::InvalidTimestamp {
                timestamp: ts,
                reason: "timestamps must be -1 (none) or not negative".into(),
            });
        }
    }
    if config.timestamp_type == TimestampType::LogAppendTime {
        return Ok(());
    }
    if h.base_timestamp >= 0
        && now_ms.saturating_sub(h.base_timestamp) > config.timestamp_before_max_ms
    {
        return Err(ValidationError::InvalidTimestamp {
            timestamp: h.base_timestamp,
            reason: format!(
                "more than message.timestamp.before.max.ms={} in the past",
                config.timestamp_before_max_ms
            ),
        });
    }
    if h.max_timestamp >= 0
        && h.max_timestamp.saturating_sub(now_ms) > config.timestamp_after_max_ms
    {
        return Err(ValidationError::InvalidTimestamp {
            timestamp: h.max_timestamp,
            reason: format!(
                "more than message.timestamp.after.max.ms={} in the future",
                config.timestamp_after_max_ms
            ),
        });
    }
    Ok(())
}

fn codec_err(e: impl std::fmt::Display) -> ValidationError {
    ValidationError::InvalidRecord(format!("cannot recompress batch: {e}"))
}

pub(crate) fn compress(codec: i16, raw: &[u8], out: &mut BytesMut) -> Result<(), ValidationError> {
    let fill = |buf: &mut BytesMut| {
        buf.put_slice(raw);
        Ok(())
    };
    match codec {
        0 => NoCompression::compress(out, fill),
        1 => Gzip::compress(out, fill),
        2 => Snappy::compress(out, fill),
        3 => Lz4::compress(out, fill),
        4 => Zstd::compress(out, fill),
        other => {
            return Err(ValidationError::Corrupt(BatchError::UnknownCompression(
                other,
            )));
        }
    }
    .map_err(codec_err)
}

/// Re-encodes a batch's records section with another codec. The records are byte-for-byte
/// the same inside; only the framing around them changes.
fn recompress(b: &PreparedBatch, target: i16) -> Result<PreparedBatch, ValidationError> {
    let raw = records::decompress(&b.header, &b.bytes, MAX_DECOMPRESSED).map_err(codec_err)?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + raw.len() / 2);
    out.put_slice(&b.bytes[..HEADER_LEN]);
    compress(target, &raw, &mut out)?;
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (b.header.attributes & !0x07) | target;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    let header = batch::check_stored(&out).map_err(ValidationError::Corrupt)?;
    Ok(PreparedBatch {
        bytes: out.freeze(),
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_util::{make_batch, make_batch_with};
    use super::super::config::Compression;
    use super::*;
    use kafka_protocol::records::{Compression as C, RecordBatchDecoder};

    #[test]
    fn passes_through_client_bytes_without_copy() {
        let b = make_batch(3, 1_000, 10);
        let p = prepare(&b, &LogConfig::default(), 1_000).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].bytes.as_ptr(), b.as_ptr());
    }

    #[test]
    fn enforces_size_and_timestamps() {
        let b = make_batch(3, 1_000, 100);
        let config = LogConfig {
            max_message_bytes: 100,
            ..LogConfig::default()
        };
        assert!(matches!(
            prepare(&b, &config, 1_000),
            Err(ValidationError::TooLarge { .. })
        ));
        let config = LogConfig {
            timestamp_after_max_ms: 10,
            ..LogConfig::default()
        };
        let e = prepare(&b, &config, 0).unwrap_err();
        assert_eq!(e.error_code(), 32);
        let config = LogConfig {
            timestamp_before_max_ms: 10,
            ..LogConfig::default()
        };
        assert!(prepare(&b, &config, 100_000).is_err());
        assert!(prepare(&b, &config, 1_005).is_ok());
    }

    #[test]
    fn log_append_time_rewrites_header_and_crc() {
        let b = make_batch(3, 1_000, 10);
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let p = prepare(&b, &config, 77_777).unwrap();
        let h = batch::check_stored(&p[0].bytes).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 77_777);
        assert_eq!(p[0].header, h);
    }

    #[test]
    fn recompresses_to_the_topic_codec() {
        let b = make_batch_with(50, 1_000, 200, C::Gzip);
        for (target, codec) in [
            (Compression::Zstd, 4),
            (Compression::Lz4, 3),
            (Compression::Snappy, 2),
            (Compression::Uncompressed, 0),
        ] {
            let config = LogConfig {
                compression: target,
                ..LogConfig::default()
            };
            let p = prepare(&b, &config, 1_000).unwrap();
            assert_eq!(p[0].header.compression(), codec);
            let mut bytes = p[0].bytes.clone();
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records.len(), 50);
            assert_eq!(set.records[49].timestamp, 1_049);
            assert_eq!(set.records[7].key.as_deref(), Some(&b"key-7"[..]));
        }
    }

    #[test]
    fn one_batch_per_partition_and_sane_timestamps() {
        let a = make_batch(2, 1_000, 4);
        let mut two = a.to_vec();
        two.extend_from_slice(&a);
        let e = prepare(&Bytes::from(two), &LogConfig::default(), 1_000).unwrap_err();
        assert_eq!(e.error_code(), 87);
        let e = prepare(&make_batch(2, -50, 4), &LogConfig::default(), 1_000).unwrap_err();
        assert_eq!(e.error_code(), 32);
    }

    #[test]
    fn rejects_garbage() {
        let e = prepare(&Bytes::from_static(&[0u8; 70]), &LogConfig::default(), 0).unwrap_err();
        assert!(matches!(e, ValidationError::Corrupt(_)), "{e}");
        assert!(prepare(&Bytes::new(), &LogConfig::default(), 0).is_err());
    }
}
