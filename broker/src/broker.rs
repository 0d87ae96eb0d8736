//! Shared state of a running broker, handed to every request handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::metadata::MetadataStore;
use crate::metrics::Metrics;
use crate::replica::ReplicaManager;

pub struct Broker {
    pub node_id: i32,
    pub cluster_id: String,
    pub config: BrokerConfig,
    pub metadata: Arc<dyn MetadataStore>,
    pub replicas: Arc<ReplicaManager>,
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM: stop accepting, finish in-flight work, flush, exit.
    pub shutdown: CancellationToken,
    /// Serialises read-modify-write changes of dynamic configs.
    pub config_changes: tokio::sync::Mutex<()>,
    pub started: std::time::Instant,
    pub producer_ids: crate::producer_ids::ProducerIdManager,
    pub groups: crate::group::GroupCoordinator,
    /// Tiered storage; `None` when `remote.log.storage.system.enable` is false.
    pub tier: Option<Arc<crate::tiered::TierManager>>,
    /// The metadata quorum behind `metadata` (absent in handler tests).
    pub quorum: Option<Arc<crate::metadata::quorum::Quorum>>,
    /// Follower fetchers, one per leader this broker replicates from.
    pub fetchers: crate::replication::ReplicaFetchers,
    /// Authentication, ACLs and quotas.
    pub security: Arc<crate::security::Security>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        cluster_id: String,
        metadata: Arc<dyn MetadataStore>,
        replicas: Arc<ReplicaManager>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            node_id: config.node_id,
            cluster_id,
            config,
            metadata,
            replicas,
            metrics,
            shutdown: CancellationToken::new(),
            config_changes: tokio::sync::Mutex::new(()),
            started: std::time::Instant::now(),
            producer_ids: Default::default(),
            groups: crate::group::GroupCoordinator::default(),
            tier: None,
            quorum: None,
            fetchers: Default::default(),
            security: Arc::new(crate::security::Security::open()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn with_tier(mut self, tier: Option<Arc<crate::tiered::TierManager>>) -> Self {
        self.tier = tier;
        self
    }

    pub fn with_security(mut self, security: Arc<crate::security::Security>) -> Self {
        self.security = security;
        self
    }

    pub fn with_quorum(mut self, quorum: Arc<crate::metadata::quorum::Quorum>) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// The controller reported to clients: the metadata quorum leader. Any broker accepts
    /// admin requests (they are forwarded), so without a known leader this one will do.
    pub fn controller_id(&self) -> i32 {
        self.quorum
            .as_ref()
            .and_then(|q| q.leader())
            .unwrap_or(self.node_id)
    }

    /// Cut off from the controller for a session timeout (see `Quorum::out_of_contact`).
    pub fn out_of_contact(&self) -> bool {
        self.quorum.as_ref().is_some_and(|q| q.out_of_contact())
    }

    /// Ready once listeners are bound and this broker is registered; false again while
    /// shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
