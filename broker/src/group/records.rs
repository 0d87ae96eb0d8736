//! Keys and values of `__consumer_offsets` records, in Kafka's own schemas, so Kafka's
//! tools (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`) can read them:
//! an offset commit is key v1 `(group, topic, partition)` with value v3 `(offset, leader
//! epoch, metadata, commit timestamp)`; group metadata is key v2 `(group)` with value v3.
//! A null value (tombstone) deletes the key; the topic is compacted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct FormatError(&'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&bytes[..len]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize) -> Result<(), FormatError> {
    if b.remaining() < n {
        Err(FormatError("truncated"))
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut Bytes) -> Result<i16, FormatError> {
    need(b, 2)?;
    Ok(b.get_i16())
}
fn get_i32(b: &mut Bytes) -> Result<i32, FormatError> {
    need(b, 4)?;
    Ok(b.get_i32())
}
fn get_i64(b: &mut Bytes) -> Result<i64, FormatError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut Bytes) -> Result<Option<String>, FormatError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize)?;
    let raw = b.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| FormatError("string is not UTF-8"))
}

fn get_str(b: &mut Bytes) -> Result<String, FormatError> {
    get_nullable_str(b)?.ok_or(FormatError("null string"))
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, FormatError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize)?;
    Ok(b.split_to(len as usize))
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, FormatError> {
        match get_i16(&mut b)? {
            0 | 1 => Ok(RecordKey::Offset {
                group: get_str(&mut b)?,
                topic: get_str(&mut b)?,
                partition: get_i32(&mut b)?,
            }),
            2 => Ok(RecordKey::Group {
                group: get_str(&mut b)?,
            }),
            _ => Err(FormatError("unknown key version")),
        }
    }

    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, FormatError> {
        let version = get_i16(&mut b)?;
        let offset = get_i64(&mut b)?;
        let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
        let metadata = get_str(&mut b)?;
        let commit_timestamp = get_i64(&mut b)?;
        Ok(Self {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nullable_str(&mut b, self.protocol.as_deref());
        put_nullable_str(&mut b, self.leader.as_deref());
        b.put_i64(self.state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_nullable_str(&mut b, m.instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Self, FormatError> {
        let version = get_i16(&mut b)?;
        if !(0..=3).contains(&version) {
            return Err(FormatError("unknown group metadata version"));
        }
        let protocol_type = get_str(&mut b)?;
        let generation = get_i32(&mut b)?;
        let protocol = get_nullable_str(&mut b)?;
        let leader = get_nullable_str(&mut b)?;
        let state_timestamp = if version >= 2 { get_i64(&mut b)? } else { -1 };
        let count = get_i32(&mut b)?.max(0);
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = get_str(&mut b)?;
            let instance_id = if version >= 3 {
                get_nullable_str(&mut b)?
            } else {
                None
            };
            let client_id = get_str(&mut b)?;
            let client_host = get_str(&mut b)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut b)? } else { -1 };
            let session_timeout_ms = get_i32(&mut b)?;
            members.push(MemberValue {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: get_bytes(&mut b)?,
                assignment: get_bytes(&mut b)?,
            });
        }
        Ok(Self {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

/// Kafka's partition of a group in `__consumer_offsets`: Java's `String.hashCode` of the
/// group id, made non-negative, modulo the partition count.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        // Values computed with Java: Math.abs("...".hashCode()) % 50 style (Utils.abs).
        assert_eq!(
            partition_for("my-group", 50),
            (java("my-group") & 0x7fff_ffff) % 50
        );
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(java("hello"), 99_162_322);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }

    fn java(s: &str) -> i32 {
        s.encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }

    #[test]
    fn round_trips() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let k = RecordKey::Group { group: "g".into() };
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1_000,
        };
        assert_eq!(OffsetValue::decode(v.encode()).unwrap(), v);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_timestamp: 9,
            members: vec![MemberValue {
                member_id: "a".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(g.encode()).unwrap(), g);
        assert!(RecordKey::decode(Bytes::from_static(&[0, 9])).is_err());
        assert!(GroupValue::decode(Bytes::from_static(&[0, 3, 0])).is_err());
    }
}
