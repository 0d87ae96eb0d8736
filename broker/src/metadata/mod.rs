//! Cluster metadata: brokers, topics, partition assignments and dynamic configs.

pub mod image;
#[cfg(test)]
pub mod local;
pub mod quorum;
pub mod reassign;
pub mod store;

pub use image::{
    BrokerRegistration, ClusterMetadata, Endpoint, MetadataCommand, MetadataError, PartitionState,
    TopicMetadata,
};
pub use store::MetadataStore;
