//! Partition storage: segmented append-only logs of Kafka v2 record batches.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod epoch_cache;
pub mod index;
pub mod partition_log;
pub mod producer_state;
pub mod records;
pub mod segment;
pub mod validate;

pub use config::LogConfig;
pub use partition_log::{AppendInfo, LogError, PartitionLog, ValidBatch};
