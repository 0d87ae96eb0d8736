//! Produce load: pre-built record batches (client-side cost stays tiny), a window of
//! pipelined requests per connection, optional fixed rate.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::Connection;

#[derive(Clone, Debug)]
pub struct ProduceOpts {
    pub topic: String,
    pub record_size: usize,
    pub batch_records: usize,
    pub acks: i16,
    pub in_flight: usize,
    pub duration: Duration,
    /// Total bytes per second over all connections; None = as fast as possible.
    pub rate: Option<f64>,
    pub compression: Compression,
}

pub struct ProduceStats {
    pub records: u64,
    pub payload_bytes: u64,
    pub batch_bytes: u64,
    pub requests: u64,
    pub elapsed: Duration,
    /// Request latency in microseconds, from when the request was due (fixed rate) or
    /// sent (unlimited).
    pub latency_us: Histogram<u64>,
    /// Request latency from the moment the request was actually written to the socket.
    pub service_us: Histogram<u64>,
}

pub fn payload(len: usize, seed: u64) -> Bytes {
    // xorshift: incompressible enough to be honest about bytes on the wire.
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// A record without producer id or sequence (not idempotent) at position `index` of
/// its batch. The sequence keeps the batch's base sequence at -1: kafka-protocol groups
/// records into one batch while offset - sequence is constant.
pub fn plain_record(index: usize, timestamp: i64, key: Option<Bytes>, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        sequence: index as i32 - 1,
        timestamp,
        key,
        value: Some(value),
        headers: IndexMap::new(),
    }
}

fn build_batch(opts: &ProduceOpts, partition: i32) -> anyhow::Result<(Bytes, u64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let records: Vec<Record> = (0..opts.batch_records)
        .map(|i| {
            plain_record(
                i,
                now,
                Some(Bytes::from(format!("key-{partition:04}-{i:06}"))),
                payload(opts.record_size, (partition as u64) << 32 | i as u64),
            )
        })
        .collect();
    let payload_bytes = records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
        .sum::<usize>() as u64;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: opts.compression,
        },
    )?;
    Ok((buf.freeze(), payload_bytes))
}

/// A produce request with one record batch per partition of `topic`.
pub fn request(topic: &str, acks: i16, batches: &[(i32, Bytes)]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(
                    batches
                        .iter()
                        .map(|(p, b)| {
                            PartitionProduceData::default()
                                .with_index(*p)
                                .with_records(Some(b.clone()))
                        })
                        .collect(),
                ),
        ])
}

/// Waits until every partition takes writes: one record each, retried while the broker
/// answers that the partition is not ready yet (a just-created partition may still be
/// loading, as clients' own retries would hide), for at most 10 s.
pub async fn wait_writable(
    conn: &mut Connection,
    opts: &ProduceOpts,
    partitions: &[i32],
) -> anyhow::Result<()> {
    const NOT_READY: [i16; 3] = [3, 5, 6]; // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER
    let version = conn.pick_version(ApiKey::Produce, (3, 12))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let one = ProduceOpts {
        batch_records: 1,
        ..opts.clone()
    };
    for &p in partitions {
        let (batch, _) = build_batch(&one, p)?;
        loop {
            let req = request(&opts.topic, 1, &[(p, batch.clone())]);
            let resp: ProduceResponse = conn.call(ApiKey::Produce, version, &req).await?;
            let code = resp
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .map(|r| r.error_code)
                .find(|c| *c != 0);
            match code {
                None => break,
                Some(c) if NOT_READY.contains(&c) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(_) => check(&resp)?,
            }
        }
    }
    Ok(())
}

/// Fails on the first partition error in a produce response.
pub fn check(resp: &ProduceResponse) -> anyhow::Result<()> {
    for t in &resp.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                bail!(
                    "produce to {}/{} failed with error {}",
                    t.name.0,
                    p.index,
                    p.error_code
                );
            }
        }
    }
    Ok(())
}

/// Runs one producer connection over `partitions`.
pub async fn run(
    addr: String,
    opts: ProduceOpts,
    partitions: Vec<i32>,
    rate_share: Option<f64>,
) -> anyhow::Result<ProduceStats> {
    let mut conn = Connection::connect(&addr).await?;
    // v3-v12 address topics by name.
    let version = conn.pick_version(ApiKey::Produce, (3, 12))?;
    let mut batches = Vec::new();
    let mut payload_per_request = 0u64;
    let mut batch_bytes_per_request = 0u64;
    for p in &partitions {
        let (b, pb) = build_batch(&opts, *p)?;
        payload_per_request += pb;
        batch_bytes_per_request += b.len() as u64;
        batches.push((*p, b));
    }
    let interval = rate_share.map(|r| Duration::from_secs_f64(batch_bytes_per_request as f64 / r));
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut service_us = latency_us.clone();
    let mut requests = 0u64;
    let started = Instant::now();
    let deadline = started + opts.duration;
    // With a fixed rate, latency counts from when a request was due, not when it went out,
    // so a stalled broker cannot hide queueing (coordinated omission).
    let mut due: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut next_due = started;
    loop {
        let now = Instant::now();
        let sending_done = now >= deadline;
        if sending_done && conn.in_flight() == 0 {
            break;
        }
        let can_send = !sending_done && conn.in_flight() < opts.in_flight;
        if can_send {
            if let Some(iv) = interval {
                if now < next_due {
                    if conn.in_flight() > 0 {
                        // Collect a response while waiting for the next slot.
                        if let Ok(r) =
                            tokio::time::timeout(next_due - now, conn.recv::<ProduceResponse>())
                                .await
                        {
                            finish(r?, &mut due, &mut latency_us, &mut service_us)?;
                        }
                    } else {
                        tokio::time::sleep_until(next_due.into()).await;
                    }
                    continue;
                }
                due.push_back(next_due);
                next_due += iv;
            } else {
                due.push_back(now);
            }
            conn.send(
                ApiKey::Produce,
                version,
                &request(&opts.topic, opts.acks, &batches),
            )
            .await?;
            requests += 1;
            if interval.is_some() || conn.in_flight() >= opts.in_flight {
                conn.flush().await?;
            }
        } else {
            conn.flush().await?;
            let r = conn.recv::<ProduceResponse>().await?;
            finish(r, &mut due, &mut latency_us, &mut service_us)?;
        }
    }
    Ok(ProduceStats {
        records: requests * (opts.batch_records * partitions.len()) as u64,
        payload_bytes: requests * payload_per_request,
        batch_bytes: requests * batch_bytes_per_request,
        requests,
        elapsed: started.elapsed(),
        latency_us,
        service_us,
    })
}

fn finish(
    r: crate::client::Received<ProduceResponse>,
    due: &mut std::collections::VecDeque<Instant>,
    hist: &mut Histogram<u64>,
    service: &mut Histogram<u64>,
) -> anyhow::Result<()> {
    check(&r.body)?;
    let from = due.pop_front().unwrap_or(r.sent);
    hist.record(from.elapsed().as_micros().max(1) as u64)?;
    service.record(r.sent.elapsed().as_micros().max(1) as u64)?;
    Ok(())
}
