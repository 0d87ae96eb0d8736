//! End-to-end latency through a consumer group: N consumers join one group (see
//! `group.rs`), each fetching the partitions the group assigned it from the latest offset;
//! once every partition is being fetched, one producer sends records on a fixed schedule.
//! Each value starts with the time the record was due to be sent (µs since the UNIX
//! epoch, big-endian u64) and the run id (u64); a consumer's latency sample is the wall
//! clock when its fetch response arrived minus that time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::client::Connection;
use crate::consume::{be_i32, be_i64};
use crate::group::{self, Assignment, GroupOpts, MemberStats};
use crate::{consume, produce, topic};

/// Bytes at the start of every value: due time (µs since the UNIX epoch), then run id.
pub const HEADER_BYTES: usize = 16;
/// Records due at once (the producer fell behind) go out in requests of at most this many.
const MAX_RECORDS_PER_REQUEST: u64 = 1024;
/// JoinGroup's rebalance timeout: how long the coordinator waits for members to rejoin.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// For requests the broker answers at once (plus max_wait_ms for fetches).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Produce requests carry timeout_ms 30 s; allow a little more for the response.
const PRODUCE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(40);
const FETCH_MAX_BYTES: i32 = 52_428_800;
const PARTITION_MAX_BYTES: i32 = 1_048_576;
/// Record batch header up to and including the record count.
const BATCH_HEADER: usize = 61;

#[derive(Clone, Debug)]
pub struct E2eOpts {
    pub topic: String,
    /// Create the topic with this many partitions if missing (0: don't create).
    pub create_partitions: i32,
    pub consumers: usize,
    pub group: Option<String>,
    /// Records per second.
    pub rate: f64,
    pub record_size: usize,
    pub duration: Duration,
    pub acks: i16,
    pub in_flight: usize,
    pub fetch_max_wait_ms: i32,
    pub session_timeout_ms: i32,
    pub heartbeat: Duration,
    pub join_timeout: Duration,
    pub drain_timeout: Duration,
}

pub struct E2eReport {
    pub group: String,
    pub partitions: usize,
    /// From starting the consumers until every partition was being fetched.
    pub stable_after: Duration,
    pub generation_start: i32,
    pub generation_end: i32,
    /// Completed joins over all members (= consumers without rebalances).
    pub joins: u32,
    pub produced: u64,
    pub requests: u64,
    pub produce_elapsed: Duration,
    /// How far the producer fell behind its schedule at worst.
    pub producer_max_lag: Duration,
    pub consumed: u64,
    /// Records read again (a partition read by two members around a rebalance).
    pub duplicates: u64,
    /// Records on the topic that this run did not produce.
    pub other_records: u64,
    pub fetches: u64,
    /// (partition, produced, consumed) where the two differ.
    pub mismatched: Vec<(i32, u64, u64)>,
    pub latency_us: Histogram<u64>,
    /// Members that failed after the measurement (leaving the group).
    pub member_errors: Vec<String>,
}

/// State the consumers share.
struct Shared {
    topic: String,
    run_id: u64,
    max_wait_ms: i32,
    /// Next offset to read per partition, over all consumers: a partition that moves in a
    /// rebalance continues where its previous owner stopped (as with offsets committed
    /// after every fetch), and no record is counted twice.
    positions: Mutex<HashMap<i32, i64>>,
    /// Records of this run consumed so far.
    consumed: AtomicU64,
}

struct FetchStats {
    consumed: BTreeMap<i32, u64>,
    duplicates: u64,
    other: u64,
    fetches: u64,
    latency_us: Histogram<u64>,
}

struct ProducerStats {
    produced: BTreeMap<i32, u64>,
    records: u64,
    requests: u64,
    elapsed: Duration,
    max_lag: Duration,
}

fn micros_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64)
}

fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

pub async fn run(
    bootstrap: &str,
    conn: &mut Connection,
    opts: &E2eOpts,
) -> anyhow::Result<E2eReport> {
    let layout = topic::ensure(conn, &opts.topic, opts.create_partitions, &[]).await?;
    let leader = layout.single_leader()?;
    if layout.partitions.is_empty() {
        bail!("topic {} has no partitions", opts.topic);
    }
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let group = opts
        .group
        .clone()
        .unwrap_or_else(|| format!("sluice-loadgen-e2e-{run_id:x}"));
    let gopts = Arc::new(GroupOpts {
        group: group.clone(),
        topic: opts.topic.clone(),
        partitions: layout.partitions.clone(),
        session_timeout_ms: opts.session_timeout_ms,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        heartbeat: opts.heartbeat,
        join_timeout: opts.join_timeout,
    });
    let shared = Arc::new(Shared {
        topic: opts.topic.clone(),
        run_id,
        max_wait_ms: opts.fetch_max_wait_ms,
        positions: Mutex::new(HashMap::new()),
        consumed: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Tasks {
        members: Vec::new(),
        fetchers: Vec::new(),
    };
    let mut active = Vec::new();
    for _ in 0..opts.consumers {
        let (owned_tx, owned_rx) = watch::channel(Assignment::none());
        let (active_tx, active_rx) = watch::channel(Assignment::none());
        tasks.members.push(tokio::spawn(group::run_member(
            bootstrap.to_string(),
            gopts.clone(),
            owned_tx,
            stop_rx.clone(),
        )));
        tasks.fetchers.push(tokio::spawn(fetch(
            leader.clone(),
            shared.clone(),
            owned_rx,
            active_tx,
            stop_rx.clone(),
        )));
        active.push(active_rx);
    }

    let measured = measure(
        &mut tasks,
        &active,
        &shared,
        opts,
        &leader,
        &layout.partitions,
        &group,
    )
    .await;

    // Whatever happened: stop fetching, leave the group.
    stop_tx.send_replace(true);
    let fetch_limit =
        Duration::from_millis(opts.fetch_max_wait_ms.max(0) as u64) + REQUEST_TIMEOUT * 2;
    let mut fetch_results = Vec::new();
    for f in tasks.fetchers {
        fetch_results.push(join_task(f, fetch_limit, "consumer fetch").await);
    }
    let mut joins = 0;
    let mut member_errors = Vec::new();
    for m in tasks.members {
        match join_task(m, REQUEST_TIMEOUT * 2, "consumer group member").await {
            Ok(s) => joins += s.joins,
            Err(e) => member_errors.push(format!("{e:#}")),
        }
    }
    let measured = measured?;
    let mut latency_us = latency_histogram()?;
    let (mut consumed, mut duplicates, mut other, mut fetches) =
        (BTreeMap::<i32, u64>::new(), 0, 0, 0);
    for r in fetch_results {
        let s = r?;
        latency_us.add(&s.latency_us)?;
        for (p, n) in s.consumed {
            *consumed.entry(p).or_default() += n;
        }
        duplicates += s.duplicates;
        other += s.other;
        fetches += s.fetches;
    }
    let p = &measured.producer;
    let mismatched = layout
        .partitions
        .iter()
        .filter_map(|part| {
            let sent = p.produced.get(part).copied().unwrap_or(0);
            let got = consumed.get(part).copied().unwrap_or(0);
            (sent != got).then_some((*part, sent, got))
        })
        .collect();
    Ok(E2eReport {
        group,
        partitions: layout.partitions.len(),
        stable_after: measured.stable_after,
        generation_start: measured.generation_start,
        generation_end: measured.generation_end,
        joins,
        produced: p.records,
        requests: p.requests,
        produce_elapsed: p.elapsed,
        producer_max_lag: p.max_lag,
        consumed: consumed.values().sum(),
        duplicates,
        other_records: other,
        fetches,
        mismatched,
        latency_us,
        member_errors,
    })
}

struct Measured {
    stable_after: Duration,
    generation_start: i32,
    generation_end: i32,
    producer: ProducerStats,
}

/// Waits for a stable group, produces, and waits for the consumers to catch up.
async fn measure(
    tasks: &mut Tasks,
    active: &[watch::Receiver<Assignment>],
    shared: &Shared,
    opts: &E2eOpts,
    leader: &str,
    partitions: &[i32],
    group: &str,
) -> anyhow::Result<Measured> {
    let t0 = Instant::now();
    let generation_start = loop {
        if let Some(g) = stable(active, partitions) {
            break g;
        }
        tasks.check().await?;
        if t0.elapsed() >= opts.join_timeout {
            let state: Vec<String> = active
                .iter()
                .map(|a| {
                    let a = a.borrow();
                    format!("generation {} partitions {:?}", a.generation, a.partitions)
                })
                .collect();
            bail!(
                "consumer group {group} did not assign and fetch all {} partitions of {} within {} s; consumers: [{}]",
                partitions.len(),
                opts.topic,
                opts.join_timeout.as_secs(),
                state.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stable_after = t0.elapsed();

    let mut producer = tokio::spawn(produce_at_rate(
        leader.to_string(),
        opts.clone(),
        partitions.to_vec(),
        shared.run_id,
    ));
    let producer = loop {
        let done = tokio::select! {
            r = &mut producer => Some(r),
            () = tokio::time::sleep(Duration::from_millis(100)) => None,
        };
        if let Some(r) = done {
            break r.context("producer task")??;
        }
        if let Err(e) = tasks.check().await {
            producer.abort();
            return Err(e);
        }
    };

    let drain_deadline = Instant::now() + opts.drain_timeout;
    while shared.consumed.load(Ordering::Relaxed) < producer.records
        && Instant::now() < drain_deadline
    {
        tasks.check().await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let generation_end = active
        .iter()
        .map(|a| a.borrow().generation)
        .max()
        .unwrap_or(generation_start);
    Ok(Measured {
        stable_after,
        generation_start,
        generation_end,
        producer,
    })
}

/// The generation in which every consumer is fetching and all partitions are covered.
fn stable(active: &[watch::Receiver<Assignment>], partitions: &[i32]) -> Option<i32> {
    let mut generation = None;
    let mut covered = Vec::new();
    for a in active {
        let a = a.borrow();
        if a.generation < 0 || generation.is_some_and(|g| g != a.generation) {
            return None;
        }
        generation = Some(a.generation);
        covered.extend_from_slice(&a.partitions);
    }
    covered.sort_unstable();
    (covered == partitions).then_some(generation).flatten()
}

struct Tasks {
    members: Vec<JoinHandle<anyhow::Result<MemberStats>>>,
    fetchers: Vec<JoinHandle<anyhow::Result<FetchStats>>>,
}

impl Tasks {
    /// Fails if a member or fetcher ended (they only end on errors before the stop).
    async fn check(&mut self) -> anyhow::Result<()> {
        if let Some(i) = self.members.iter().position(|t| t.is_finished()) {
            let t = self.members.swap_remove(i);
            t.await.context("consumer group member task")??;
            bail!("a consumer group member stopped early");
        }
        if let Some(i) = self.fetchers.iter().position(|t| t.is_finished()) {
            let t = self.fetchers.swap_remove(i);
            t.await.context("consumer fetch task")??;
            bail!("a consumer stopped fetching early");
        }
        Ok(())
    }
}

async fn join_task<T>(
    task: JoinHandle<anyhow::Result<T>>,
    limit: Duration,
    what: &str,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, task).await {
        Ok(r) => r.with_context(|| format!("{what} task"))?,
        Err(_) => bail!("{what} task did not stop within {} s", limit.as_secs()),
    }
}

/// One consumer's fetch loop: fetches whatever its member currently owns, from the shared
/// positions (initialised to the latest offsets), until `stop`.
async fn fetch(
    addr: String,
    shared: Arc<Shared>,
    mut owned: watch::Receiver<Assignment>,
    active: watch::Sender<Assignment>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<FetchStats> {
    let mut conn = Connection::connect(&addr).await?;
    let version = conn.pick_version(ApiKey::Fetch, (4, 12))?;
    let mut stats = FetchStats {
        consumed: BTreeMap::new(),
        duplicates: 0,
        other: 0,
        fetches: 0,
        latency_us: latency_histogram()?,
    };
    let limit = Duration::from_millis(shared.max_wait_ms.max(0) as u64) + REQUEST_TIMEOUT;
    loop {
        if *stop.borrow() {
            return Ok(stats);
        }
        let current = owned.borrow_and_update().clone();
        if current.partitions.is_empty() {
            active.send_replace(current);
            let member_gone = tokio::select! {
                r = owned.changed() => r.is_err(),
                () = group::stopped(&mut stop) => false,
            };
            if member_gone {
                // Its error surfaces through its own task; wait to be stopped.
                group::stopped(&mut stop).await;
            }
            continue;
        }
        let offsets: Vec<(i32, i64)> = {
            let mut pos = shared.positions.lock().await;
            let new: Vec<i32> = current
                .partitions
                .iter()
                .copied()
                .filter(|p| !pos.contains_key(p))
                .collect();
            if !new.is_empty() {
                // auto.offset.reset=latest: nothing committed, start at the end.
                let latest = consume::list_offsets(&mut conn, &shared.topic, &new, -1)
                    .await
                    .with_context(|| format!("latest offsets of {} at {addr}", shared.topic))?;
                for p in new {
                    let o = latest.get(&p).copied().with_context(|| {
                        format!(
                            "ListOffsets at {addr} returned no offset for {}/{p}",
                            shared.topic
                        )
                    })?;
                    pos.insert(p, o);
                }
            }
            current
                .partitions
                .iter()
                .map(|p| (*p, pos.get(p).copied().unwrap_or(0)))
                .collect()
        };
        if *active.borrow() != current {
            active.send_replace(current);
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(shared.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(shared.topic.clone())))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|(p, o)| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(*o)
                                    .with_partition_max_bytes(PARTITION_MAX_BYTES)
                            })
                            .collect(),
                    ),
            ]);
        let resp: FetchResponse = conn
            .call_within(ApiKey::Fetch, version, &req, limit)
            .await
            .with_context(|| format!("fetching {}", shared.topic))?;
        let now_us = micros_now()?;
        stats.fetches += 1;
        if resp.error_code != 0 {
            bail!(
                "fetch of {} from {addr} failed with error {}",
                shared.topic,
                resp.error_code
            );
        }
        let mut pos = shared.positions.lock().await;
        for t in &resp.responses {
            for p in &t.partitions {
                let part = p.partition_index;
                if p.error_code != 0 {
                    bail!(
                        "fetch of {}/{part} from {addr} failed with error {}",
                        shared.topic,
                        p.error_code
                    );
                }
                let Some(data) = &p.records else { continue };
                let Some(position) = pos.get_mut(&part) else {
                    bail!(
                        "fetch response from {addr} has partition {}/{part}, which was not requested",
                        shared.topic
                    );
                };
                let n = read_batches(data, part, position, now_us, shared.run_id, &mut stats)
                    .with_context(|| {
                        format!("records of {}/{part} fetched from {addr}", shared.topic)
                    })?;
                shared.consumed.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Counts the records of complete batches at or after `position` (a fetch may end with
/// a partial batch) and advances it. Returns how many records of this run it read.
fn read_batches(
    data: &Bytes,
    partition: i32,
    position: &mut i64,
    now_us: u64,
    run_id: u64,
    stats: &mut FetchStats,
) -> anyhow::Result<u64> {
    let mut ours = 0;
    let mut rest = data.clone();
    while rest.len() >= BATCH_HEADER {
        let base = be_i64(&rest[0..8]);
        let len = be_i32(&rest[8..12]);
        if len < 0 {
            bail!("negative batch length {len} at offset {base}");
        }
        let len = len as usize + 12;
        if len > rest.len() {
            break;
        }
        let last = base + i64::from(be_i32(&rest[23..27]));
        let mut batch = rest.split_to(len);
        if last < *position {
            stats.duplicates += be_i32(&batch[57..61]).max(0) as u64;
            continue;
        }
        let set = RecordBatchDecoder::decode(&mut batch)
            .with_context(|| format!("decoding the batch at offset {base}"))?;
        for r in &set.records {
            if r.control {
                continue;
            }
            if r.offset < *position {
                stats.duplicates += 1;
                continue;
            }
            match r.value.as_deref().and_then(value_header) {
                Some((due_us, id)) if id == run_id => {
                    stats
                        .latency_us
                        .saturating_record(now_us.saturating_sub(due_us).max(1));
                    *stats.consumed.entry(partition).or_default() += 1;
                    ours += 1;
                }
                _ => stats.other += 1,
            }
        }
        *position = last + 1;
    }
    Ok(ours)
}

/// (due time in µs since the UNIX epoch, run id) from the start of a value.
fn value_header(v: &[u8]) -> Option<(u64, u64)> {
    let due = u64::from_be_bytes(v.get(0..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((due, id))
}

/// One producer connection sending `rate` records/s round-robin over `partitions` for
/// `duration`. Records due at the same moment share a request (one batch per partition);
/// each value carries its own due time, so falling behind shows up as latency.
async fn produce_at_rate(
    addr: String,
    opts: E2eOpts,
    partitions: Vec<i32>,
    run_id: u64,
) -> anyhow::Result<ProducerStats> {
    let mut conn = Connection::connect(&addr).await?;
    // v3-v12 address topics by name.
    let version = conn.pick_version(ApiKey::Produce, (3, 12))?;
    let total = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    let filler = produce::payload(opts.record_size.saturating_sub(HEADER_BYTES), run_id);
    let n_partitions = partitions.len().max(1) as u64;
    let mut stats = ProducerStats {
        produced: BTreeMap::new(),
        records: 0,
        requests: 0,
        elapsed: Duration::ZERO,
        max_lag: Duration::ZERO,
    };
    // Records per partition of each request in flight, oldest first.
    let mut pending: VecDeque<Vec<(i32, u64)>> = VecDeque::new();
    let (started, wall_start_us) = (Instant::now(), micros_now()?);
    let due_offset_us = |seq: u64| (seq as f64 * 1e6 / opts.rate) as u64;
    let mut next = 0u64;
    loop {
        if next >= total || conn.in_flight() >= opts.in_flight {
            if conn.in_flight() == 0 {
                break;
            }
            let r = match tokio::time::timeout(
                PRODUCE_RESPONSE_TIMEOUT,
                conn.recv::<ProduceResponse>(),
            )
            .await
            {
                Ok(r) => r?,
                Err(_) => bail!(
                    "no produce response from {addr} within {} s",
                    PRODUCE_RESPONSE_TIMEOUT.as_secs()
                ),
            };
            acked(&r.body, &mut pending, &mut stats)?;
            continue;
        }
        let due = started + Duration::from_micros(due_offset_us(next));
        let now = Instant::now();
        if now < due {
            if conn.in_flight() > 0 {
                // Collect a response while waiting for the next record's time.
                if let Ok(r) = tokio::time::timeout(due - now, conn.recv::<ProduceResponse>()).await
                {
                    acked(&r?.body, &mut pending, &mut stats)?;
                }
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
            continue;
        }
        stats.max_lag = stats.max_lag.max(now - due);
        let due_by_now = ((now - started).as_secs_f64() * opts.rate) as u64 + 1;
        let end = due_by_now
            .min(total)
            .min(next + MAX_RECORDS_PER_REQUEST)
            .max(next + 1);
        let mut records: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for seq in next..end {
            let partition = partitions
                .get((seq % n_partitions) as usize)
                .copied()
                .context("no partitions to produce to")?;
            let due_us = wall_start_us + due_offset_us(seq);
            let mut value = BytesMut::with_capacity(HEADER_BYTES + filler.len());
            value.put_u64(due_us);
            value.put_u64(run_id);
            value.extend_from_slice(&filler);
            let batch = records.entry(partition).or_default();
            let i = batch.len();
            batch.push(produce::plain_record(
                i,
                (due_us / 1000) as i64,
                None,
                value.freeze(),
            ));
        }
        let mut batches = Vec::with_capacity(records.len());
        let mut counts = Vec::with_capacity(records.len());
        for (partition, recs) in records {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                recs.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )?;
            counts.push((partition, recs.len() as u64));
            batches.push((partition, buf.freeze()));
        }
        conn.send(
            ApiKey::Produce,
            version,
            &produce::request(&opts.topic, opts.acks, &batches),
        )
        .await?;
        conn.flush().await?;
        pending.push_back(counts);
        stats.requests += 1;
        next = end;
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

fn acked(
    resp: &ProduceResponse,
    pending: &mut VecDeque<Vec<(i32, u64)>>,
    stats: &mut ProducerStats,
) -> anyhow::Result<()> {
    produce::check(resp)?;
    let counts = pending
        .pop_front()
        .context("produce response without a request")?;
    for (p, n) in counts {
        *stats.produced.entry(p).or_default() += n;
        stats.records += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, values: &[Vec<u8>]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = produce::plain_record(i, 0, None, Bytes::from(v.clone()));
                r.offset = base + i as i64;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn value(due_us: u64, run_id: u64) -> Vec<u8> {
        let mut v = due_us.to_be_bytes().to_vec();
        v.extend_from_slice(&run_id.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn reads_complete_batches_once() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(10, &[value(1_000, 7), value(2_000, 7)]));
        data.extend_from_slice(&batch(
            12,
            &[value(3_000, 7), value(4_000, 9), b"x".to_vec()],
        ));
        let second = batch(15, &[value(5_000, 7)]);
        data.extend_from_slice(&second[..second.len() - 3]);
        let data = data.freeze();
        let mut stats = FetchStats {
            consumed: BTreeMap::new(),
            duplicates: 0,
            other: 0,
            fetches: 0,
            latency_us: latency_histogram().unwrap(),
        };
        let mut position = 11;
        let ours = read_batches(&data, 3, &mut position, 10_000, 7, &mut stats).unwrap();
        assert_eq!(ours, 2);
        assert_eq!(position, 15, "stops before the partial batch");
        assert_eq!(stats.consumed[&3], 2, "offsets 11 and 12");
        assert_eq!(stats.duplicates, 1, "offset 10");
        assert_eq!(stats.other, 2, "another run's record and a short value");
        assert_eq!(stats.latency_us.len(), 2);
        assert!(stats.latency_us.equivalent(stats.latency_us.max(), 8_000));
        // Reading the same data again counts only duplicates.
        let ours = read_batches(&data, 3, &mut position, 10_000, 7, &mut stats).unwrap();
        assert_eq!(ours, 0);
        assert_eq!(stats.consumed[&3], 2);
        assert_eq!(stats.duplicates, 1 + 2 + 3);
    }
}
