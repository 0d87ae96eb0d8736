//! Partition replication in Kafka's ISR model: followers fetch from leaders
//! (`fetcher.rs`, over `client.rs`), leaders keep the ISR (`isr.rs`). The leader side of
//! a fetch (follower progress, high watermark) lives in `replica::Partition`.

pub mod client;
pub mod fetcher;
pub mod isr;

pub use fetcher::ReplicaFetchers;
