//! Audit lines for failed authentications and denied requests. A client retrying in a
//! loop must not flood the log, so lines are rate limited and the suppressed count is
//! reported with the next line that gets through.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Lines allowed per window; the rest are counted.
const BURST: u32 = 20;
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

#[derive(Debug)]
pub struct AuditLog {
    window: Mutex<Window>,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }
}

impl AuditLog {
    /// `Some(suppressed since the last line)` when this event may be logged.
    fn admit(&self) -> Option<u64> {
        let mut w = self.window.lock();
        let now = Instant::now();
        if now.duration_since(w.started) >= WINDOW {
            w.started = now;
            w.logged = 0;
        }
        if w.logged >= BURST {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }

    pub fn authentication_failed(&self, peer: &str, listener: &str, mechanism: &str, reason: &str) {
        if let Some(suppressed) = self.admit() {
            tracing::warn!(target: "sluice::audit", %peer, %listener, %mechanism, %reason,
                suppressed, "authentication failed");
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn denied(
        &self,
        principal: &str,
        peer: &str,
        api: &str,
        operation: &str,
        resource_type: &str,
        resource: &str,
    ) {
        if let Some(suppressed) = self.admit() {
            tracing::warn!(target: "sluice::audit", %principal, %peer, %api, %operation,
                %resource_type, %resource, suppressed, "authorization denied");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_capped_and_counted() {
        let log = AuditLog::default();
        let admitted = (0..100).filter(|_| log.admit().is_some()).count();
        assert_eq!(admitted, BURST as usize);
        assert_eq!(log.window.lock().suppressed, 100 - u64::from(BURST));
    }
}
