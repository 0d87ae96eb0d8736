//! Sluice broker: a Kafka-compatible event streaming broker.

pub mod admin;
pub mod broker;
pub mod config;
pub mod data_dirs;
pub mod group;
pub mod http;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod producer_ids;
pub mod protocol;
pub mod rebalance;
pub mod replica;
pub mod replication;
pub mod security;
pub mod server;
pub mod tiered;
