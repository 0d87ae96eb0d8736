//! Sluice's internal gRPC API. The `.proto` files live in `proto/` at the repository root;
//! this crate only compiles them, for the broker (server) and the operator (client).

/// Broker administration: topics and broker/cluster status.
pub mod admin {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sluice.admin.v1");
}

/// The metadata quorum between brokers: Raft messages, command forwarding, heartbeats.
pub mod quorum {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sluice.quorum.v1");
}

/// Broker settings a running broker takes from the cluster metadata (Kafka's dynamic
/// broker configs): the operator applies these through the admin API instead of
/// restarting brokers. The broker checks this list against its own config definitions.
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "compression.type",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "message.max.bytes",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "follower.replication.throttled.rate",
    "unclean.leader.election.enable",
    "min.insync.replicas",
    "log.local.retention.ms",
    "log.local.retention.bytes",
    "log.remote.storage.enable",
    "log.retention.bytes",
    "log.retention.ms",
    "log.segment.bytes",
    "log.index.size.max.bytes",
    "log.roll.jitter.ms",
    "log.roll.ms",
];
