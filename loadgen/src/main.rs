//! `sluice-loadgen`: produce and consume load over the Kafka protocol, for Sluice or any
//! Kafka-compatible broker. Reports throughput, produce latency percentiles, and
//! end-to-end latency through a consumer group.

mod client;
mod consume;
mod e2e;
mod group;
mod produce;
mod topic;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;

#[derive(Debug, Parser)]
#[command(name = "sluice-loadgen", version, about)]
struct Cli {
    /// Broker to bootstrap from.
    #[arg(long, short, default_value = "127.0.0.1:9092", global = true)]
    bootstrap: String,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Connect over TLS, trusting this CA bundle (PEM).
    #[arg(long, global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for listeners that require one.
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    #[arg(long, global = true)]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Produce as fast as possible, or at --rate-mb.
    Produce {
        #[arg(long, default_value = "sluice-bench")]
        topic: String,
        /// Create the topic with this many partitions if it does not exist (0: don't).
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Value bytes per record.
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Records per batch (per partition per request).
        #[arg(long, default_value_t = 16)]
        batch_records: usize,
        /// 1 or -1 (all).
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        acks: i16,
        /// Producer connections; partitions are divided between them.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Requests in flight per connection (Kafka's max.in.flight.requests.per.connection).
        #[arg(long, default_value_t = 5)]
        in_flight: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Fixed total rate in MB/s (10^6 bytes of record batches); unlimited if absent.
        #[arg(long)]
        rate_mb: Option<f64>,
        #[arg(long, value_enum, default_value = "none")]
        compression: Codec,
        /// Topic setting for a topic this run creates, as `name=value` (repeatable), e.g.
        /// `--config remote.storage.enable=true`.
        #[arg(long = "config", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Consume from the earliest offsets.
    Consume {
        #[arg(long, default_value = "sluice-bench")]
        topic: String,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Stop after this many seconds even if not at the end.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Keep consuming past the end offsets seen at start (until --seconds).
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 52_428_800)]
        fetch_max_bytes: i32,
        #[arg(long, default_value_t = 8_388_608)]
        partition_max_bytes: i32,
    },
    /// End-to-end latency (produce -> consumed) through a consumer group: --consumers
    /// members join one group (classic protocol, range assignor) and fetch their partitions
    /// from the latest offset; then one producer sends --rate records/s, each stamped with
    /// the time it was due to be sent.
    #[command(name = "e2e-latency")]
    E2eLatency {
        #[arg(long, default_value = "sluice-e2e")]
        topic: String,
        /// Create the topic with this many partitions if it does not exist (0: don't).
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Members of the consumer group (each with a coordinator and a fetch connection).
        #[arg(long, default_value_t = 4)]
        consumers: usize,
        /// Consumer group id [default: a new group per run].
        #[arg(long)]
        group: Option<String>,
        /// Records per second, on a fixed schedule (one producer connection).
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Value bytes per record (at least 16: due time and run id come first).
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// 1 or -1 (all).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        acks: i16,
        /// Produce requests in flight.
        #[arg(long, default_value_t = 5)]
        in_flight: usize,
        /// Seconds of producing.
        #[arg(long, visible_alias = "duration", default_value_t = 30)]
        seconds: u64,
        /// The consumers' fetch max_wait_ms.
        #[arg(long, default_value_t = 100)]
        fetch_max_wait_ms: i32,
        #[arg(long, default_value_t = 10_000)]
        session_timeout_ms: i32,
        #[arg(long, default_value_t = 1_000)]
        heartbeat_ms: u64,
        /// Seconds to wait for the group to assign (and the consumers to fetch) every
        /// partition before producing.
        #[arg(long, default_value_t = 60)]
        join_timeout: u64,
        /// Seconds to wait after producing for the consumers to read every record.
        #[arg(long, default_value_t = 10)]
        drain_timeout: u64,
    },
    /// Delete a topic (between benchmark runs).
    DeleteTopic {
        #[arg(long)]
        topic: String,
    },
}

fn split<T: Copy>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.max(1).min(items.len().max(1));
    let mut out = vec![Vec::new(); n];
    for (i, x) in items.iter().enumerate() {
        out[i % n].push(*x);
    }
    out
}

const MB: f64 = 1_000_000.0;

/// Large response buffers come and go per request; keep them mapped (see the broker).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(ca) = &cli.tls_ca {
        client::use_tls(ca, cli.tls_cert.as_deref().zip(cli.tls_key.as_deref()))?;
    }
    let mut conn = client::Connection::connect(&cli.bootstrap).await?;
    match cli.command {
        Cmd::DeleteTopic { topic } => topic::delete(&mut conn, &topic).await?,
        Cmd::Produce {
            topic,
            partitions,
            record_size,
            batch_records,
            acks,
            connections,
            in_flight,
            seconds,
            rate_mb,
            compression,
            configs,
        } => {
            if acks != 1 && acks != -1 {
                bail!("--acks must be 1 or -1");
            }
            let layout = topic::ensure(&mut conn, &topic, partitions, &configs).await?;
            let opts = produce::ProduceOpts {
                topic: topic.clone(),
                record_size,
                batch_records,
                acks,
                in_flight: in_flight.max(1),
                duration: Duration::from_secs(seconds),
                rate: rate_mb.map(|r| r * MB),
                compression: match compression {
                    Codec::None => Compression::None,
                    Codec::Gzip => Compression::Gzip,
                    Codec::Snappy => Compression::Snappy,
                    Codec::Lz4 => Compression::Lz4,
                    Codec::Zstd => Compression::Zstd,
                },
            };
            // --connections per leading broker, each taking a share of its partitions.
            let mut groups = Vec::new();
            for (leader, partitions) in &layout.by_leader {
                let mut c = client::Connection::connect(leader).await?;
                produce::wait_writable(&mut c, &opts, partitions).await?;
                for g in split(partitions, connections) {
                    groups.push((leader.clone(), g));
                }
            }
            let share = opts.rate.map(|r| r / groups.len() as f64);
            let mut tasks = Vec::new();
            for (leader, g) in groups {
                tasks.push(tokio::spawn(produce::run(leader, opts.clone(), g, share)));
            }
            let mut total: Option<produce::ProduceStats> = None;
            for t in tasks {
                let s = t.await.context("producer task")??;
                total = Some(match total {
                    None => s,
                    Some(mut acc) => {
                        acc.records += s.records;
                        acc.payload_bytes += s.payload_bytes;
                        acc.batch_bytes += s.batch_bytes;
                        acc.requests += s.requests;
                        acc.elapsed = acc.elapsed.max(s.elapsed);
                        acc.latency_us.add(&s.latency_us)?;
                        acc.service_us.add(&s.service_us)?;
                        acc
                    }
                });
            }
            let s = total.context("no producer ran")?;
            let secs = s.elapsed.as_secs_f64();
            let q = |p: f64| s.latency_us.value_at_quantile(p) as f64 / 1000.0;
            let sq = |p: f64| s.service_us.value_at_quantile(p) as f64 / 1000.0;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "mode": "produce", "acks": acks, "connections": connections, "seconds": secs,
                        "records": s.records, "requests": s.requests,
                        "mb_per_s": s.batch_bytes as f64 / MB / secs,
                        "payload_mb_per_s": s.payload_bytes as f64 / MB / secs,
                        "records_per_s": s.records as f64 / secs,
                        "latency_ms": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": s.latency_us.max() as f64 / 1000.0},
                    "service_latency_ms": {"p50": sq(0.5), "p99": sq(0.99), "p999": sq(0.999), "max": s.service_us.max() as f64 / 1000.0},
                    })
                );
            } else {
                println!(
                    "produce acks={acks} connections={connections}: {:.1} s, {} records in {} requests\n  throughput: {:.1} MB/s of batches ({:.1} MB/s payload), {:.0} records/s\n  request latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                    secs,
                    s.records,
                    s.requests,
                    s.batch_bytes as f64 / MB / secs,
                    s.payload_bytes as f64 / MB / secs,
                    s.records as f64 / secs,
                    q(0.5),
                    q(0.99),
                    q(0.999),
                    s.latency_us.max() as f64 / 1000.0
                );
                if rate_mb.is_some() {
                    println!(
                        "  (counted from when each request was due; from the actual send: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms)",
                        sq(0.5),
                        sq(0.99),
                        sq(0.999)
                    );
                }
            }
        }
        Cmd::Consume {
            topic,
            connections,
            seconds,
            follow,
            fetch_max_bytes,
            partition_max_bytes,
        } => {
            let layout = topic::ensure(&mut conn, &topic, 0, &[]).await?;
            let starts = consume::list_offsets(&mut conn, &topic, &layout.partitions, -2).await?;
            let ends = consume::list_offsets(&mut conn, &topic, &layout.partitions, -1).await?;
            let opts = consume::ConsumeOpts {
                topic: topic.clone(),
                duration: Duration::from_secs(seconds),
                until_end: !follow,
                max_bytes: fetch_max_bytes,
                partition_max_bytes,
            };
            let opts = std::sync::Arc::new(opts);
            let mut tasks = Vec::new();
            let leader = layout.single_leader()?;
            for g in split(&layout.partitions, connections) {
                let (o, e) = (starts.clone(), ends.clone());
                let opts = opts.clone();
                let leader = leader.clone();
                tasks.push(tokio::spawn(async move {
                    consume::run(leader, &opts, g, o, e).await
                }));
            }
            let (mut records, mut bytes, mut fetches, mut elapsed) =
                (0u64, 0u64, 0u64, Duration::ZERO);
            for t in tasks {
                let s = t.await.context("consumer task")??;
                records += s.records;
                bytes += s.batch_bytes;
                fetches += s.fetches;
                elapsed = elapsed.max(s.elapsed);
            }
            let secs = elapsed.as_secs_f64().max(1e-9);
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "mode": "consume", "connections": connections, "seconds": secs, "records": records,
                        "fetches": fetches, "mb_per_s": bytes as f64 / MB / secs, "records_per_s": records as f64 / secs,
                    })
                );
            } else {
                println!(
                    "consume connections={connections}: {:.1} s, {records} records in {fetches} fetches\n  throughput: {:.1} MB/s of batches, {:.0} records/s",
                    secs,
                    bytes as f64 / MB / secs,
                    records as f64 / secs
                );
            }
        }
        Cmd::E2eLatency {
            topic,
            partitions,
            consumers,
            group,
            rate,
            record_size,
            acks,
            in_flight,
            seconds,
            fetch_max_wait_ms,
            session_timeout_ms,
            heartbeat_ms,
            join_timeout,
            drain_timeout,
        } => {
            if acks != 1 && acks != -1 {
                bail!("--acks must be 1 or -1");
            }
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of records per second");
            }
            if record_size < e2e::HEADER_BYTES {
                bail!(
                    "--record-size must be at least {} (due time and run id)",
                    e2e::HEADER_BYTES
                );
            }
            if consumers == 0 || heartbeat_ms == 0 || fetch_max_wait_ms < 0 {
                bail!(
                    "--consumers and --heartbeat-ms must be positive, --fetch-max-wait-ms not negative"
                );
            }
            let opts = e2e::E2eOpts {
                topic,
                create_partitions: partitions,
                consumers,
                group,
                rate,
                record_size,
                duration: Duration::from_secs(seconds),
                acks,
                in_flight: in_flight.max(1),
                fetch_max_wait_ms,
                session_timeout_ms,
                heartbeat: Duration::from_millis(heartbeat_ms),
                join_timeout: Duration::from_secs(join_timeout),
                drain_timeout: Duration::from_secs(drain_timeout),
            };
            let r = e2e::run(&cli.bootstrap, &mut conn, &opts).await?;
            let q = |p: f64| r.latency_us.value_at_quantile(p) as f64 / 1000.0;
            let max_ms = r.latency_us.max() as f64 / 1000.0;
            let missing = r.produced.saturating_sub(r.consumed);
            let secs = r.produce_elapsed.as_secs_f64().max(1e-9);
            if cli.json {
                let mismatched: Vec<_> = r
                    .mismatched
                    .iter()
                    .map(|(p, sent, got)| {
                        serde_json::json!({"partition": p, "produced": sent, "consumed": got})
                    })
                    .collect();
                // Two halves: one json! of this size exceeds the macro recursion limit.
                let mut out = serde_json::json!({
                    "mode": "e2e-latency", "consumers": consumers, "group": r.group,
                    "partitions": r.partitions, "acks": acks, "rate": rate,
                    "record_size": record_size, "seconds": secs,
                    "produced": r.produced, "consumed": r.consumed, "missing": missing,
                    "duplicates": r.duplicates,
                });
                let rest = serde_json::json!({
                    "other_records": r.other_records,
                    "requests": r.requests, "fetches": r.fetches,
                    "records_per_s": r.produced as f64 / secs,
                    "group_stable_s": r.stable_after.as_secs_f64(),
                    "generation": {"start": r.generation_start, "end": r.generation_end},
                    "joins": r.joins,
                    "producer_max_lag_ms": r.producer_max_lag.as_secs_f64() * 1000.0,
                    "latency_ms": {"count": r.latency_us.len(), "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": max_ms},
                    "mismatched_partitions": mismatched,
                    "member_errors": r.member_errors,
                });
                if let (Some(o), serde_json::Value::Object(rest)) = (out.as_object_mut(), rest) {
                    o.extend(rest);
                }
                println!("{out}");
            } else {
                println!(
                    "e2e-latency consumers={consumers} partitions={} acks={acks} rate={rate}/s: {:.1} s, {} records produced in {} requests, {} consumed ({missing} missing, {} duplicates)\n  group {}: all partitions fetched {:.1} s after the consumers started, generation {} (generation {} at the end, {} joins)\n  end-to-end latency ({} records): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n  (from each record's scheduled send time to the arrival of the fetch response; the producer fell behind its schedule by at most {:.2} ms)",
                    r.partitions,
                    secs,
                    r.produced,
                    r.requests,
                    r.consumed,
                    r.duplicates,
                    r.group,
                    r.stable_after.as_secs_f64(),
                    r.generation_start,
                    r.generation_end,
                    r.joins,
                    r.latency_us.len(),
                    q(0.5),
                    q(0.99),
                    q(0.999),
                    max_ms,
                    r.producer_max_lag.as_secs_f64() * 1000.0
                );
                if r.other_records > 0 {
                    println!(
                        "  {} records on the topic came from another producer and were not counted",
                        r.other_records
                    );
                }
            }
            if !r.mismatched.is_empty() {
                let parts: Vec<String> = r
                    .mismatched
                    .iter()
                    .map(|(p, sent, got)| format!("{p}: produced {sent}, consumed {got}"))
                    .collect();
                bail!(
                    "consumed {} of {} produced records within --drain-timeout {drain_timeout} s; by partition: {}",
                    r.consumed,
                    r.produced,
                    parts.join(", ")
                );
            }
            if !r.member_errors.is_empty() {
                bail!(
                    "group members failed after the measurement: {}",
                    r.member_errors.join("; ")
                );
            }
        }
    }
    Ok(())
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected name=value, got '{s}'"))
}
