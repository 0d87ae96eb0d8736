//! The one interface through which all cluster state is read and changed.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::image::{ClusterMetadata, MetadataCommand, MetadataError};

/// A linearizable log of metadata commands and the image they produce.
///
/// `quorum::Quorum` backs it with the Raft-replicated metadata log; handler tests use
/// `local::LocalMetadataStore`.
pub trait MetadataStore: Send + Sync + 'static {
    /// The latest committed image.
    fn current(&self) -> Arc<ClusterMetadata>;

    /// Notified with every newly committed image.
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>>;

    /// Proposes a command; resolves once it is committed (or rejected by the state
    /// machine) with the image that includes it.
    fn submit(
        &self,
        cmd: MetadataCommand,
    ) -> BoxFuture<'_, Result<Arc<ClusterMetadata>, MetadataError>>;
}
