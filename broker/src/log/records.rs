//! Reading inside a record batch, for the few paths that must: timestamp lookups
//! (ListOffsets), `compression.type` conversion, keys of compacted topics (produce
//! checks and the log cleaner). Never used to produce to or fetch from other topics.
//!
//! Decompression is streaming and bounded, so a small batch that inflates to gigabytes
//! (a decompression bomb) costs at most the bound, and records are walked without being
//! materialised.

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;

use super::batch::{BatchHeader, HEADER_LEN};

/// Most decompressed bytes read from one batch.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("batch decompresses to more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot decompress batch: {0}")]
    Codec(String),
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Kafka's snappy framing (xerial) header; raw snappy is accepted too, as Kafka does.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Decompresses a whole snappy payload with size checks before each allocation.
fn snappy(payload: &[u8], limit: u64) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| {
        let len = snap::raw::decompress_len(compressed)
            .map_err(|e| RecordsError::Codec(e.to_string()))? as u64;
        if out.len() as u64 + len > limit {
            return Err(RecordsError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + len as usize, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(|e| RecordsError::Codec(e.to_string()))?;
        Ok(())
    };
    if payload.starts_with(XERIAL_MAGIC) && payload.len() >= 16 {
        let mut rest = &payload[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(RecordsError::Malformed("truncated snappy block length"));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(chunk) = rest.get(4..4 + n) else {
                return Err(RecordsError::Malformed("truncated snappy block"));
            };
            block(chunk, &mut out)?;
            rest = &rest[4 + n..];
        }
    } else {
        block(payload, &mut out)?;
    }
    Ok(out)
}

/// A reader over the records section of a batch, decompressing on the fly.
fn records_reader<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    limit: u64,
) -> Result<Box<dyn Read + 'a>, RecordsError> {
    let payload = &batch[HEADER_LEN.min(batch.len())..];
    let codec_err = |e: std::io::Error| RecordsError::Codec(e.to_string());
    Ok(match header.compression() {
        0 => Box::new(payload),
        1 => Box::new(flate2::read::GzDecoder::new(payload)),
        2 => Box::new(std::io::Cursor::new(snappy(payload, limit)?)),
        3 => Box::new(lz4::Decoder::new(payload).map_err(codec_err)?),
        4 => Box::new(zstd::stream::read::Decoder::new(payload).map_err(codec_err)?),
        other => return Err(RecordsError::UnknownCodec(other)),
    })
}

/// The decompressed records section, at most `limit` bytes.
pub fn decompress(header: &BatchHeader, batch: &[u8], limit: u64) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    records_reader(header, batch, limit)?
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Codec(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(RecordsError::TooLarge(limit));
    }
    Ok(out)
}

struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: BufRead> Counting<R> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let buf = self
            .inner
            .fill_buf()
            .map_err(|e| RecordsError::Codec(e.to_string()))?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.inner.consume(1);
        self.read += 1;
        if self.read > MAX_DECOMPRESSED {
            return Err(RecordsError::TooLarge(MAX_DECOMPRESSED));
        }
        Ok(Some(b))
    }

    /// Zig-zag varlong, as Kafka's record fields.
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self
                .byte()?
                .ok_or(RecordsError::Malformed("truncated varint"))?;
            raw |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::Malformed("varint longer than 10 bytes"))
    }

    fn skip(&mut self, mut n: u64) -> Result<(), RecordsError> {
        while n > 0 {
            let buf = self
                .inner
                .fill_buf()
                .map_err(|e| RecordsError::Codec(e.to_string()))?;
            if buf.is_empty() {
                return Err(RecordsError::Malformed("record extends past the batch"));
            }
            let k = (buf.len() as u64).min(n);
            self.inner.consume(k as usize);
            self.read += k;
            n -= k;
            if self.read > MAX_DECOMPRESSED {
                return Err(RecordsError::TooLarge(MAX_DECOMPRESSED));
            }
        }
        Ok(())
    }
}

/// The leading fields of a record, as the streaming walker reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordHead {
    offset: i64,
    timestamp: i64,
    /// -1 for a null key.
    key_len: i64,
}

/// Walks the records of a batch with streaming decompression (bounded by
/// [`MAX_DECOMPRESSED`]), reading only each record's length, timestamp and offset deltas
/// and key length, until `visit` returns true; returns that record.
fn walk(
    header: &BatchHeader,
    batch: &Bytes,
    mut visit: impl FnMut(&RecordHead) -> bool,
) -> Result<Option<RecordHead>, RecordsError> {
    let mut r = Counting {
        inner: BufReader::with_capacity(
            16 * 1024,
            records_reader(header, batch, MAX_DECOMPRESSED)?,
        ),
        read: 0,
    };
    for _ in 0..header.records_count.max(0) {
        let len = r.varlong()?;
        if len < 3 {
            return Err(RecordsError::Malformed("record length too small"));
        }
        let start = r.read;
        let _attributes = r
            .byte()?
            .ok_or(RecordsError::Malformed("truncated record"))?;
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varlong()?;
        let key_len = r.varlong()?;
        let head = RecordHead {
            offset: header.base_offset.saturating_add(offset_delta),
            timestamp: if header.is_log_append_time() {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(timestamp_delta)
            },
            key_len,
        };
        if visit(&head) {
            return Ok(Some(head));
        }
        let consumed = r.read - start;
        let remaining = (len as u64)
            .checked_sub(consumed)
            .ok_or(RecordsError::Malformed("record shorter than its fields"))?;
        r.skip(remaining)?;
    }
    Ok(None)
}

/// Calls `visit(offset, timestamp)` for each record of a batch until it returns true;
/// returns that record's (offset, timestamp). Keys, values and headers are skipped.
pub fn find_record(
    header: &BatchHeader,
    batch: &Bytes,
    mut visit: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, RecordsError> {
    Ok(walk(header, batch, |h| visit(h.offset, h.timestamp))?.map(|h| (h.offset, h.timestamp)))
}

/// Whether every record of a batch has a key, without materialising the records.
pub fn all_records_have_keys(header: &BatchHeader, batch: &Bytes) -> Result<bool, RecordsError> {
    Ok(walk(header, batch, |h| h.key_len < 0)?.is_none())
}

/// One record inside a decompressed records section, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// A tombstone: a null value.
    pub value_is_null: bool,
    /// The whole record, length prefix included: copied verbatim into a rewritten batch
    /// that keeps the original base offset and base timestamp.
    pub bytes: &'a [u8],
}

fn slice_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(RecordsError::Malformed("truncated varint"))?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift.min(63);
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::Malformed("varint longer than 10 bytes"))
}

/// Parses the records of a decompressed records section (see [`decompress`]; for an
/// uncompressed batch, the bytes after the header).
pub fn parse_records<'a>(
    header: &BatchHeader,
    raw: &'a [u8],
) -> impl Iterator<Item = Result<RawRecord<'a>, RecordsError>> + 'a {
    let h = *header;
    let mut pos = 0usize;
    let mut left = h.records_count.max(0);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || left == 0 {
            return None;
        }
        left -= 1;
        let r = (|| {
            let start = pos;
            let len = slice_varlong(raw, &mut pos)?;
            let body_start = pos;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| body_start.checked_add(l))
                .filter(|e| *e <= raw.len())
                .ok_or(RecordsError::Malformed("record extends past the batch"))?;
            pos += 1; // attributes
            let timestamp_delta = slice_varlong(raw, &mut pos)?;
            let offset_delta = slice_varlong(raw, &mut pos)?;
            let key_len = slice_varlong(raw, &mut pos)?;
            let key = if key_len < 0 {
                None
            } else {
                let k = raw
                    .get(pos..pos + key_len as usize)
                    .filter(|_| pos + key_len as usize <= end)
                    .ok_or(RecordsError::Malformed("key extends past the record"))?;
                pos += key_len as usize;
                Some(k)
            };
            let value_len = slice_varlong(raw, &mut pos)?;
            if pos > end {
                return Err(RecordsError::Malformed("record shorter than its fields"));
            }
            pos = end;
            Ok(RawRecord {
                offset: h.base_offset.saturating_add(offset_delta),
                timestamp: if h.is_log_append_time() {
                    h.max_timestamp
                } else {
                    h.base_timestamp.saturating_add(timestamp_delta)
                },
                key,
                value_is_null: value_len < 0,
                bytes: &raw[start..end],
            })
        })();
        if r.is_err() {
            failed = true;
        }
        Some(r)
    })
}

/// The records section of a batch, decompressed if needed (borrowed when uncompressed).
pub fn records_section<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, RecordsError> {
    if header.compression() == 0 {
        return Ok(std::borrow::Cow::Borrowed(
            &batch[HEADER_LEN.min(batch.len())..],
        ));
    }
    decompress(header, batch, MAX_DECOMPRESSED).map(std::borrow::Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::super::batch::check_stored;
    use super::super::batch::test_util::make_batch_with;
    use super::*;
    use kafka_protocol::records::Compression as C;

    #[test]
    fn walks_records_of_every_codec() {
        for codec in [C::None, C::Gzip, C::Snappy, C::Lz4, C::Zstd] {
            let b = make_batch_with(20, 5_000, 300, codec);
            let h = check_stored(&b).unwrap();
            let mut seen = vec![];
            let none = find_record(&h, &b, |o, t| {
                seen.push((o, t));
                false
            })
            .unwrap();
            assert!(none.is_none());
            assert_eq!(seen.len(), 20, "{codec:?}");
            assert_eq!(seen[7], (7, 5_007), "{codec:?}");
            let hit = find_record(&h, &b, |_, t| t >= 5_013).unwrap();
            assert_eq!(hit, Some((13, 5_013)), "{codec:?}");
            let raw = decompress(&h, &b, MAX_DECOMPRESSED).unwrap();
            assert!(raw.len() > 20 * 300);
            assert!(matches!(
                decompress(&h, &b, 100),
                Err(RecordsError::TooLarge(100))
            ));
        }
    }

    #[test]
    fn parses_keys_values_and_raw_bytes() {
        for codec in [C::None, C::Gzip, C::Zstd] {
            let b = make_batch_with(5, 7_000, 20, codec);
            let h = check_stored(&b).unwrap();
            let raw = records_section(&h, &b).unwrap();
            let recs: Vec<_> = parse_records(&h, &raw).collect::<Result<_, _>>().unwrap();
            assert_eq!(recs.len(), 5);
            assert_eq!(recs[3].offset, 3);
            assert_eq!(recs[3].timestamp, 7_003);
            assert!(recs[3].key.is_some());
            assert!(!recs[3].value_is_null);
            let total: usize = recs.iter().map(|r| r.bytes.len()).sum();
            assert_eq!(total, raw.len(), "{codec:?}");
        }
    }

    #[test]
    fn zstd_bomb_is_bounded() {
        // 300 MiB of zeros compress to a few KiB.
        let zeros = std::io::repeat(0).take(300 << 20);
        let compressed = zstd::stream::encode_all(zeros, 3).unwrap();
        assert!(compressed.len() < 1 << 20);
        let mut batch = vec![0u8; HEADER_LEN];
        batch.extend_from_slice(&compressed);
        batch[16] = 2;
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[21..23].copy_from_slice(&4i16.to_be_bytes());
        batch[57..61].copy_from_slice(&1i32.to_be_bytes());
        let h = BatchHeader::parse(&batch).unwrap();
        assert!(matches!(
            decompress(&h, &batch, MAX_DECOMPRESSED),
            Err(RecordsError::TooLarge(_))
        ));
        // The record walker stops at the first "record": a length of 0 is malformed.
        assert!(find_record(&h, &Bytes::from(batch), |_, _| false).is_err());
    }
}
