//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run:
//! one reconciles, the other waits to take over.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};

#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name} failed: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: kube_lease_manager::LeaseManagerError,
}

/// Blocks until this replica holds the Lease; returns a receiver that turns `false` if
/// the lease is lost (the caller then exits, and a restart campaigns again).
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<tokio::sync::watch::Receiver<bool>, LeaseError> {
    let err = |source| LeaseError {
        namespace: namespace.into(),
        name: name.into(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_parameters(LeaseParams::new(identity, 15, 5))
        .build()
        .await
        .map_err(err)?;
    let (mut rx, task) = manager.watch().await;
    tracing::info!(lease = %format!("{namespace}/{name}"), identity, "waiting for the leader lease");
    loop {
        if *rx.borrow_and_update() {
            break;
        }
        if rx.changed().await.is_err() {
            return match task.await {
                Ok(Err(e)) => Err(err(e)),
                _ => Err(err(
                    kube_lease_manager::LeaseManagerError::InconsistentState(
                        "lease manager task stopped".into(),
                    ),
                )),
            };
        }
    }
    tracing::info!(identity, "acquired the leader lease");
    Ok(rx)
}
