//! Consume load: sequential fetches per connection (as Kafka consumers do), counting
//! records and bytes from batch headers only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Connection;

pub struct ConsumeOpts {
    pub topic: String,
    pub duration: Duration,
    pub until_end: bool,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
}

pub struct ConsumeStats {
    pub records: u64,
    pub batch_bytes: u64,
    pub fetches: u64,
    pub elapsed: Duration,
}

/// ListOffsets for `timestamp` (-2 earliest, -1 latest) of each partition.
pub async fn list_offsets(
    conn: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<HashMap<i32, i64>> {
    let v = conn.pick_version(ApiKey::ListOffsets, (1, 7))?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
        ]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, v, &req).await?;
    let mut out = HashMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets for partition {} failed with error {}",
                    p.partition_index,
                    p.error_code
                );
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

pub fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}
pub fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Walks complete batches: (records, bytes, next offset).
fn scan_batches(records: &[u8], from: i64) -> (u64, u64, Option<i64>) {
    let (mut pos, mut count, mut bytes, mut next) = (0usize, 0u64, 0u64, None);
    while records.len() - pos >= 61 {
        let base = be_i64(&records[pos..]);
        let len = be_i32(&records[pos + 8..]) as usize + 12;
        if pos + len > records.len() {
            break;
        }
        let last_delta = be_i32(&records[pos + 23..]) as i64;
        let n = be_i32(&records[pos + 57..]) as i64;
        if base + last_delta >= from {
            count += n.max(0) as u64;
            bytes += len as u64;
        }
        next = Some(base + last_delta + 1);
        pos += len;
    }
    (count, bytes, next)
}

pub async fn run(
    addr: String,
    opts: &ConsumeOpts,
    partitions: Vec<i32>,
    mut offsets: HashMap<i32, i64>,
    ends: HashMap<i32, i64>,
) -> anyhow::Result<ConsumeStats> {
    let mut conn = Connection::connect(&addr).await?;
    let version = conn.pick_version(ApiKey::Fetch, (4, 12))?;
    let started = Instant::now();
    let deadline = started + opts.duration;
    let (mut records, mut batch_bytes, mut fetches) = (0u64, 0u64, 0u64);
    loop {
        let remaining: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !opts.until_end || offsets.get(p) < ends.get(p))
            .collect();
        if remaining.is_empty() || Instant::now() >= deadline {
            break;
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(opts.max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(opts.topic.clone())))
                    .with_partitions(
                        remaining
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(offsets.get(p).copied().unwrap_or(0))
                                    .with_partition_max_bytes(opts.partition_max_bytes)
                            })
                            .collect(),
                    ),
            ]);
        let resp: FetchResponse = conn.call(ApiKey::Fetch, version, &req).await?;
        fetches += 1;
        if resp.error_code != 0 {
            bail!("fetch failed with error {}", resp.error_code);
        }
        for t in &resp.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    bail!(
                        "fetch of partition {} failed with error {}",
                        p.partition_index,
                        p.error_code
                    );
                }
                let from = offsets.get(&p.partition_index).copied().unwrap_or(0);
                if let Some(data) = &p.records {
                    let (n, b, next) = scan_batches(data, from);
                    records += n;
                    batch_bytes += b;
                    if let Some(next) = next {
                        offsets.insert(p.partition_index, next);
                    }
                }
            }
        }
    }
    Ok(ConsumeStats {
        records,
        batch_bytes,
        fetches,
        elapsed: started.elapsed(),
    })
}
