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
