//! Kafka v2 record batch headers, parsed and checked without decoding the records.
//!
//! The broker stores batches exactly as producers send them; the only bytes it ever
//! rewrites are the base offset and partition leader epoch (both outside the CRC), and,
//! for `LogAppendTime` topics, the attributes and max timestamp (CRC recomputed).

use std::ops::Range;

/// Bytes before the part of a batch counted by its length field: base offset + length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;

const BATCH_LENGTH_OFFSET: usize = 8;
const LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const MIN_RECORD_BYTES: i64 = 7;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_MASK: i16 = 0x10;
const CONTROL_MASK: i16 = 0x20;

/// Why a batch was rejected; each maps onto a Kafka error code in the produce path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {needed} bytes but only {available} are present")]
    Truncated { needed: usize, available: usize },
    #[error("invalid batch length {0}")]
    InvalidLength(i32),
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    #[error("CRC32C mismatch: batch says {stored:#010x}, contents hash to {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("control batches may only be written by the broker")]
    ControlBatch,
}

/// The fixed fields of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks only that the header is present,
    /// that the length is plausible and that the magic is 2.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: buf.len(),
            });
        }
        let batch_length = be_i32(buf, BATCH_LENGTH_OFFSET);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(Self {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_OFFSET),
            magic,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Total bytes of this batch on disk and on the wire.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }

    /// Records in the batch as counted by offsets, which survives compaction.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }
}

/// CRC32C of a batch as Kafka defines it: from the attributes to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks a batch read back from the log: framing, magic and CRC. `batch` must hold
/// exactly one batch.
pub fn check_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.size() != batch.len() {
        return Err(BatchError::Truncated {
            needed: header.size(),
            available: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Checks a batch arriving from a producer: everything [`check_stored`] checks, plus the
/// invariants a client-built batch must satisfy.
pub fn check_produced(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_stored(batch)?;
    if header.records_count <= 0 || header.records_count - 1 != header.last_offset_delta {
        return Err(BatchError::CountMismatch {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.compression() > 4 {
        return Err(BatchError::UnknownCompression(header.compression()));
    }
    // An uncompressed record takes at least 7 bytes (length, attributes, timestamp and
    // offset deltas, key and value lengths, header count): a batch cannot claim more
    // records than fit. Compressed batches are not opened on this path.
    if header.compression() == 0
        && i64::from(header.records_count) * MIN_RECORD_BYTES > (batch.len() - HEADER_LEN) as i64
    {
        return Err(BatchError::CountMismatch {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    Ok(header)
}

/// Splits a record set (concatenated batches) into byte ranges of whole batches, checking
/// each with `check`. Stops at the first bad batch.
pub fn split_batches(
    records: &[u8],
    check: fn(&[u8]) -> Result<BatchHeader, BatchError>,
) -> impl Iterator<Item = Result<(Range<usize>, BatchHeader), BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= records.len() {
            return None;
        }
        let rest = &records[pos..];
        let result = BatchHeader::parse(rest).and_then(|h| {
            if h.size() > rest.len() {
                Err(BatchError::Truncated {
                    needed: h.size(),
                    available: rest.len(),
                })
            } else {
                check(&rest[..h.size()]).map(|h| (pos..pos + h.size(), h))
            }
        });
        match &result {
            Ok((range, _)) => pos = range.end,
            Err(_) => failed = true,
        }
        Some(result)
    })
}

/// Writes the broker-assigned base offset and leader epoch into a batch header prefix.
/// Neither field is covered by the CRC, so the rest of the batch is untouched.
pub fn stamp_prefix(original: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
    prefix[8..12].copy_from_slice(&original[BATCH_LENGTH_OFFSET..LEADER_EPOCH_OFFSET]);
    prefix[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// Marks a batch as `LogAppendTime` with the given time and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_MASK;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One record for [`encode_batch`]: timestamp, key, value (`None` value: a tombstone).
pub type PlainRecord = (i64, Option<bytes::Bytes>, Option<bytes::Bytes>);

/// Encodes records as one v2 batch without producer id or sequence (not idempotent), as
/// a plain client would: the broker's own writes (`__consumer_offsets`) and tests.
pub fn encode_batch(
    records: &[PlainRecord],
    compression: kafka_protocol::records::Compression,
) -> Result<bytes::Bytes, String> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (timestamp, key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol groups records into one batch while offset - sequence is
            // constant; this keeps the batch's base sequence at -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: kafka_protocol::indexmap::IndexMap::new(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod test_util {
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    /// Builds a real v2 batch with the kafka-protocol encoder, as a client would.
    pub fn make_batch(count: usize, timestamp: i64, value_len: usize) -> Bytes {
        make_batch_with(count, timestamp, value_len, Compression::None)
    }

    pub fn make_batch_with(
        count: usize,
        timestamp: i64,
        value_len: usize,
        compression: Compression,
    ) -> Bytes {
        let records: Vec<super::PlainRecord> = (0..count)
            .map(|i| {
                (
                    timestamp + i as i64,
                    Some(Bytes::from(format!("key-{i}"))),
                    Some(Bytes::from(vec![b'v'; value_len])),
                )
            })
            .collect();
        super::encode_batch(&records, compression).expect("encode batch")
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::make_batch;
    use super::*;

    #[test]
    fn parses_and_validates_client_batch() {
        let batch = make_batch(5, 1_000, 10);
        let h = check_produced(&batch).unwrap();
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.size(), batch.len());
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_004);
        assert_eq!(h.compression(), 0);
    }

    #[test]
    fn detects_corruption() {
        let mut batch = make_batch(3, 1_000, 10).to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            check_stored(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn detects_truncation_and_bad_magic() {
        let batch = make_batch(3, 1_000, 10);
        assert!(matches!(
            split_batches(&batch[..batch.len() - 3], check_stored).next(),
            Some(Err(BatchError::Truncated { .. }))
        ));
        let mut v = batch.to_vec();
        v[MAGIC_OFFSET] = 1;
        assert_eq!(BatchHeader::parse(&v), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn splits_concatenated_batches() {
        let a = make_batch(2, 1, 4);
        let b = make_batch(3, 2, 4);
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        let parts: Vec<_> = split_batches(&all, check_produced)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 0..a.len());
        assert_eq!(parts[1].0, a.len()..all.len());
    }

    #[test]
    fn stamping_keeps_crc_valid() {
        let batch = make_batch(3, 1_000, 10);
        let prefix = stamp_prefix(&batch, 42, 7);
        let mut v = batch.to_vec();
        v[..16].copy_from_slice(&prefix);
        let h = check_stored(&v).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        set_log_append_time(&mut v, 99_999);
        let h = check_stored(&v).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
    }
}
