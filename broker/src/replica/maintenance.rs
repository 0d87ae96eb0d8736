//! Background work on hosted partitions: retention, time- and roll-triggered flushes,
//! checkpoints, and applying metadata changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::broker::{Broker, now_ms};
use crate::protocol::topics::apply_locally;

fn every(ms: u64) -> tokio::time::Interval {
    let mut i = tokio::time::interval(Duration::from_millis(ms.max(1)));
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// Runs until shutdown. Each job runs on the blocking pool; a slow disk delays the next
/// tick of that job only.
pub async fn run(broker: Arc<Broker>) {
    let c = &broker.config;
    let mut retention = every(c.log_retention_check_interval_ms);
    let mut flush = every(c.log_flush_scheduler_interval_ms);
    let mut checkpoint = every(c.log_flush_offset_checkpoint_interval_ms);
    // The first tick of an interval fires at once; skip it.
    retention.tick().await;
    flush.tick().await;
    checkpoint.tick().await;
    loop {
        let replicas = broker.replicas.clone();
        tokio::select! {
            _ = retention.tick() => {
                let expiration = broker.config.producer_id_expiration_ms;
                let _ = tokio::task::spawn_blocking(move || replicas.apply_retention(now_ms(), expiration)).await;
            }
            _ = flush.tick() => {
                let _ = tokio::task::spawn_blocking(move || replicas.flush(false)).await;
            }
            _ = checkpoint.tick() => {
                let r = tokio::task::spawn_blocking(move || replicas.write_checkpoints()).await;
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %e, "writing checkpoints failed");
                }
            }
            _ = broker.shutdown.cancelled() => break,
        }
    }
}

/// Applies every committed metadata image to the local partitions.
pub async fn watch_metadata(broker: Arc<Broker>) {
    let mut rx = broker.metadata.subscribe();
    // Partitions were opened against this image: start following their leaders.
    let first = rx.borrow_and_update().clone();
    apply_locally(&broker, first).await;
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let md = rx.borrow_and_update().clone();
                apply_locally(&broker, md).await;
                crate::group::GroupCoordinator::sync_partitions(&broker).await;
            }
            _ = broker.shutdown.cancelled() => break,
        }
    }
}
