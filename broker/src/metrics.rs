//! Prometheus metrics. Request metrics are label families keyed by static strings (no
//! allocation per request); per-partition gauges are read from the partitions at scrape
//! time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::replica::ReplicaManager;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub api: &'static str,
    pub error: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<ApiLabel, Counter>,
    pub request_duration: Family<ApiLabel, Histogram, fn() -> Histogram>,
    pub partition_errors: Family<ErrorLabel, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections_active: Gauge,
    pub connections_accepted: Counter,
    pub connection_errors: Family<ReasonLabel, Counter>,
    pub authentication_failures: Family<ReasonLabel, Counter>,
    pub authentication_successes: Family<ReasonLabel, Counter>,
    pub authorization_denials: Family<ApiLabel, Counter>,
    pub throttle_seconds: Family<ReasonLabel, Counter<f64>>,
    pub tls_certificate_expiry: Family<ListenerLabel, Gauge>,
    pub cleaner_passes: Counter,
    pub cleaner_segments_rewritten: Counter,
    pub cleaner_bytes_reclaimed: Counter,
    pub cleaner_errors: Counter,
    pub group_rebalances: Counter,
    pub group_offset_commits: Counter,
    pub groups: Family<StateLabel, Gauge>,
    pub remote_upload_bytes: Counter,
    pub remote_upload_segments: Counter,
    pub remote_deleted_segments: Counter,
    pub remote_fetch_bytes: Counter,
    pub remote_fetch_duration: Histogram,
    pub remote_cache_hits: Counter,
    pub remote_cache_misses: Counter,
    pub remote_errors: Family<ReasonLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            partition_errors: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            connections_active: Gauge::default(),
            connections_accepted: Counter::default(),
            connection_errors: Family::default(),
            authentication_failures: Family::default(),
            authentication_successes: Family::default(),
            authorization_denials: Family::default(),
            throttle_seconds: Family::default(),
            tls_certificate_expiry: Family::default(),
            cleaner_passes: Counter::default(),
            cleaner_segments_rewritten: Counter::default(),
            cleaner_bytes_reclaimed: Counter::default(),
            cleaner_errors: Counter::default(),
            group_rebalances: Counter::default(),
            group_offset_commits: Counter::default(),
            groups: Family::default(),
            remote_upload_bytes: Counter::default(),
            remote_upload_segments: Counter::default(),
            remote_deleted_segments: Counter::default(),
            remote_fetch_bytes: Counter::default(),
            remote_fetch_duration: latency_histogram(),
            remote_cache_hits: Counter::default(),
            remote_cache_misses: Counter::default(),
            remote_errors: Family::default(),
        }
    }
}

impl Metrics {
    pub fn cleaner_pass(&self, s: &crate::replica::cleaner::PassStats) {
        self.cleaner_passes.inc();
        self.cleaner_segments_rewritten
            .inc_by(s.segments_rewritten + s.segments_removed);
        self.cleaner_bytes_reclaimed
            .inc_by(s.bytes_before.saturating_sub(s.bytes_after));
    }

    /// Counts a remote storage failure (`reason` from `TierError::reason`).
    pub fn remote_error(&self, reason: &'static str) {
        self.remote_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn cleaner_error(&self) {
        self.cleaner_errors.inc();
    }

    /// Counts a connection closed because of bad input or policy.
    pub fn connection_error(&self, reason: &'static str) {
        self.connection_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a partition-level error code in a response.
    /// `reason`: the mechanism or TLS step that failed.
    pub fn authentication_failure(&self, reason: &'static str) {
        self.authentication_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn authentication_success(&self, reason: &'static str) {
        self.authentication_successes
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn authorization_denial(&self, api: &'static str) {
        self.authorization_denials
            .get_or_create(&ApiLabel { api })
            .inc();
    }

    /// `quota`: produce, fetch or request.
    pub fn throttled(&self, quota: &'static str, seconds: f64) {
        self.throttle_seconds
            .get_or_create(&ReasonLabel { reason: quota })
            .inc_by(seconds);
    }

    pub fn partition_error(&self, api: &'static str, code: i16) {
        if code != 0 {
            let error = kafka_protocol::ResponseError::try_from_code(code)
                .map(error_name)
                .unwrap_or("UNKNOWN");
            self.partition_errors
                .get_or_create(&ErrorLabel { api, error })
                .inc();
        }
    }

    pub fn registry(self: &Arc<Self>, replicas: Arc<ReplicaManager>) -> Registry {
        let mut r = Registry::with_prefix("sluice");
        r.register(
            "requests",
            "Requests handled, by API",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response being ready, by API",
            self.request_duration.clone(),
        );
        r.register(
            "partition_errors",
            "Partition-level error codes returned, by API and error",
            self.partition_errors.clone(),
        );
        r.register(
            "authentication_failures",
            "Failed authentications (TLS handshakes, SASL exchanges), by mechanism or step",
            self.authentication_failures.clone(),
        );
        r.register(
            "authentication_successes",
            "Successful SASL authentications, by mechanism",
            self.authentication_successes.clone(),
        );
        r.register(
            "authorization_denials",
            "Requests (or parts of them) refused by the ACL authorizer, by API",
            self.authorization_denials.clone(),
        );
        r.register(
            "quota_throttle_seconds",
            "Time clients were throttled for exceeding their quota, by quota type",
            self.throttle_seconds.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate served on a TLS listener expires (Unix time); alert well before",
            self.tls_certificate_expiry.clone(),
        );
        r.register(
            "network_bytes_in",
            "Request bytes read from clients",
            self.bytes_in.clone(),
        );
        r.register(
            "network_bytes_out",
            "Response bytes written to clients",
            self.bytes_out.clone(),
        );
        r.register(
            "connections_active",
            "Open client connections",
            self.connections_active.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "connection_errors",
            "Connections closed because of bad input or limits, by reason",
            self.connection_errors.clone(),
        );
        r.register(
            "log_cleaner_passes",
            "Cleaning passes over compacted partitions",
            self.cleaner_passes.clone(),
        );
        r.register(
            "log_cleaner_segments_rewritten",
            "Segments rewritten or removed by the log cleaner",
            self.cleaner_segments_rewritten.clone(),
        );
        r.register(
            "log_cleaner_bytes_reclaimed",
            "Bytes of disk the log cleaner freed",
            self.cleaner_bytes_reclaimed.clone(),
        );
        r.register(
            "log_cleaner_errors",
            "Cleaning passes that failed (see the log for topic and partition)",
            self.cleaner_errors.clone(),
        );
        r.register(
            "group_rebalances",
            "Consumer group rebalances completed (JoinGroup phases)",
            self.group_rebalances.clone(),
        );
        r.register(
            "group_offset_commits",
            "Partition offsets committed",
            self.group_offset_commits.clone(),
        );
        r.register(
            "groups",
            "Consumer groups coordinated by this broker, by state",
            self.groups.clone(),
        );
        r.register(
            "remote_upload_bytes",
            "Segment bytes uploaded to remote storage",
            self.remote_upload_bytes.clone(),
        );
        r.register(
            "remote_upload_segments",
            "Segments uploaded to remote storage",
            self.remote_upload_segments.clone(),
        );
        r.register(
            "remote_deleted_segments",
            "Remote segments deleted by retention or DeleteRecords",
            self.remote_deleted_segments.clone(),
        );
        r.register(
            "remote_fetch_bytes",
            "Bytes read from remote storage (chunks and indexes)",
            self.remote_fetch_bytes.clone(),
        );
        r.register(
            "remote_fetch_duration_seconds",
            "Latency of one ranged read from remote storage",
            self.remote_fetch_duration.clone(),
        );
        r.register(
            "remote_cache_hits",
            "Remote chunk reads served from the local chunk cache",
            self.remote_cache_hits.clone(),
        );
        r.register(
            "remote_cache_misses",
            "Remote chunk reads that went to the object store",
            self.remote_cache_misses.clone(),
        );
        r.register(
            "remote_errors",
            "Remote storage failures, by reason (unreachable, missing_object, corrupt_object, bad_manifest, local_io); the log names the object",
            self.remote_errors.clone(),
        );
        r.register_collector(Box::new(PartitionCollector { replicas }));
        r
    }
}

/// Kafka's upper-case error names for metric labels.
fn error_name(e: kafka_protocol::ResponseError) -> &'static str {
    use kafka_protocol::ResponseError as E;
    match e {
        E::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        E::CorruptMessage => "CORRUPT_MESSAGE",
        E::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        E::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
        E::MessageTooLarge => "MESSAGE_TOO_LARGE",
        E::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
        E::RecordListTooLarge => "RECORD_LIST_TOO_LARGE",
        E::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        E::InvalidTimestamp => "INVALID_TIMESTAMP",
        E::UnsupportedVersion => "UNSUPPORTED_VERSION",
        E::InvalidRecord => "INVALID_RECORD",
        E::KafkaStorageError => "KAFKA_STORAGE_ERROR",
        E::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
        E::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
        E::UnknownTopicId => "UNKNOWN_TOPIC_ID",
        E::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
        E::UnsupportedForMessageFormat => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        E::RequestTimedOut => "REQUEST_TIMED_OUT",
        E::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        E::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
        E::IllegalGeneration => "ILLEGAL_GENERATION",
        E::UnknownMemberId => "UNKNOWN_MEMBER_ID",
        E::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
        E::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        E::NotCoordinator => "NOT_COORDINATOR",
        _ => "OTHER",
    }
}

/// Per-partition gauges and counters, read at scrape time.
#[derive(Debug)]
struct PartitionCollector {
    replicas: Arc<ReplicaManager>,
}

struct Sample<'a> {
    topic: &'a str,
    partition: i32,
    value: i64,
}

fn encode_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    samples: &[Sample<'_>],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, ty)?;
    for s in samples {
        let labels = [
            ("topic", s.topic.to_string()),
            ("partition", s.partition.to_string()),
        ];
        let family = metric.encode_family(&labels)?;
        match ty {
            MetricType::Counter => CounterValue(s.value.max(0) as u64).encode(family)?,
            _ => GaugeValue(s.value).encode(family)?,
        }
    }
    Ok(())
}

#[derive(Debug)]
struct GaugeValue(i64);
impl EncodeMetric for GaugeValue {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[derive(Debug)]
struct CounterValue(u64);
impl EncodeMetric for CounterValue {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.0, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

impl Collector for PartitionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let partitions = self.replicas.all_partitions();
        let now = crate::broker::now_ms();
        let mut rows: Vec<(&str, i32, [i64; 15])> = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let (start, end, size, segments) = p.gauges();
            let remote = p.remote_view();
            let l = p.leadership();
            let leads = p.is_leader();
            let target = l
                .replicas
                .len()
                .saturating_sub(l.adding.len().min(l.replicas.len()));
            rows.push((
                &p.topic,
                p.index,
                [
                    end,
                    start,
                    p.high_watermark(),
                    size as i64,
                    segments as i64,
                    p.metrics.bytes_in.load(Ordering::Relaxed) as i64,
                    p.metrics.bytes_out.load(Ordering::Relaxed) as i64,
                    p.metrics.messages_in.load(Ordering::Relaxed) as i64,
                    remote.size_bytes as i64,
                    remote.segments as i64,
                    remote.lag_bytes as i64,
                    remote
                        .lag_since_ms
                        .map(|since| (now - since).max(0) / 1000)
                        .unwrap_or(0),
                    i64::from(leads),
                    l.isr.len() as i64,
                    i64::from(leads && l.isr.len() < target),
                ],
            ));
        }
        let families: [(&str, &str, MetricType); 15] = [
            (
                "partition_log_end_offset",
                "Next offset to be written",
                MetricType::Gauge,
            ),
            (
                "partition_log_start_offset",
                "First offset still readable",
                MetricType::Gauge,
            ),
            (
                "partition_high_watermark",
                "Offset up to which data is committed",
                MetricType::Gauge,
            ),
            (
                "partition_size_bytes",
                "Bytes of the partition's segments on local disk",
                MetricType::Gauge,
            ),
            (
                "partition_segments",
                "Segments of the partition on local disk",
                MetricType::Gauge,
            ),
            (
                "partition_bytes_in",
                "Record batch bytes appended",
                MetricType::Counter,
            ),
            (
                "partition_bytes_out",
                "Record batch bytes served to fetches",
                MetricType::Counter,
            ),
            (
                "partition_messages_in",
                "Records appended",
                MetricType::Counter,
            ),
            (
                "partition_remote_size_bytes",
                "Bytes of the partition's segments in remote storage",
                MetricType::Gauge,
            ),
            (
                "partition_remote_segments",
                "Segments of the partition in remote storage",
                MetricType::Gauge,
            ),
            (
                "partition_remote_upload_lag_bytes",
                "Local bytes not yet in remote storage (remote storage enabled only)",
                MetricType::Gauge,
            ),
            (
                "partition_remote_upload_lag_seconds",
                "How long the oldest sealed, committed segment has waited for upload",
                MetricType::Gauge,
            ),
            (
                "partition_leader",
                "1 if this broker leads the partition",
                MetricType::Gauge,
            ),
            (
                "partition_isr_size",
                "In-sync replicas of the partition, as last committed",
                MetricType::Gauge,
            ),
            (
                "partition_under_replicated",
                "1 if this broker leads the partition and fewer replicas than assigned are in sync (alert on the sum)",
                MetricType::Gauge,
            ),
        ];
        for (i, (name, help, ty)) in families.iter().enumerate() {
            let samples: Vec<Sample<'_>> = rows
                .iter()
                .map(|(topic, partition, values)| Sample {
                    topic,
                    partition: *partition,
                    value: values[i],
                })
                .collect();
            encode_family(&mut encoder, name, help, *ty, &samples)?;
        }
        Ok(())
    }
}
