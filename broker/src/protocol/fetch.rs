//! Fetch: serve byte ranges of segment files as stored, long-polling until `min_bytes`
//! are available or `max_wait_ms` passes. Fetch sessions (KIP-227) are declined
//! (session id 0), which every client handles by sending full requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::watch;

use super::{RequestContext, absent_partition_error};
use crate::replica::Partition;
use crate::replica::partition::{LogOffsets, ReadResult};
use crate::security::acl::{Operation, ResourceType};

/// One requested partition, resolved once per request.
struct Target {
    topic_idx: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    hosted: Result<Arc<Partition>, i16>,
}

enum Planned {
    Data {
        result: ReadResult,
    },
    /// Below the local log start, in the remote tier: read after planning, concurrently.
    Remote {
        offsets: LogOffsets,
        max_bytes: usize,
        min_one: bool,
    },
    Error(i16),
}

fn error_partition(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

/// Locates data for every target without reading it; stops adding data once the
/// request's `max_bytes` is reached (the first partition with data may exceed it: KIP-74).
/// `follower`: the broker id of a replica fetching (-1 for consumers).
fn plan(targets: &[Target], request_max: usize, follower: i32) -> (Vec<Planned>, usize) {
    let mut total = 0usize;
    let mut planned = targets
        .iter()
        .map(|t| {
            let p = match &t.hosted {
                Ok(p) => p,
                Err(code) => return Planned::Error(*code),
            };
            let budget = request_max.saturating_sub(total).min(t.max_bytes);
            let min_one = total == 0;
            if budget == 0 && !min_one {
                // Still report offsets, just no data.
                let r = if follower >= 0 {
                    p.read_for_follower(follower, t.fetch_offset, 0, false, t.current_leader_epoch)
                } else {
                    p.read(t.fetch_offset, 0, false, t.current_leader_epoch)
                };
                return match r {
                    Ok(mut r) => {
                        r.slice = None;
                        Planned::Data { result: r }
                    }
                    Err(e) => Planned::Error(e.error_code()),
                };
            }
            let r = if follower >= 0 {
                p.read_for_follower(
                    follower,
                    t.fetch_offset,
                    budget.max(1),
                    min_one,
                    t.current_leader_epoch,
                )
            } else {
                p.read(
                    t.fetch_offset,
                    budget.max(1),
                    min_one,
                    t.current_leader_epoch,
                )
            };
            match r {
                // Sized after the local partitions (below): a remote read that does not
                // finish in time must not have taken their share of the request.
                Ok(r) if r.remote => Planned::Remote {
                    offsets: r.offsets,
                    max_bytes: 0,
                    min_one: false,
                },
                Ok(r) => {
                    total += r.slice.as_ref().map(|s| s.len).unwrap_or(0);
                    Planned::Data { result: r }
                }
                Err(e) => Planned::Error(e.error_code()),
            }
        })
        .collect::<Vec<_>>();
    for (plan, t) in planned.iter_mut().zip(targets) {
        if let Planned::Remote {
            max_bytes, min_one, ..
        } = plan
        {
            *max_bytes = request_max.saturating_sub(total).min(t.max_bytes);
            *min_one = total == 0;
            // Counted as available: the remote read decides the size.
            total += (*max_bytes).max(1);
        }
    }
    (planned, total)
}

pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> FetchResponse {
    let broker = &ctx.broker;
    let v = ctx.version;
    if req.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    // A follower replicating from this leader: it reads past the high watermark, and its
    // fetch offset tells how far it is (what moves the high watermark and the ISR).
    let replica_id = if v >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower = replica_id >= 0;
    if follower {
        ctx.quota_exempt.store(true, Ordering::Relaxed);
    }
    // Followers need CLUSTER_ACTION (only brokers replicate); consumers READ per topic.
    let md = ctx.authorizing().then(|| broker.metadata.current());
    let follower_denied = match &md {
        Some(md) if follower => !ctx.cluster_allowed(md, Operation::ClusterAction),
        _ => false,
    };
    let mut targets = Vec::new();
    for (ti, topic) in req.topics.iter().enumerate() {
        let name: Option<Arc<str>> = if v >= 13 {
            broker.replicas.topic_name(&topic.topic_id)
        } else {
            Some(Arc::from(topic.topic.0.as_str()))
        };
        let denied = follower_denied
            || match (&md, &name) {
                (Some(md), Some(n)) if !follower => {
                    !ctx.allowed(md, Operation::Read, ResourceType::Topic, n)
                }
                _ => false,
            };
        for p in &topic.partitions {
            let hosted = match &name {
                _ if denied => Err(ResponseError::TopicAuthorizationFailed.code()),
                None => Err(ResponseError::UnknownTopicId.code()),
                Some(name) => broker
                    .replicas
                    .get(name, p.partition)
                    .ok_or_else(|| absent_partition_error(broker, name, p.partition)),
            };
            targets.push(Target {
                topic_idx: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: if v >= 9 { p.current_leader_epoch } else { -1 },
                hosted,
            });
        }
    }
    let request_max = (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);

    // Subscribe before looking, so an append between the look and the wait is not missed.
    let mut watches: Vec<watch::Receiver<i64>> = targets
        .iter()
        .filter_map(|t| {
            t.hosted.as_ref().ok().map(|p| {
                if follower {
                    p.subscribe_log_end()
                } else {
                    p.subscribe_high_watermark()
                }
            })
        })
        .collect();
    let planned = loop {
        for w in &mut watches {
            w.mark_unchanged();
        }
        let (planned, total) = plan(&targets, request_max, replica_id.max(-1));
        let has_error = planned
            .iter()
            .any(|p| matches!(p, Planned::Error(_) | Planned::Remote { .. }));
        if total >= min_bytes || has_error {
            break planned;
        }
        if tokio::time::Instant::now() >= deadline || broker.shutdown.is_cancelled() {
            break planned;
        }
        let mut changed: FuturesUnordered<_> = watches.iter_mut().map(|w| w.changed()).collect();
        let any_change = async {
            match changed.next().await {
                Some(_) => {}
                // Nothing to watch: only the deadline can end the wait.
                None => std::future::pending::<()>().await,
            }
        };
        let waiting = std::time::Instant::now();
        tokio::select! {
            _ = any_change => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutdown.cancelled() => {}
        }
        ctx.waited(waiting);
    };

    // Hot data that already satisfies the request is not held up by remote reads beyond
    // a short grace: those keep running into the chunk cache for the next fetch.
    let hot: usize = planned
        .iter()
        .map(|p| match p {
            Planned::Data { result } => result.slice.as_ref().map_or(0, |s| s.len),
            _ => 0,
        })
        .sum();
    let hot_ready = hot > 0 && hot >= min_bytes;
    let waiting = std::time::Instant::now();
    let remote = read_remote(broker, &targets, &planned, hot_ready).await;
    ctx.waited(waiting);

    let mut topics: Vec<FetchableTopicResponse> = req
        .topics
        .iter()
        .map(|t| {
            let mut r = FetchableTopicResponse::default();
            if v >= 13 {
                r.topic_id = t.topic_id;
            } else {
                r.topic = TopicName(t.topic.0.clone());
            }
            r
        })
        .collect();
    for ((t, plan), remote) in targets.iter().zip(planned).zip(remote) {
        let data = match plan {
            Planned::Remote { offsets, .. } => match remote {
                Some(Ok(records)) => {
                    if let Ok(p) = &t.hosted {
                        p.metrics
                            .bytes_out
                            .fetch_add(records.len() as u64, Ordering::Relaxed);
                    }
                    partition_data(v, t.partition, &offsets, records)
                }
                Some(Err(code)) => {
                    broker.metrics.partition_error("fetch", code);
                    error_partition(t.partition, code)
                }
                // Still downloading: answer without data; the retry finds it cached.
                None => partition_data(v, t.partition, &offsets, bytes::Bytes::new()),
            },
            Planned::Error(code) => {
                broker.metrics.partition_error("fetch", code);
                error_partition(t.partition, code)
            }
            Planned::Data { result } => {
                let records = match &result.slice {
                    Some(slice) => match slice.read() {
                        Ok(b) => {
                            if let Ok(p) = &t.hosted {
                                p.metrics
                                    .bytes_out
                                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                            }
                            b
                        }
                        Err(e) => {
                            tracing::error!(partition = t.partition, error = %e, "reading segment for fetch failed");
                            topics_push(
                                &mut topics,
                                t.topic_idx,
                                error_partition(
                                    t.partition,
                                    ResponseError::KafkaStorageError.code(),
                                ),
                            );
                            continue;
                        }
                    },
                    None => bytes::Bytes::new(),
                };
                partition_data(v, t.partition, &result.offsets, records)
            }
        };
        topics_push(&mut topics, t.topic_idx, data);
    }
    FetchResponse::default().with_responses(topics)
}

fn partition_data(v: i16, partition: i32, o: &LogOffsets, records: bytes::Bytes) -> PartitionData {
    let mut d = PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(o.high_watermark)
        .with_last_stable_offset(o.last_stable_offset)
        .with_log_start_offset(o.log_start_offset)
        .with_records(Some(records));
    if v >= 4 {
        d.aborted_transactions = Some(Vec::new());
    }
    d
}

/// How long remote reads may delay a response whose local partitions already have data:
/// enough for a chunk already in the cache.
const HOT_DATA_GRACE: Duration = Duration::from_millis(20);

/// Reads the remote targets concurrently, each for at most `remote.fetch.max.wait.ms`
/// (or [`HOT_DATA_GRACE`] when local data alone answers the request).
/// `None` for a target whose read has not finished (it keeps going in the background)
/// or that is not remote.
async fn read_remote(
    broker: &crate::broker::Broker,
    targets: &[Target],
    planned: &[Planned],
    hot_ready: bool,
) -> Vec<Option<Result<bytes::Bytes, i16>>> {
    let Some(tier) = &broker.tier else {
        return planned
            .iter()
            .map(|p| match p {
                Planned::Remote { .. } => Some(Err(ResponseError::KafkaStorageError.code())),
                _ => None,
            })
            .collect();
    };
    let wait = if hot_ready {
        tier.fetch_max_wait().min(HOT_DATA_GRACE)
    } else {
        tier.fetch_max_wait()
    };
    let deadline = tokio::time::Instant::now() + wait;
    let reads = targets.iter().zip(planned).map(|(t, plan)| async move {
        let (Planned::Remote {
            max_bytes, min_one, ..
        }, Ok(p)) = (plan, &t.hosted)
        else {
            return None;
        };
        if *max_bytes == 0 && !*min_one {
            // The request's byte budget is spent: offsets only.
            return Some(Ok(bytes::Bytes::new()));
        }
        let read = tier.read(p, t.fetch_offset, *max_bytes, *min_one);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Some(bytes))) => Some(Ok(bytes)),
            Ok(Ok(None)) => Some(Err(ResponseError::OffsetOutOfRange.code())),
            Ok(Err(e)) => {
                tracing::error!(topic = %p.topic, partition = p.index, offset = t.fetch_offset,
                    error = %e, "cannot serve fetch from remote storage");
                Some(Err(ResponseError::KafkaStorageError.code()))
            }
            Err(_) => {
                tracing::debug!(topic = %p.topic, partition = p.index, offset = t.fetch_offset,
                    "remote read still running at remote.fetch.max.wait.ms; answering without data");
                None
            }
        }
    });
    futures::future::join_all(reads).await
}

fn topics_push(topics: &mut [FetchableTopicResponse], idx: usize, data: PartitionData) {
    if let Some(t) = topics.get_mut(idx) {
        t.partitions.push(data);
    }
}
