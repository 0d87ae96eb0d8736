//! Broker and topic settings under their Kafka names.

pub mod broker;
pub mod defs;
pub mod security;
pub mod topic;

pub use broker::{BrokerConfig, ConfigError, ConfigSources, Listener};
pub use topic::{ConfigLayers, ConfigSource};
