//! `sluice-operator`: runs the Sluice Kubernetes operator, prints its CRDs, or acts as the
//! brokers' rack init container.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::runtime::events::{Recorder, Reporter};
use sluice_operator::admin::GrpcConnector;
use sluice_operator::controller::{self, Context};
use sluice_operator::reconcile::Settings;
use sluice_operator::telemetry::{self, HttpState, Metrics};
use sluice_operator::{crd, leader, rack_init};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[arg(
        long,
        value_enum,
        env = "SLUICE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    /// tracing filter, e.g. "info" or "info,sluice_operator=debug". RUST_LOG also works.
    #[arg(long, env = "SLUICE_LOG_FILTER", global = true)]
    log_filter: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run(RunArgs),
    /// Write the CustomResourceDefinitions as YAML (to stdout, or one file each).
    Crd {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Init container of broker pods: write broker.rack from the node's topology label.
    RackInit {
        #[arg(long, env = "NODE_NAME")]
        node: String,
        #[arg(long, default_value = "topology.kubernetes.io/zone")]
        topology_key: String,
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma separated; empty watches all namespaces.
    #[arg(
        long,
        env = "SLUICE_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Take a Lease before reconciling, so several replicas can run.
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, env = "SLUICE_LEASE_NAME", default_value = "sluice-operator")]
    lease_name: String,
    /// Namespace of the Lease; the operator's own namespace in a pod.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SLUICE_HTTP_LISTENER", default_value = "0.0.0.0:8080")]
    http_listener: SocketAddr,
    #[arg(
        long,
        env = "SLUICE_BROKER_IMAGE_REPOSITORY",
        default_value = "ghcr.io/sluice-dev/sluice-broker"
    )]
    broker_image_repository: String,
    /// Image for the brokers' rack init container (this operator's image).
    #[arg(long, env = "SLUICE_OPERATOR_IMAGE")]
    operator_image: Option<String>,
    /// ClusterRole allowing broker pods to read nodes (installed by the Helm chart).
    #[arg(
        long,
        env = "SLUICE_RACK_CLUSTER_ROLE",
        default_value = "sluice-broker-rack"
    )]
    rack_cluster_role: String,
    /// Seconds between drift checks of each Topic against its broker.
    #[arg(long, env = "SLUICE_TOPIC_RESYNC_SECONDS", default_value_t = 60)]
    topic_resync_seconds: u64,
}

fn init_tracing(format: LogFormat, filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { out_dir }) => write_crds(out_dir),
        Some(Command::RackInit {
            node,
            topology_key,
            output,
        }) => {
            init_tracing(cli.log_format, cli.log_filter.as_deref());
            rack_init::run(&node, &topology_key, &output).await
        }
        Some(Command::Run(args)) => {
            init_tracing(cli.log_format, cli.log_filter.as_deref());
            run(args).await
        }
        None => {
            init_tracing(cli.log_format, cli.log_filter.as_deref());
            // No subcommand: `run` with its flags taken from the environment.
            match Cli::parse_from(["sluice-operator", "run"]).command {
                Some(Command::Run(args)) => run(args).await,
                _ => anyhow::bail!("internal error: default command is not `run`"),
            }
        }
    }
}

fn write_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let files = crd::crds_yaml()?;
    match out_dir {
        None => {
            for (_, yaml) in files {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in files {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice-operator".into()));
    let client = kube::Client::try_default()
        .await
        .context("cannot create a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http_listener)
        .await
        .with_context(|| format!("cannot bind {}", args.http_listener))?;
    let router = telemetry::router(HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    ready.store(true, Ordering::Release);

    let mut lease = None;
    if args.leader_election {
        match leader::acquire(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            leader::shutdown_signal(),
        )
        .await?
        {
            Some(l) => lease = Some(l),
            None => {
                tracing::info!("stopped while waiting for the leader lease");
                return Ok(());
            }
        }
        metrics.leader.set(1);
    }
    let defaults = Settings::default();
    let settings = Settings {
        broker_image_repository: args.broker_image_repository.clone(),
        operator_image: args
            .operator_image
            .clone()
            .unwrap_or(defaults.operator_image),
        rack_cluster_role: args.rack_cluster_role.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        admin: Arc::new(GrpcConnector::default()),
        metrics,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-operator".into(),
                instance: Some(identity.clone()),
            },
        ),
        topic_resync: Duration::from_secs(args.topic_resync_seconds.max(5)),
        topics: None,
    });
    let scopes: Vec<Option<String>> = {
        let ns: Vec<String> = args
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if ns.is_empty() {
            vec![None]
        } else {
            ns.into_iter().map(Some).collect()
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), namespaces = ?scopes, identity, "starting controllers");
    let controllers = futures::future::join_all(
        scopes
            .into_iter()
            .map(|ns| controller::run(ctx.clone(), ns)),
    );
    match lease {
        None => {
            controllers.await;
        }
        Some(mut lease) => {
            tokio::select! {
                _ = controllers => {}
                () = lease.lost() => {
                    anyhow::bail!("lost the leader lease {}/{}; exiting so a restart campaigns again", args.lease_namespace, args.lease_name);
                }
            }
            ctx.metrics.leader.set(0);
            lease.release().await;
        }
    }
    tracing::info!("controllers stopped");
    Ok(())
}
