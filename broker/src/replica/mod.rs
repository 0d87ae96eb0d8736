//! Partition replicas hosted by this broker.

pub mod cleaner;
pub mod maintenance;
pub mod manager;
pub mod partition;

pub use manager::{ReplicaError, ReplicaManager};
pub use partition::{Partition, PartitionError};
