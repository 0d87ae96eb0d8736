//! `sluice-broker admin ...`: calls the admin gRPC API of a running broker and prints the
//! answer as JSON — for operators (`kubectl exec`) and tests.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use sluice_api::admin::admin_client::AdminClient;
use sluice_api::admin::{
    CancelRebalanceRequest, DrainBrokerRequest, GetClusterStatusRequest,
    GetRebalanceProgressRequest, RebalancePlan, RebalanceProgress, RebalanceRequest,
    SetQuorumVotersRequest,
};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Cluster health: brokers, under-replicated and offline partitions, the quorum.
    Status,
    /// Plan (and unless --dry-run, start) a balanced assignment.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
        /// Move every replica off these brokers.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<i32>,
        /// Bytes/s each follower may copy for moving replicas.
        #[arg(long)]
        throttle: Option<i64>,
    },
    /// Move every replica off a broker (before removing it).
    Drain {
        broker: i32,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        throttle: Option<i64>,
    },
    /// Reassignments in progress.
    Progress,
    /// Cancel every reassignment in progress.
    Cancel,
    /// Replace the metadata quorum's voters, e.g. `voters 0,1,3`.
    Voters {
        #[arg(value_delimiter = ',', required = true)]
        ids: Vec<i32>,
    },
}

fn plan_json(p: RebalancePlan) -> Value {
    let load = |m: std::collections::BTreeMap<i32, sluice_api::admin::BrokerLoad>| -> Value {
        m.into_iter()
            .map(|(b, l)| {
                (
                    b.to_string(),
                    json!({"replicas": l.replicas, "leaders": l.leaders, "bytes": l.bytes}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "executed": p.executed,
        "bytes_to_move": p.bytes_to_move,
        "moves": p.moves.iter().map(|m| json!({
            "topic": m.topic, "partition": m.partition,
            "from": m.from_replicas, "to": m.to_replicas, "bytes": m.bytes,
        })).collect::<Vec<_>>(),
        "before": load(p.before),
        "after": load(p.after),
    })
}

fn progress_json(p: RebalanceProgress) -> Value {
    json!({
        "moving": p.moving.iter().map(|m| json!({
            "topic": m.topic, "partition": m.partition, "replicas": m.replicas,
            "adding": m.adding, "removing": m.removing,
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(server: &str, cmd: AdminCommand) -> anyhow::Result<()> {
    let url = if server.starts_with("http") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let mut c = AdminClient::connect(url.clone())
        .await
        .with_context(|| format!("connecting to the admin API at {url}"))?;
    let out = match cmd {
        AdminCommand::Status => {
            let s = c
                .get_cluster_status(GetClusterStatusRequest {})
                .await?
                .into_inner();
            let parts = |v: &[sluice_api::admin::PartitionRef]| -> Vec<Value> {
                v.iter()
                    .map(|p| json!({"topic": p.topic, "partition": p.partition}))
                    .collect()
            };
            json!({
                "cluster_id": s.cluster_id,
                "controller_id": s.controller_id,
                "brokers": s.brokers.iter().map(|b| json!({
                    "id": b.broker_id, "rack": b.rack, "fenced": b.fenced,
                })).collect::<Vec<_>>(),
                "topics": s.topics,
                "partitions": s.partitions,
                "under_replicated": parts(&s.under_replicated),
                "offline": parts(&s.offline),
                "reassigning_partitions": s.reassigning_partitions,
                "quorum": s.quorum.map(|q| json!({
                    "leader": q.leader_id, "voters": q.voters, "learners": q.learners,
                    "applied_index": q.applied_index,
                })),
            })
        }
        AdminCommand::Rebalance {
            dry_run,
            exclude,
            throttle,
        } => plan_json(
            c.rebalance(RebalanceRequest {
                dry_run,
                exclude_brokers: exclude,
                throttle_bytes_per_second: throttle,
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::Drain {
            broker,
            dry_run,
            throttle,
        } => plan_json(
            c.drain_broker(DrainBrokerRequest {
                broker_id: broker,
                dry_run,
                throttle_bytes_per_second: throttle,
            })
            .await?
            .into_inner(),
        ),
        AdminCommand::Progress => progress_json(
            c.get_rebalance_progress(GetRebalanceProgressRequest {})
                .await?
                .into_inner(),
        ),
        AdminCommand::Voters { ids } => {
            let q = c
                .set_quorum_voters(SetQuorumVotersRequest { voters: ids })
                .await?
                .into_inner();
            json!({"leader": q.leader_id, "voters": q.voters, "learners": q.learners})
        }
        AdminCommand::Cancel => progress_json(
            c.cancel_rebalance(CancelRebalanceRequest {})
                .await?
                .into_inner(),
        ),
    };
    println!("{out}");
    Ok(())
}
