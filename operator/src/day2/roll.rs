//! Rolling restarts: one broker at a time, only while every other broker is ready and no
//! partition is under-replicated; the controller goes last. A restarted broker that does
//! not come back stops the roll instead of restarting more.

use super::{Observed, Plan, Step, all_ready};

/// Reports the last restart's fate and picks the next broker to restart.
pub(super) fn restart(o: &Observed, p: &mut Plan) {
    let Some(rev) = o.update_revision.as_deref() else {
        return;
    };
    // Brokers being removed are not restarted.
    let count = p.replicas.min(o.target);
    let stale: Vec<_> = o
        .pods
        .iter()
        .filter(|pod| pod.ordinal < count && pod.revision.as_deref() != Some(rev))
        .collect();
    if let Some(r) = &o.status.restart
        && let Some(pod) = o.pods.iter().find(|pod| pod.ordinal == r.broker)
        && pod.uid != r.pod_uid
        && !pod.ready
    {
        let since = rfc3339_to_unix(&r.started_at).unwrap_or(o.now);
        let waited = o.now.saturating_sub(since);
        if let Some(why) = &pod.failing {
            p.degraded = Some((
                "RollStuck",
                format!(
                    "broker {} was restarted {waited} s ago and is failing ({why}); the rolling restart is stopped. Fix the Cluster spec; the other brokers keep running the previous revision",
                    r.broker
                ),
            ));
        } else if !pod.started {
            // Log recovery can take long; the startup probe bounds it, not this timeout.
            p.rolling = Some((
                "RollingOut",
                format!(
                    "broker {} is recovering its logs after its restart ({waited} s so far)",
                    r.broker
                ),
            ));
            return;
        } else if waited > o.ops.broker_ready_timeout_seconds {
            p.degraded = Some((
                "RollStuck",
                format!(
                    "broker {} was restarted {waited} s ago, has recovered its logs but is not ready (brokerReadyTimeoutSeconds {}); the rolling restart is stopped. Check its log and /readyz",
                    r.broker, o.ops.broker_ready_timeout_seconds
                ),
            ));
        }
    }
    if stale.is_empty() {
        return;
    }
    let progress = format!("{} of {count} brokers run an old revision", stale.len());
    let wait = |p: &mut Plan, why: String| {
        p.rolling = Some(("RollingOut", format!("{progress}; waiting: {why}")));
    };
    if p.step != Step::Wait || p.degraded.is_some() {
        return wait(p, "another operation goes first".into());
    }
    // One change at a time: not while the StatefulSet is resized in this reconcile, and
    // not while any broker pod — staying or leaving — is down.
    if o.current != Some(p.replicas) {
        return wait(p, "the StatefulSet is being resized".into());
    }
    if let Err(why) = all_ready(o, p.replicas) {
        return wait(p, why);
    }
    if let Some(pod) = o.pods.iter().find(|pod| !pod.ready || pod.terminating) {
        return wait(p, format!("broker-{} is not ready", pod.ordinal));
    }
    let Some(c) = o.cluster else {
        return wait(p, "the admin API does not answer".into());
    };
    if c.offline > 0 || c.under_replicated > 0 {
        return wait(
            p,
            format!(
                "{} partitions under-replicated, {} offline",
                c.under_replicated, c.offline
            ),
        );
    }
    if let Some(id) = (0..p.replicas).find(|id| c.brokers.get(id).is_none_or(|b| b.fenced)) {
        return wait(
            p,
            format!("broker {id} is not serving (fenced or unregistered)"),
        );
    }
    // The controller last: every restart before it moves the quorum leadership once less.
    let next = stale
        .iter()
        .find(|pod| pod.ordinal != c.controller)
        .or_else(|| stale.first());
    if let Some(pod) = next {
        p.rolling = Some((
            "RollingOut",
            format!("{progress}; restarting broker {}", pod.ordinal),
        ));
        p.step = Step::Restart {
            ordinal: pod.ordinal,
            uid: pod.uid.clone(),
        };
    }
}

/// Unix seconds of an RFC 3339 timestamp, as the operator writes them in status.
pub fn rfc3339_to_unix(s: &str) -> Option<i64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}
