//! `sluice-broker`: runs one Sluice broker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod admin_cli;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sluice_broker::broker::Broker;
use sluice_broker::config::{BrokerConfig, ConfigSources};
use sluice_broker::metadata::quorum::service::QuorumService;
use sluice_broker::metadata::quorum::{Quorum, QuorumOptions};
use sluice_broker::metadata::{BrokerRegistration, Endpoint, MetadataCommand, MetadataStore};
use sluice_broker::metrics::Metrics;
use sluice_broker::replica::{ReplicaManager, maintenance};
use sluice_broker::{admin, config, data_dirs, http, server};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;

/// Fetch and produce move multi-megabyte buffers per request; mimalloc keeps that memory
/// mapped instead of returning it to the kernel after every request (which glibc does
/// for large blocks, costing a page fault and a zeroed page per 4 KiB on the next one).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A Kafka-compatible broker. Settings use Kafka's names; they come from --config, then
/// SLUICE_* environment variables (log.retention.ms -> SLUICE_LOG_RETENTION_MS), then
/// --override, then the dedicated flags below.
#[derive(Debug, Parser)]
#[command(name = "sluice-broker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Properties file (server.properties style) with Kafka-named settings. Repeatable;
    /// later files override earlier ones.
    #[arg(long, short = 'c', env = "SLUICE_CONFIG_FILE", value_delimiter = ',')]
    config: Vec<PathBuf>,
    /// Any setting as key=value, e.g. --override log.retention.ms=60000. Repeatable.
    #[arg(long = "override", short = 'o', value_name = "KEY=VALUE", value_parser = parse_kv)]
    overrides: Vec<(String, String)>,
    /// Same as --override node.id=N.
    #[arg(long)]
    node_id: Option<i32>,
    /// Same as --override listeners=...
    #[arg(long)]
    listeners: Option<String>,
    /// Same as --override advertised.listeners=...
    #[arg(long)]
    advertised_listeners: Option<String>,
    /// Same as --override log.dirs=...
    #[arg(long)]
    log_dirs: Option<String>,
    /// Same as --override http.listener=...
    #[arg(long)]
    http_listener: Option<String>,
    /// Same as --override internal.listener=...
    #[arg(long)]
    internal_listener: Option<String>,
    #[arg(long, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// tracing filter, e.g. "info" or "info,sluice_broker::protocol=debug". RUST_LOG also works.
    #[arg(long, env = "SLUICE_LOG_FILTER")]
    log_filter: Option<String>,
    /// Once ready, write {"kafka": {"LISTENER": port}, "http": port, "internal": port} here. For tools and
    /// tests that start the broker on port 0.
    #[arg(long)]
    ports_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the reference of every broker and topic setting (Markdown).
    ConfigReference,
    /// Call the admin API of a running broker (its internal.listener) and print JSON.
    Admin {
        /// host:port of the broker's internal.listener.
        #[arg(long, default_value = "127.0.0.1:9093")]
        server: String,
        /// For an internal listener with TLS: CA bundle that signed the broker's certificate.
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
        /// Client certificate (PEM) signed by a CA in the broker's truststore.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
        #[command(subcommand)]
        action: Box<admin_cli::AdminCommand>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

fn init_tracing(format: LogFormat, filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        // openraft logs every unreachable peer at ERROR, several times a second while a
        // broker is down; the quorum's own log lines say what matters.
        .unwrap_or_else(|| EnvFilter::new("info,openraft=off"));
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::ConfigReference) => {
            print!("{}", config::defs::markdown_reference());
            return Ok(());
        }
        Some(Command::Admin {
            server,
            tls_ca,
            tls_cert,
            tls_key,
            action,
        }) => {
            let tls = match (tls_ca, tls_cert, tls_key) {
                (Some(ca), Some(cert), Some(key)) => Some((ca, cert, key)),
                _ => None,
            };
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(admin_cli::run(&server, tls, *action));
        }
        None => {}
    }
    init_tracing(cli.log_format, cli.log_filter.as_deref());
    let mut overrides = cli.overrides.clone();
    let flags = [
        ("node.id", cli.node_id.map(|n| n.to_string())),
        ("listeners", cli.listeners.clone()),
        ("advertised.listeners", cli.advertised_listeners.clone()),
        ("log.dirs", cli.log_dirs.clone()),
        ("http.listener", cli.http_listener.clone()),
        ("internal.listener", cli.internal_listener.clone()),
    ];
    overrides.extend(
        flags
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
    );
    let sources = ConfigSources {
        files: cli.config.clone(),
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("SLUICE_"))
            .collect(),
        overrides,
    };
    let config = BrokerConfig::load(&sources).context("invalid configuration")?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Every segment keeps its log file open: raise the soft limit to the hard limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 65_536 => tracing::warn!(
            open_files_limit = n,
            "the open files limit is low for a broker (each log segment holds a file); raise it (ulimit -n)"
        ),
        Ok(n) => tracing::debug!(open_files_limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config, cli.ports_file))
}

async fn run(config: BrokerConfig, ports_file: Option<PathBuf>) -> anyhow::Result<()> {
    let node_id = config.node_id;
    let metadata_dir = config.log_dirs[0].join("__sluice_metadata");
    let dirs = data_dirs::prepare(&config.log_dirs, node_id, config.quorum.cluster_id.clone())?;
    if let Some(configured) = &config.quorum.cluster_id
        && *configured != dirs.cluster_id
    {
        bail!(
            "cluster.id is {configured} but the log directories belong to cluster {}",
            dirs.cluster_id
        );
    }
    if metadata_dir.join("metadata.json").exists() && !metadata_dir.join("log.jsonl").exists() {
        bail!(
            "{} holds metadata of a Sluice version without the metadata quorum; it cannot be \
             upgraded in place. Remove the log directories to start empty",
            metadata_dir.display()
        );
    }
    let alone = config.quorum.voters.iter().all(|(id, _)| *id == node_id);
    let quorum_started_before = metadata_dir.join("log.jsonl").exists();
    if alone && !quorum_started_before && dirs.previously_initialised {
        bail!(
            "{} holds no metadata log although the log directories were initialised before; \
             refusing to start rather than treat every partition as stray. Restore it or \
             remove the log directories to start empty",
            metadata_dir.display()
        );
    }
    tracing::info!(node_id, cluster_id = %dirs.cluster_id, version = env!("CARGO_PKG_VERSION"), "starting sluice-broker");

    let security = Arc::new(
        sluice_broker::security::Security::new(
            &config.security,
            &config.replication.inter_broker_listener,
        )
        .context("loading TLS certificates and keys")?,
    );
    sluice_broker::security::internal::init_clients(config.security.internal_tls.clone());
    let bound = server::bind(&config.listeners).await?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listener)
        .await
        .with_context(|| format!("cannot bind http.listener {}", config.http_listener))?;
    let http_addr = http_listener.local_addr()?;
    let internal_listener = tokio::net::TcpListener::bind(config.internal_listener)
        .await
        .with_context(|| format!("cannot bind internal.listener {}", config.internal_listener))?;
    let internal_addr = internal_listener.local_addr()?;

    // Advertise actual ports where the configuration asked for port 0.
    let endpoints: Vec<Endpoint> = config
        .advertised_listeners
        .iter()
        .map(|a| {
            let bound_port = bound
                .iter()
                .find(|b| *b.name == a.name)
                .map(|b| b.local_addr.port());
            let port = match (a.port, bound_port) {
                (0, Some(p)) => p,
                (p, _) => p,
            };
            Endpoint {
                listener: a.name.clone(),
                host: a.host.clone(),
                port,
            }
        })
        .collect();

    // The quorum address others reach this broker at: its voter entry, else the
    // advertised host with the internal port.
    let own_addr = config
        .quorum
        .voters
        .iter()
        .find(|(id, _)| *id == node_id)
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| {
            let host = endpoints
                .first()
                .map(|e| e.host.clone())
                .unwrap_or_else(config::broker::hostname);
            format!("{host}:{}", internal_addr.port())
        });
    let quorum = Quorum::start(QuorumOptions {
        node_id,
        cluster_id: dirs.cluster_id.clone(),
        voters: config.quorum.voters.clone(),
        own_addr,
        dir: metadata_dir.clone(),
        election_timeout_ms: config.quorum.election_timeout_ms,
        snapshot_interval_entries: config.quorum.snapshot_interval_entries,
        heartbeat_interval_ms: config.quorum.heartbeat_interval_ms,
        session_timeout_ms: config.quorum.session_timeout_ms,
        leader_rebalance_interval_ms: if config.quorum.auto_leader_rebalance {
            config.quorum.leader_imbalance_check_interval_ms
        } else {
            0
        },
    })
    .await
    .context("starting the metadata quorum")?;
    let store: Arc<dyn MetadataStore> = quorum.clone();
    let quorum_stop = CancellationToken::new();
    let admin_cell = Arc::new(std::sync::OnceLock::new());
    let internal_stop = CancellationToken::new();
    let internal_task = tokio::spawn(admin::serve(
        internal_listener,
        internal_stop.clone(),
        admin::AdminService::new(admin_cell.clone()),
        QuorumService::new(quorum.clone()),
        security.internal_tls.clone(),
    ));
    let quorum_failed = CancellationToken::new();
    let quorum_task = {
        let (q, stop, failed) = (quorum.clone(), quorum_stop.clone(), quorum_failed.clone());
        tokio::spawn(async move {
            let r = q.run(stop).await;
            if let Err(e) = &r {
                tracing::error!(error = %e, "stopping the broker: it can no longer follow cluster metadata");
                failed.cancel();
            }
            r
        })
    };

    // Registering (fenced) through the quorum also waits until this broker's copy of the
    // metadata includes everything committed before: partitions are only opened against
    // an up-to-date image, so nothing is taken for stray.
    let registration = MetadataCommand::RegisterBroker(BrokerRegistration {
        id: node_id,
        endpoints: endpoints.clone(),
        rack: config.rack.clone(),
        incarnation: quorum.incarnation,
        fenced: true,
    });
    let started = std::time::Instant::now();
    loop {
        match store.submit(registration.clone()).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, waited_s = started.elapsed().as_secs(), "cannot register with the metadata quorum yet (are a majority of controller.quorum.voters up?); retrying");
                tokio::select! {
                    _ = wait_for_signal() => bail!("stopped before registering with the metadata quorum"),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    let replicas = {
        let (dirs, statics, threads) = (
            config.log_dirs.clone(),
            config.statics.clone(),
            config.num_recovery_threads_per_data_dir,
        );
        let md = store.current();
        tokio::task::spawn_blocking(move || {
            ReplicaManager::open(node_id, dirs, statics, threads, &md)
        })
        .await??
    };
    let replicas = Arc::new(replicas);
    let metrics = Arc::new(Metrics::default());
    let registry = metrics.registry(replicas.clone());

    let tier = open_tier(&config, &dirs.cluster_id, &replicas, &metrics)?;
    let broker = Arc::new(
        Broker::new(
            config.clone(),
            dirs.cluster_id.clone(),
            store.clone(),
            replicas.clone(),
            metrics,
        )
        .with_tier(tier.clone())
        .with_quorum(quorum.clone())
        .with_security(security.clone()),
    );
    // From here on SIGTERM/SIGINT start an orderly shutdown, also during the startup
    // steps below (waiting for remote manifests can take a while).
    let signals = {
        let (b, failed) = (broker.clone(), quorum_failed.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal() => {}
                _ = failed.cancelled() => {}
            }
            b.shutdown.cancel();
        })
    };

    let ports_json = {
        let kafka: serde_json::Map<String, serde_json::Value> = bound
            .iter()
            .map(|b| (b.name.to_string(), b.local_addr.port().into()))
            .collect();
        serde_json::json!({
            "kafka": kafka,
            "http": http_addr.port(),
            "internal": internal_addr.port(),
        })
    };

    let connections = TaskTracker::new();
    let mut tasks = tokio::task::JoinSet::new();
    for b in bound {
        tasks.spawn(server::serve(broker.clone(), b, connections.clone()));
    }
    tasks.spawn(maintenance::run(broker.clone()));
    tasks.spawn(sluice_broker::replica::cleaner::run(broker.clone()));
    tasks.spawn(sluice_broker::group::run_timers(broker.clone()));
    tasks.spawn(maintenance::watch_metadata(broker.clone()));
    tasks.spawn(sluice_broker::replication::isr::run(broker.clone()));
    tasks.spawn(sluice_broker::security::watch_certificates(broker.clone()));
    if let Some(tier) = &tier {
        tasks.spawn(tier.clone().run(broker.clone()));
    }
    let http_task = tokio::spawn(http::serve(
        http_listener,
        http::router(broker.clone(), registry),
        broker.shutdown.clone(),
    ));
    let _ = admin_cell.set(broker.clone());
    sluice_broker::group::GroupCoordinator::sync_partitions(&broker).await;
    if let Some(tier) = &tier {
        tier.wait_loaded(&broker, Duration::from_secs(30)).await;
    }
    // Serving: the controller unfences this broker, which may then lead partitions.
    quorum.set_ready(true);
    match quorum
        .wait_unfenced(Duration::from_millis(config.quorum.session_timeout_ms))
        .await
    {
        // Ready once the partitions this broker now leads know it.
        Some(offset) => {
            for _ in 0..500 {
                if replicas.applied_offset().is_some_and(|o| o >= offset) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        None => tracing::warn!("the controller has not unfenced this broker yet; serving anyway"),
    }
    broker.set_ready(true);
    if let Some(path) = &ports_file {
        sluice_broker::log::checkpoint::write_atomic(path, ports_json.to_string().as_bytes())?;
    }
    tracing::info!(http = %http_addr, internal = %internal_addr, advertised = ?endpoints, "broker ready");

    broker.shutdown.cancelled().await;
    signals.abort();
    if config.quorum.controlled_shutdown {
        tracing::info!("controlled shutdown: moving partition leadership to other replicas");
        match tokio::time::timeout(Duration::from_secs(15), quorum.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown failed; stopping anyway"),
            Err(_) => tracing::warn!("controlled shutdown did not finish in 15 s; stopping anyway"),
        }
    }
    tracing::info!("shutting down: refusing new requests, finishing in-flight ones");
    broker.set_ready(false);
    connections.close();
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    if tokio::time::timeout(timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = config.shutdown_timeout_ms,
            "in-flight requests did not finish in time"
        );
    }
    while tasks.join_next().await.is_some() {}
    let _ = http_task.await;
    quorum_stop.cancel();
    let quorum_result = quorum_task.await;
    quorum.shutdown().await;
    internal_stop.cancel();
    // A stuck admin call must not delay the final flush past the pod's grace period.
    if tokio::time::timeout(timeout, internal_task).await.is_err() {
        tracing::warn!("admin API calls did not finish in time; flushing anyway");
    }
    let replicas_final = replicas.clone();
    tokio::task::spawn_blocking(move || {
        let flushed = replicas_final.flush(true);
        replicas_final
            .write_checkpoints_with(true)
            .map(|()| flushed)
    })
    .await?
    .map(|flushed| {
        tracing::info!(
            partitions_flushed = flushed,
            "logs flushed and checkpointed; shut down cleanly"
        )
    })
    .context("final checkpoint failed")?;
    drop(dirs);
    match quorum_result {
        Ok(Err(e)) => Err(anyhow::anyhow!(e)),
        _ => Ok(()),
    }
}

/// Opens the object store when tiered storage is on. A bad URL or credentials file stops
/// the broker; an unreachable store does not (uploads wait and retry).
fn open_tier(
    config: &BrokerConfig,
    cluster_id: &str,
    replicas: &Arc<ReplicaManager>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<sluice_broker::tiered::TierManager>>> {
    if !config.remote.enable {
        return Ok(None);
    }
    let opened = sluice_broker::tiered::store::open(&config.remote)
        .context("opening remote storage (remote.log.storage.url)")?;
    let deletions = replicas
        .remote_deletions()
        .context("tiered storage is enabled but the replica manager keeps no deletion list")?;
    let cache_dir = config.log_dirs[0].join("remote-log-cache");
    let tier = sluice_broker::tiered::TierManager::new(
        opened,
        config.remote.clone(),
        cluster_id.to_string(),
        &cache_dir,
        deletions,
        metrics.clone(),
    )
    .with_context(|| {
        format!(
            "preparing the remote chunk cache in {}",
            cache_dir.display()
        )
    })?;
    Ok(Some(Arc::new(tier)))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
