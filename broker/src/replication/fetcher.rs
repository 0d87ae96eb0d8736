//! Follower side of replication: one task per leader broker fetches every partition this
//! broker follows from it (Kafka's replica fetcher threads), truncating divergent tails
//! first with OffsetForLeaderEpoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{ClientError, LeaderConnection};
use crate::broker::{Broker, now_ms};
use crate::metadata::ClusterMetadata;
use crate::replica::Partition;

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 8;
/// ListOffsets: the leader's local log start (KIP-405).
const EARLIEST_LOCAL: i64 = -4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A partition whose leader answered with a leadership error waits for new metadata.
const LEADERSHIP_BACKOFF: Duration = Duration::from_millis(200);

type Key = (Arc<str>, i32);

#[derive(Debug, Clone)]
struct FetchState {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Truncate to the leader's log before fetching (new leader epoch, or a divergence).
    truncate: bool,
    /// Skip until then (after an error).
    delay_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Shared {
    partitions: Mutex<BTreeMap<Key, FetchState>>,
    wake: Notify,
    throttle: Mutex<Bucket>,
}

/// Token bucket for `follower.replication.throttled.rate` (one second of burst).
#[derive(Debug, Default)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, rate: f64) -> f64 {
        let now = Instant::now();
        let elapsed = self
            .last
            .map_or(1.0, |l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.tokens
    }
}

/// The throttle for moving replicas, if one is set (dynamic broker or cluster setting).
fn throttle_rate(broker: &Broker) -> Option<u64> {
    let md = broker.metadata.current();
    md.broker_configs
        .get(&broker.node_id)
        .and_then(|c| c.get(crate::rebalance::THROTTLE_CONFIG))
        .or_else(|| md.cluster_configs.get(crate::rebalance::THROTTLE_CONFIG))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|r| *r > 0 && *r < i64::MAX as u64)
}

#[derive(Debug)]
struct Fetcher {
    addr: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

/// The fetchers of this broker, one per leader it follows.
#[derive(Debug, Default)]
pub struct ReplicaFetchers {
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaFetchers {
    /// Follows exactly the partitions whose committed leadership names another broker as
    /// leader; call after every applied metadata image.
    pub fn sync(&self, broker: &Arc<Broker>, md: &ClusterMetadata) {
        let me = broker.node_id;
        let listener = &broker.config.replication.inter_broker_listener;
        let mut wanted: HashMap<i32, Vec<(Arc<Partition>, i32)>> = HashMap::new();
        for p in broker.replicas.all_partitions() {
            let l = p.leadership();
            if l.leader >= 0 && l.leader != me && l.replicas.contains(&me) && !p.is_closed() {
                wanted
                    .entry(l.leader)
                    .or_default()
                    .push((p.clone(), l.leader_epoch));
            }
        }
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|leader, f| {
            let keep = wanted.contains_key(leader);
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
        for (leader, partitions) in wanted {
            let Some(addr) = md.brokers.get(&leader).and_then(|b| {
                b.endpoints
                    .iter()
                    .find(|e| e.listener == *listener)
                    .map(|e| format!("{}:{}", e.host, e.port))
            }) else {
                tracing::warn!(leader, listener = %listener,
                    "leader has no endpoint on the inter-broker listener; cannot replicate from it");
                if let Some(f) = fetchers.remove(&leader) {
                    f.cancel.cancel();
                }
                continue;
            };
            if fetchers.get(&leader).is_some_and(|f| f.addr != addr)
                && let Some(f) = fetchers.remove(&leader)
            {
                f.cancel.cancel();
            }
            let f = fetchers.entry(leader).or_insert_with(|| {
                let shared = Arc::new(Shared::default());
                let cancel = broker.shutdown.child_token();
                tokio::spawn(run(
                    broker.clone(),
                    leader,
                    addr.clone(),
                    shared.clone(),
                    cancel.clone(),
                ));
                Fetcher {
                    addr,
                    shared,
                    cancel,
                }
            });
            let mut map = f.shared.partitions.lock();
            let keys: Vec<Key> = partitions
                .iter()
                .map(|(p, _)| (p.topic.clone(), p.index))
                .collect();
            map.retain(|k, _| keys.contains(k));
            for (p, epoch) in partitions {
                let key = (p.topic.clone(), p.index);
                let same = map
                    .get(&key)
                    .is_some_and(|s| s.leader_epoch == epoch && Arc::ptr_eq(&s.partition, &p));
                if !same {
                    map.insert(
                        key,
                        FetchState {
                            partition: p,
                            leader_epoch: epoch,
                            truncate: true,
                            delay_until: None,
                        },
                    );
                }
            }
            drop(map);
            f.shared.wake.notify_one();
        }
    }

    /// Partitions followed, per leader (for status).
    pub fn followed(&self) -> Vec<(i32, usize)> {
        self.fetchers
            .lock()
            .iter()
            .map(|(l, f)| (*l, f.shared.partitions.lock().len()))
            .collect()
    }
}

fn topic_name(t: &Arc<str>) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// The states to work on now, grouped by topic.
fn ready(shared: &Shared, truncate: bool) -> Vec<(Key, FetchState)> {
    let now = Instant::now();
    shared
        .partitions
        .lock()
        .iter()
        .filter(|(_, s)| s.truncate == truncate && s.delay_until.is_none_or(|d| d <= now))
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect()
}

fn update(shared: &Shared, key: &Key, epoch: i32, f: impl FnOnce(&mut FetchState)) {
    if let Some(s) = shared.partitions.lock().get_mut(key)
        && s.leader_epoch == epoch
    {
        f(s);
    }
}

fn delay(shared: &Shared, key: &Key, epoch: i32, d: Duration) {
    update(shared, key, epoch, |s| {
        s.delay_until = Some(Instant::now() + d)
    });
}

async fn run(
    broker: Arc<Broker>,
    leader: i32,
    addr: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let backoff = Duration::from_millis(broker.config.replication.fetch_backoff_ms);
    let mut conn: Option<LeaderConnection> = None;
    let mut failing_since: Option<Instant> = None;
    tracing::info!(leader, addr = %addr, "replica fetcher started");
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let has_work = !ready(&shared, true).is_empty() || !ready(&shared, false).is_empty();
        if !has_work {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match LeaderConnection::connect(
                &addr,
                broker.node_id,
                CONNECT_TIMEOUT,
                broker.security.inter_broker_tls.as_ref(),
            )
            .await
            {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    report(&mut failing_since, leader, &e);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            },
        };
        let result = async {
            truncate_round(&broker, c, &shared).await?;
            fetch_round(&broker, c, &shared).await
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => break,
            r = result => r,
        };
        match result {
            Ok(()) => {
                if failing_since.take().is_some() {
                    tracing::info!(leader, addr = %addr, "replica fetcher reconnected");
                }
            }
            Err(e) => {
                conn = None;
                report(&mut failing_since, leader, &e);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    tracing::info!(leader, addr = %addr, "replica fetcher stopped");
}

fn report(failing_since: &mut Option<Instant>, leader: i32, e: &ClientError) {
    let since = *failing_since.get_or_insert_with(Instant::now);
    // The first failure of a leader is usually the leader moving or restarting.
    if since.elapsed() > Duration::from_secs(5) {
        tracing::warn!(leader, error = %e, failing_s = since.elapsed().as_secs(), "replica fetch from leader failing");
    } else {
        tracing::debug!(leader, error = %e, "replica fetch failed");
    }
}

/// OffsetForLeaderEpoch for partitions that start following (a new leader epoch): cut
/// what this replica has beyond the point where its log and the leader's agree.
async fn truncate_round(
    broker: &Arc<Broker>,
    c: &mut LeaderConnection,
    shared: &Shared,
) -> Result<(), ClientError> {
    let todo = ready(shared, true);
    if todo.is_empty() {
        return Ok(());
    }
    let mut topics: BTreeMap<Arc<str>, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    let mut asked = Vec::new();
    for (key, s) in &todo {
        match s.partition.latest_epoch() {
            // Nothing written under any epoch: nothing can diverge.
            None => update(shared, key, s.leader_epoch, |s| s.truncate = false),
            Some(mine) => {
                topics.entry(key.0.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(key.1)
                        .with_current_leader_epoch(s.leader_epoch)
                        .with_leader_epoch(mine),
                );
                asked.push((key.clone(), s.clone(), mine));
            }
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(broker.node_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name(&t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp: OffsetForLeaderEpochResponse = c
        .call(
            ApiKey::OffsetForLeaderEpoch,
            EPOCH_VERSION,
            &req,
            Duration::from_secs(10),
        )
        .await?;
    for t in resp.topics {
        for r in t.partitions {
            let Some((key, s, mine)) = asked
                .iter()
                .find(|(k, _, _)| *k.0 == *t.topic.0 && k.1 == r.partition)
            else {
                continue;
            };
            if r.error_code != 0 {
                tracing::debug!(topic = %key.0, partition = key.1, error = r.error_code,
                    "OffsetForLeaderEpoch refused by the leader; waiting for metadata");
                delay(shared, key, s.leader_epoch, LEADERSHIP_BACKOFF);
                continue;
            }
            let p = &s.partition;
            let leo = p.log_end_offset();
            // Kafka's rule (KIP-101/279): the leader answers with the end of the largest
            // epoch it has at or below ours. If that is ours, or we have that epoch too,
            // the logs agree up to the smaller end. If we do not have it, cut back to the
            // end of our largest epoch below it and ask again.
            let (target, again) = if r.end_offset < 0 {
                // The leader knows no epoch this old: keep only what was committed.
                (p.high_watermark(), false)
            } else if r.leader_epoch == *mine {
                (r.end_offset, false)
            } else {
                let (local_epoch, local_end) = p.local_end_offset_for_epoch(r.leader_epoch);
                if local_epoch == r.leader_epoch {
                    (r.end_offset.min(local_end), false)
                } else {
                    (local_end.max(0).min(r.end_offset), true)
                }
            };
            if target < leo
                && let Err(e) = p.truncate_to(target, s.leader_epoch)
            {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "truncation not done");
                delay(shared, key, s.leader_epoch, Duration::from_secs(1));
                continue;
            }
            if !again {
                update(shared, key, s.leader_epoch, |s| s.truncate = false);
            }
        }
    }
    Ok(())
}

/// One fetch of every partition ready to fetch; long-polls at the leader.
async fn fetch_round(
    broker: &Arc<Broker>,
    c: &mut LeaderConnection,
    shared: &Shared,
) -> Result<(), ClientError> {
    let mut todo = ready(shared, false);
    if todo.is_empty() {
        return Ok(());
    }
    let settings = &broker.config.replication;
    // Replicas a reassignment adds copy at most the throttle rate; others are not held up.
    let rate = throttle_rate(broker);
    let throttled = |s: &FetchState| {
        rate.is_some() && s.partition.leadership().adding.contains(&broker.node_id)
    };
    if let Some(rate) = rate {
        let tokens = shared.throttle.lock().refill(rate as f64);
        if tokens <= 0.0 {
            todo.retain(|(_, s)| !throttled(s));
            if todo.is_empty() {
                let wait = (-tokens / rate as f64).clamp(0.01, 1.0);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                return Ok(());
            }
        }
    }
    let mut topics: BTreeMap<Arc<str>, Vec<FetchPartition>> = BTreeMap::new();
    let mut offsets = HashMap::new();
    for (key, s) in &todo {
        let offset = s.partition.log_end_offset();
        offsets.insert(key.clone(), offset);
        topics.entry(key.0.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(key.1)
                .with_current_leader_epoch(s.leader_epoch)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(match rate {
                    Some(r) if throttled(s) => {
                        settings.fetch_max_bytes.min(r.min(i32::MAX as u64) as i32)
                    }
                    _ => settings.fetch_max_bytes,
                }),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(broker.node_id))
        .with_max_wait_ms(settings.fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(settings.fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(topic_name(&t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let wait = Duration::from_millis(settings.fetch_wait_max_ms.max(0) as u64);
    let resp: FetchResponse = c
        .call(
            ApiKey::Fetch,
            FETCH_VERSION,
            &req,
            wait + Duration::from_secs(30),
        )
        .await?;
    if resp.error_code != 0 {
        return Err(ClientError::Protocol {
            addr: c.addr().to_string(),
            key: ApiKey::Fetch,
            reason: format!("error code {}", resp.error_code),
        });
    }
    let now = now_ms();
    let mut moved = Vec::new();
    for t in resp.responses {
        for r in t.partitions {
            let key: Key = (Arc::from(t.topic.0.as_str()), r.partition_index);
            let Some((_, s)) = todo.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            let p = &s.partition;
            // The leadership may have changed while the fetch was out.
            if p.leadership().leader_epoch != s.leader_epoch || p.is_closed() {
                continue;
            }
            match ResponseError::try_from_code(r.error_code) {
                None => {
                    if let Some(records) = &r.records
                        && !records.is_empty()
                        && offsets.get(&key) == Some(&p.log_end_offset())
                        && let Err(e) =
                            p.append_as_follower(records, now, s.leader_epoch)
                                .inspect(|info| {
                                    if throttled(s) {
                                        shared.throttle.lock().tokens -= info.bytes as f64;
                                    }
                                })
                    {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e,
                            "cannot append replicated data; truncating to the leader and retrying");
                        update(shared, &key, s.leader_epoch, |s| {
                            s.truncate = true;
                            s.delay_until = Some(Instant::now() + Duration::from_secs(1));
                        });
                        continue;
                    }
                    p.set_follower_high_watermark(r.high_watermark, s.leader_epoch);
                }
                Some(
                    ResponseError::OffsetOutOfRange | ResponseError::OffsetMovedToTieredStorage,
                ) => {
                    moved.push((key.clone(), s.clone()));
                }
                Some(
                    ResponseError::NotLeaderOrFollower
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnknownTopicId,
                ) => delay(shared, &key, s.leader_epoch, LEADERSHIP_BACKOFF),
                Some(e) => {
                    tracing::warn!(topic = %key.0, partition = key.1, error = ?e,
                        "leader refused a replica fetch");
                    delay(
                        shared,
                        &key,
                        s.leader_epoch,
                        Duration::from_millis(settings.fetch_backoff_ms),
                    );
                }
            }
        }
    }
    if !moved.is_empty() {
        restart_behind(broker, c, shared, moved).await?;
    }
    Ok(())
}

/// The fetch offset is outside the leader's local log. Below its local start (retention,
/// DeleteRecords, or data only in the remote tier): start the local log over there, as
/// Kafka does for OFFSET_MOVED_TO_TIERED_STORAGE, instead of copying cold data. Beyond
/// its end: truncate against the leader.
async fn restart_behind(
    broker: &Arc<Broker>,
    c: &mut LeaderConnection,
    shared: &Shared,
    moved: Vec<(Key, FetchState)>,
) -> Result<(), ClientError> {
    let mut topics: BTreeMap<Arc<str>, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (key, s) in &moved {
        topics.entry(key.0.clone()).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(key.1)
                .with_current_leader_epoch(s.leader_epoch)
                .with_timestamp(EARLIEST_LOCAL),
        );
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(broker.node_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp: ListOffsetsResponse = c
        .call(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &req,
            Duration::from_secs(10),
        )
        .await?;
    for t in resp.topics {
        for r in t.partitions {
            let Some((key, s)) = moved
                .iter()
                .find(|(k, _)| *k.0 == *t.name.0 && k.1 == r.partition_index)
            else {
                continue;
            };
            if r.error_code != 0 || r.offset < 0 {
                delay(shared, key, s.leader_epoch, LEADERSHIP_BACKOFF);
                continue;
            }
            let p = &s.partition;
            if p.log_end_offset() < r.offset {
                if let Err(e) = p.restart_log_at(r.offset, s.leader_epoch) {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e,
                        "cannot restart the local log at the leader's start");
                    delay(shared, key, s.leader_epoch, Duration::from_secs(1));
                }
            } else {
                update(shared, key, s.leader_epoch, |s| s.truncate = true);
            }
        }
    }
    Ok(())
}
