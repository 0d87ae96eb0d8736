//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run:
//! one reconciles, the other waits to take over.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name} failed: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: LeaseManagerError,
}

/// A held Lease. `lost()` resolves if another replica takes it over; `release()` hands it
/// on at once instead of letting the successor wait for it to expire.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    pub async fn lost(&mut self) {
        while self.state.changed().await.is_ok() {
            if !*self.state.borrow() {
                return;
            }
        }
    }

    pub async fn release(self) {
        drop(self.state);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "could not release the leader lease; it expires by itself")
            }
            _ => tracing::warn!("releasing the leader lease timed out; it expires by itself"),
        }
    }
}

/// Waits until this replica holds the Lease. `None` if `shutdown` fired first.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<Leadership>, LeaseError> {
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
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %format!("{namespace}/{name}"), identity, "waiting for the leader lease");
    tokio::pin!(shutdown);
    loop {
        if *state.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return match task.await {
                        Ok(Err(e)) => Err(err(e)),
                        _ => Err(err(LeaseManagerError::InconsistentState("lease manager task stopped".into()))),
                    };
                }
            }
            () = &mut shutdown => {
                Leadership { state, task }.release().await;
                return Ok(None);
            }
        }
    }
    tracing::info!(identity, "acquired the leader lease");
    Ok(Some(Leadership { state, task }))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
