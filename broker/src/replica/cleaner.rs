//! The log cleaner: a background loop compacting partitions with `cleanup.policy=compact`,
//! one partition and one segment at a time. Produce and fetch never wait for it: segments
//! are read and rewritten outside the partition lock, which is only taken to swap a
//! finished segment in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{Broker, now_ms};
use crate::log::cleaner::{self, Cleaned, MAP_ENTRY_BYTES, OffsetMap, Throttle};
use crate::replica::Partition;

/// Totals of one partition's cleaning pass, for the log line and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub segments_rewritten: u64,
    pub segments_removed: u64,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Runs until shutdown.
pub async fn run(broker: Arc<Broker>) {
    let settings = broker.config.cleaner.clone();
    if !settings.enable {
        tracing::info!("log cleaner disabled (log.cleaner.enable=false)");
        return;
    }
    let backoff = Duration::from_millis(settings.backoff_ms.max(10));
    loop {
        let b = broker.clone();
        let cleaned = tokio::task::spawn_blocking(move || clean_dirtiest(&b))
            .await
            .unwrap_or(false);
        if !cleaned {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = broker.shutdown.cancelled() => break,
            }
        } else if broker.shutdown.is_cancelled() {
            break;
        }
    }
}

/// How long a partition whose cleaning failed is left alone before it is tried again,
/// so one bad partition does not stop the others from being cleaned.
const FAILED_BACKOFF: Duration = Duration::from_secs(600);

/// Partitions whose cleaning failed, and when.
type FailedPartitions = parking_lot::Mutex<HashMap<(Arc<str>, i32), Instant>>;

static FAILED: std::sync::LazyLock<FailedPartitions> = std::sync::LazyLock::new(Default::default);

/// Cleans the partition with the highest dirty ratio. Returns whether one was cleaned.
pub fn clean_dirtiest(broker: &Broker) -> bool {
    let now = now_ms();
    FAILED.lock().retain(|_, at| at.elapsed() < FAILED_BACKOFF);
    let best = broker
        .replicas
        .all_partitions()
        .into_iter()
        .filter(|p| !FAILED.lock().contains_key(&(p.topic.clone(), p.index)))
        .filter_map(|p| p.cleaning_plan(now).map(|plan| (p, plan)))
        .max_by(|a, b| a.1.dirty_ratio.total_cmp(&b.1.dirty_ratio));
    let Some((p, plan)) = best else {
        return false;
    };
    let max_entries = (broker.config.cleaner.dedupe_buffer_size / MAP_ENTRY_BYTES) as usize;
    match clean_partition(
        &p,
        plan,
        now,
        max_entries,
        broker.config.cleaner.io_max_bytes_per_second,
        || broker.shutdown.is_cancelled(),
    ) {
        Ok(stats) => {
            broker.metrics.cleaner_pass(&stats);
            true
        }
        Err(e) => {
            broker.metrics.cleaner_error();
            FAILED
                .lock()
                .insert((p.topic.clone(), p.index), Instant::now());
            tracing::error!(topic = %p.topic, partition = p.index, error = %e,
                retry_in_s = FAILED_BACKOFF.as_secs(),
                "log cleaning failed; the partition keeps its uncleaned segments and is retried later");
            false
        }
    }
}

/// One cleaning pass over a partition.
pub fn clean_partition(
    p: &Partition,
    plan: crate::log::partition_log::CleaningPlan,
    now: i64,
    max_entries: usize,
    io_bytes_per_second: u64,
    cancelled: impl Fn() -> bool,
) -> Result<PassStats, cleaner::CleanerError> {
    let started = Instant::now();
    let config = p.config();
    let dir = p.log_dir();
    tracing::info!(topic = %p.topic, partition = p.index, first_dirty = plan.first_dirty,
        dirty_end = plan.dirty_end, dirty_ratio = plan.dirty_ratio,
        segments = plan.segments.len(), "cleaning");
    let mut throttle = Throttle::new(io_bytes_per_second);
    let mut map = OffsetMap::default();
    let mapped_to = cleaner::build_offset_map(
        &plan.segments,
        plan.first_dirty,
        plan.dirty_end,
        max_entries,
        &mut map,
        &mut throttle,
    )?;
    let mut stats = PassStats::default();
    let mut checkpoint = p.cleaner_checkpoint();
    let first_base = plan.segments.first().map(|s| s.base_offset);
    let mut tombstone_due: Option<i64> = None;
    for seg in plan
        .segments
        .iter()
        .filter(|s| s.base_offset < mapped_to.max(plan.first_dirty))
    {
        if cancelled() {
            return Ok(stats);
        }
        let (outcome, s) = cleaner::clean_segment(
            &dir,
            seg,
            &map,
            &checkpoint,
            now,
            config.delete_retention_ms,
            config.index_interval_bytes,
            Some(seg.base_offset) == first_base,
            &mut throttle,
        )?;
        if let Some(d) = s.tombstone_due {
            tombstone_due = Some(tombstone_due.map_or(d, |x: i64| x.min(d)));
        }
        stats.records_removed += s.records_read - s.records_kept;
        stats.bytes_before += s.bytes_before;
        stats.bytes_after += s.bytes_after;
        let installed = match outcome {
            Cleaned::Unchanged => continue,
            Cleaned::Empty => {
                stats.segments_removed += 1;
                p.install_cleaned(seg.base_offset, &seg.file, None)
            }
            Cleaned::Replacement(new) => {
                stats.segments_rewritten += 1;
                p.install_cleaned(seg.base_offset, &seg.file, Some(*new))
            }
        }
        .map_err(|e| cleaner::CleanerError::Rewrite {
            offset: seg.base_offset,
            reason: e.to_string(),
        })?;
        tracing::info!(topic = %p.topic, partition = p.index, base_offset = seg.base_offset,
            installed, records_read = s.records_read, records_kept = s.records_kept,
            tombstones_removed = s.tombstones_removed, bytes_before = s.bytes_before,
            bytes_after = s.bytes_after, "cleaned segment");
    }
    // Tombstones in segments this pass left unchanged keep their earlier due time.
    checkpoint.record_pass(mapped_to, now, tombstone_due);
    p.set_cleaner_checkpoint(checkpoint)
        .map_err(|e| cleaner::CleanerError::Rewrite {
            offset: mapped_to,
            reason: e.to_string(),
        })?;
    tracing::info!(topic = %p.topic, partition = p.index, keys = map.len(),
        records_removed = stats.records_removed, segments_rewritten = stats.segments_rewritten,
        segments_removed = stats.segments_removed, bytes_before = stats.bytes_before,
        bytes_after = stats.bytes_after, elapsed_ms = started.elapsed().as_millis() as u64,
        "cleaning pass finished");
    Ok(stats)
}
