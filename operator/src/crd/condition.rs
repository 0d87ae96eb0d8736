//! Status conditions in the Kubernetes convention (`type`, `status`, `reason`, `message`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const REBALANCING: &str = "Rebalancing";

/// Sets a condition, keeping `lastTransitionTime` when its status did not change so that
/// repeated reconciles do not rewrite the status.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(Timestamp::now());
        }
        c.status = status;
        c.reason = reason.to_string();
        c.message = message;
        c.observed_generation = observed_generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation,
        last_transition_time: Time(Timestamp::now()),
    });
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_only_changes_with_status() {
        let mut c = Vec::new();
        set(
            &mut c,
            READY,
            false,
            "Starting",
            "0/3 brokers ready",
            Some(1),
        );
        let t0 = c[0].last_transition_time.clone();
        set(
            &mut c,
            READY,
            false,
            "Starting",
            "1/3 brokers ready",
            Some(1),
        );
        assert_eq!(c[0].last_transition_time, t0);
        assert_eq!(c[0].message, "1/3 brokers ready");
        std::thread::sleep(std::time::Duration::from_millis(2));
        set(&mut c, READY, true, "Ready", "3/3 brokers ready", Some(2));
        assert_ne!(c[0].last_transition_time, t0);
        assert!(is_true(&c, READY));
        assert_eq!(c.len(), 1);
    }
}
