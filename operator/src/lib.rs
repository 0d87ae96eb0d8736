//! Sluice Kubernetes operator: reconciles `Cluster` and `Topic` resources (group
//! `sluice.dev`) onto broker StatefulSets and Kafka topics.

pub mod admin;
pub mod controller;
pub mod crd;
pub mod day2;
pub mod leader;
pub mod rack_init;
pub mod reconcile;
pub mod telemetry;
pub mod topic_sync;
