//! Leader side of ISR maintenance: followers that fell behind for
//! `replica.lag.time.max.ms` leave the ISR, followers that caught up rejoin — each change
//! proposed to the controller as an AlterPartition command.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, now_ms};
use crate::metadata::{MetadataCommand, MetadataError};

const INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lag_max = broker.config.replication.lag_time_max_ms;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.shutdown.cancelled() => break,
        }
        let now = now_ms();
        let md = broker.metadata.current();
        for p in broker.replicas.all_partitions() {
            let Some(change) = p.desired_isr(now, lag_max, |r| md.is_active(r)) else {
                continue;
            };
            if !p.begin_isr_change(&change, now) {
                continue;
            }
            let broker = broker.clone();
            tokio::spawn(async move {
                let cmd = MetadataCommand::AlterPartition {
                    topic: p.topic.to_string(),
                    partition: p.index,
                    leader_epoch: change.leader_epoch,
                    partition_epoch: change.partition_epoch,
                    isr: change.isr.clone(),
                };
                match broker.metadata.submit(cmd).await {
                    Ok(_) => {
                        if !change.shrunk.is_empty() {
                            tracing::warn!(topic = %p.topic, partition = p.index, removed = ?change.shrunk,
                                isr = ?change.isr, lag_max_ms = lag_max,
                                "shrank the ISR: followers did not catch up within replica.lag.time.max.ms");
                        }
                        if !change.expanded.is_empty() {
                            tracing::info!(topic = %p.topic, partition = p.index, added = ?change.expanded,
                                isr = ?change.isr, "expanded the ISR: followers caught up");
                        }
                    }
                    Err(e) => {
                        tracing::info!(topic = %p.topic, partition = p.index, error = %e,
                            "ISR change not accepted (leadership may have moved)");
                        // Only a refusal is final; after a timeout the change may still
                        // commit, and it is proposed again later.
                        if !matches!(e, MetadataError::Unavailable(_) | MetadataError::Closed) {
                            p.abort_isr_change();
                        }
                    }
                }
            });
        }
    }
}
