//! Rebalancing and draining: plan a balanced assignment (`planner.rs`) from the committed
//! metadata and partition sizes, and execute it as partition reassignments.

pub mod planner;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sluice_api::admin::ListPartitionSizesRequest;
use sluice_api::admin::admin_client::AdminClient;

use crate::broker::Broker;
use crate::metadata::reassign::Reassignment;
use crate::metadata::{ClusterMetadata, MetadataCommand, MetadataError};
use planner::{BrokerInfo, PartitionInfo, Plan};

/// The dynamic cluster setting that caps what followers copy for moving replicas.
pub const THROTTLE_CONFIG: &str = "follower.replication.throttled.rate";

const SIZE_TIMEOUT: Duration = Duration::from_secs(3);

/// Local sizes of the partitions this broker leads.
pub fn local_leader_sizes(broker: &Broker) -> Vec<(String, i32, u64)> {
    broker
        .replicas
        .all_partitions()
        .into_iter()
        .filter(|p| p.is_leader())
        .map(|p| (p.topic.to_string(), p.index, p.local_usage(i64::MAX).1))
        .collect()
}

/// Partition sizes as their leaders report them; a broker that does not answer within a
/// few seconds leaves its partitions at 0 (the plan is then by counts only for them).
pub async fn partition_sizes(broker: &Arc<Broker>) -> HashMap<(String, i32), u64> {
    let mut sizes: HashMap<(String, i32), u64> = local_leader_sizes(broker)
        .into_iter()
        .map(|(t, p, s)| ((t, p), s))
        .collect();
    let Some(quorum) = &broker.quorum else {
        return sizes;
    };
    let peers = quorum
        .member_addrs()
        .into_iter()
        .filter(|(id, _)| *id != broker.node_id);
    let asks = peers.map(|(id, addr)| async move {
        let call = async {
            let channel = crate::security::internal::endpoint(&addr)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut c = AdminClient::new(channel);
            c.list_partition_sizes(ListPartitionSizesRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        let r = tokio::time::timeout(SIZE_TIMEOUT, call).await.ok().flatten();
        if r.is_none() {
            tracing::warn!(broker = id, addr = %addr, "no partition sizes from broker; planning its partitions by count only");
        }
        r
    });
    for reply in futures::future::join_all(asks).await.into_iter().flatten() {
        for p in reply.partitions {
            sizes.insert((p.topic, p.partition), p.size_bytes.max(0) as u64);
        }
    }
    sizes
}

/// The plan for the current metadata: every unfenced broker not in `exclude` may hold
/// replicas.
pub fn build_plan(
    md: &ClusterMetadata,
    sizes: &HashMap<(String, i32), u64>,
    exclude: &[i32],
) -> Plan {
    let eligible: Vec<BrokerInfo> = md
        .brokers
        .values()
        .filter(|b| !b.fenced && !exclude.contains(&b.id))
        .map(|b| BrokerInfo {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect();
    let partitions: Vec<PartitionInfo> = md
        .topics
        .values()
        .flat_map(|t| {
            t.partitions.iter().enumerate().map(|(i, p)| PartitionInfo {
                topic: t.name.clone(),
                partition: i as i32,
                // A move in progress is planned from where it is going.
                replicas: p.target_replicas(),
                size_bytes: sizes.get(&(t.name.clone(), i as i32)).copied().unwrap_or(0),
            })
        })
        .collect();
    planner::plan(&eligible, &partitions)
}

/// Starts the plan's moves (and sets the throttle first, if given).
pub async fn execute(
    broker: &Arc<Broker>,
    plan: &Plan,
    throttle: Option<i64>,
) -> Result<(), MetadataError> {
    if let Some(rate) = throttle {
        let md = broker.metadata.current();
        let mut configs = md.cluster_configs.clone();
        configs.insert(THROTTLE_CONFIG.to_string(), rate.to_string());
        broker
            .metadata
            .submit(MetadataCommand::SetBrokerConfigs {
                broker: None,
                configs,
            })
            .await?;
    }
    if plan.moves.is_empty() {
        return Ok(());
    }
    let moves = plan
        .moves
        .iter()
        .map(|m| Reassignment {
            topic: m.topic.clone(),
            partition: m.partition,
            target: Some(m.to.clone()),
        })
        .collect();
    tracing::info!(
        partitions = plan.moves.len(),
        bytes = plan.bytes_to_move,
        "starting rebalance"
    );
    broker
        .metadata
        .submit(MetadataCommand::ReassignPartitions { moves })
        .await?;
    Ok(())
}

/// A partition being moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moving {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

pub fn in_progress(md: &ClusterMetadata) -> Vec<Moving> {
    md.topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_reassigning())
                .map(|(i, p)| Moving {
                    topic: t.name.clone(),
                    partition: i as i32,
                    replicas: p.replicas.clone(),
                    adding: p.adding.clone(),
                    removing: p.removing.clone(),
                })
        })
        .collect()
}

/// Cancels every move in progress.
pub async fn cancel_all(broker: &Arc<Broker>) -> Result<(), MetadataError> {
    let md = broker.metadata.current();
    let moves: Vec<Reassignment> = in_progress(&md)
        .into_iter()
        .map(|m| Reassignment {
            topic: m.topic,
            partition: m.partition,
            target: None,
        })
        .collect();
    if moves.is_empty() {
        return Ok(());
    }
    broker
        .metadata
        .submit(MetadataCommand::ReassignPartitions { moves })
        .await
        .map(|_| ())
}

/// Per-broker load as the plan reports it.
pub fn loads(
    plan_side: &BTreeMap<i32, planner::Load>,
) -> BTreeMap<i32, sluice_api::admin::BrokerLoad> {
    plan_side
        .iter()
        .map(|(b, l)| {
            (
                *b,
                sluice_api::admin::BrokerLoad {
                    replicas: l.replicas as i32,
                    leaders: l.leaders as i32,
                    bytes: l.bytes as i64,
                },
            )
        })
        .collect()
}
