//! Client quotas as Kafka's `ClientQuotaManager` applies them: which configured quota binds a
//! (user, client-id) pair, and the sliding-window rate that turns a violation into a throttle
//! time. Matching Kafka's arithmetic keeps client back-off behaviour identical.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One part of a quota entity: Kafka's `<default>` applies to every name without its own entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

/// One quota entity as Kafka's AlterClientQuotas names it: user, client-id, or both. (Kafka
/// also has ip; that is a connection quota, not a client quota, and is not supported.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const QUOTA_KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// Kafka's idle-sensor expiry: a client that went away stops costing memory after an hour.
pub const IDLE_SENSOR_EXPIRY: Duration = Duration::from_secs(3600);
/// Idle sensors are looked for at most this often so `record` stays cheap.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
    Request,
}

impl QuotaKind {
    /// The quota config key that bounds this kind.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            PRODUCER_BYTE_RATE => Some(QuotaKind::Produce),
            CONSUMER_BYTE_RATE => Some(QuotaKind::Fetch),
            REQUEST_PERCENTAGE => Some(QuotaKind::Request),
            _ => None,
        }
    }
}

/// The configured quotas: entity -> (key -> value).
pub type QuotaConfigs = BTreeMap<QuotaEntity, BTreeMap<String, f64>>;

/// Identifies the rate sensor a request is charged to. Everything that resolves to the same
/// quota entity shares one sensor, so e.g. all clients of a user share a user-level quota.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorKey {
    pub kind: QuotaKind,
    /// The caller's user name, or "" when the quota is not per user.
    pub user: String,
    /// The caller's client id, or "" when the quota is not per client id.
    pub client_id: String,
}

/// Which quota applies to (user, client_id) for `kind`, in Kafka's documented precedence:
/// `users/<user>/clients/<client-id>`, `users/<user>/clients/<default>`, `users/<user>`,
/// `users/<default>/clients/<client-id>`, `users/<default>/clients/<default>`,
/// `users/<default>`, `clients/<client-id>`, `clients/<default>`. Returns the bound and the key
/// of the sensor that measures it: the sensor is shared by everything that resolves to the
/// same entity; a `<default>` part becomes the caller's actual name (each user gets its own
/// default quota), an absent part becomes "". When the user is unauthenticated ("ANONYMOUS")
/// user quotas still apply by that name, as Kafka does.
///
/// Like Kafka (whose `quotaLimit` looks the bound up again from the sensor's tags), an empty
/// user or client id collapses to the coarser level, so e.g. a client with an empty client id
/// matched at `users/<user>/clients/<default>` gets the `users/<user>` bound, if any.
pub fn resolve(
    configs: &QuotaConfigs,
    user: &str,
    client_id: &str,
    kind: QuotaKind,
) -> Option<(SensorKey, f64)> {
    let key = kind.key();
    let (tag_user, tag_client) = metric_tags(configs, user, client_id, key);
    let bound = quota_limit(configs, tag_user, tag_client, key)?;
    let sensor = SensorKey {
        kind,
        user: tag_user.to_owned(),
        client_id: tag_client.to_owned(),
    };
    Some((sensor, bound))
}

fn named(name: &str) -> Option<EntityName> {
    Some(EntityName::Named(name.to_owned()))
}

fn lookup(
    configs: &QuotaConfigs,
    user: Option<EntityName>,
    client_id: Option<EntityName>,
    key: &str,
) -> Option<f64> {
    configs
        .get(&QuotaEntity { user, client_id })?
        .get(key)
        .copied()
}

/// Kafka's `DefaultQuotaCallback.quotaMetricTags`: the (user, client-id) tags of the sensor,
/// chosen by the most specific entity that has a quota of this kind.
fn metric_tags<'a>(
    configs: &QuotaConfigs,
    user: &'a str,
    client_id: &'a str,
    key: &str,
) -> (&'a str, &'a str) {
    let has = |u: Option<EntityName>, c: Option<EntityName>| lookup(configs, u, c, key).is_some();
    let default = || Some(EntityName::Default);
    if has(named(user), named(client_id)) || has(named(user), default()) {
        (user, client_id)
    } else if has(named(user), None) {
        (user, "")
    } else if has(default(), named(client_id)) || has(default(), default()) {
        (user, client_id)
    } else if has(default(), None) {
        (user, "")
    } else {
        ("", client_id)
    }
}

/// Kafka's `DefaultQuotaCallback.quotaLimit`: the bound for a sensor's tags.
fn quota_limit(configs: &QuotaConfigs, user: &str, client_id: &str, key: &str) -> Option<f64> {
    let default = || Some(EntityName::Default);
    if !user.is_empty() && !client_id.is_empty() {
        lookup(configs, named(user), named(client_id), key)
            .or_else(|| lookup(configs, named(user), default(), key))
            .or_else(|| lookup(configs, default(), named(client_id), key))
            .or_else(|| lookup(configs, default(), default(), key))
    } else if !user.is_empty() {
        lookup(configs, named(user), None, key).or_else(|| lookup(configs, default(), None, key))
    } else if !client_id.is_empty() {
        lookup(configs, None, named(client_id), key)
            .or_else(|| lookup(configs, None, default(), key))
    } else {
        None
    }
}

/// Validation for AlterClientQuotas: key must be one of QUOTA_KEYS; value > 0 and finite.
/// Kafka types the byte rates as longs, so it also refuses fractional byte rates.
pub fn validate(key: &str, value: f64) -> Result<(), String> {
    let Some(kind) = QuotaKind::from_key(key) else {
        return Err(format!(
            "invalid quota key `{key}`: expected one of {}",
            QUOTA_KEYS.join(", ")
        ));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "quota {key} must be a finite number greater than 0, got {value}"
        ));
    }
    if kind != QuotaKind::Request && (value - value.round()).abs() > 1e-6 {
        return Err(format!(
            "quota {key} must be a whole number (a Long), got {value}"
        ));
    }
    Ok(())
}

/// The amount to record for a request quota. Kafka measures handler time as a percentage of
/// one thread: each second of handler time counts 100, so the per-second rate compares
/// directly with `request_percentage` (a quota of 50 lets the client's requests occupy half
/// of one thread).
pub fn request_time_amount(handler_time: Duration) -> f64 {
    handler_time.as_secs_f64() * 100.0
}

#[derive(Debug, Clone, Copy)]
struct WindowConfig {
    samples: usize,
    window: Duration,
    /// `samples * window`: samples whose last event is older than this are obsolete.
    span: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    last_event: Instant,
    value: f64,
}

impl Sample {
    fn new(now: Instant) -> Self {
        Sample {
            start: now,
            last_event: now,
            value: 0.0,
        }
    }
}

/// Kafka's `Rate` over a `SampledStat` (`WindowedSum`).
#[derive(Debug)]
struct Sensor {
    samples: Vec<Sample>,
    current: usize,
    last_record: Instant,
}

impl Sensor {
    fn new(now: Instant) -> Self {
        Sensor {
            samples: vec![Sample::new(now)],
            current: 0,
            last_record: now,
        }
    }

    fn record(&mut self, amount: f64, now: Instant, cfg: &WindowConfig) {
        let complete = self
            .samples
            .get(self.current)
            .is_none_or(|s| now.saturating_duration_since(s.start) >= cfg.window);
        if complete {
            self.advance(now, cfg.samples);
        }
        if let Some(s) = self.samples.get_mut(self.current) {
            s.value += amount;
            s.last_event = now;
        }
        self.last_record = now;
    }

    /// Kafka keeps one sample more than it measures, so a window that started before the
    /// measured span but still has recent events is not thrown away early.
    fn advance(&mut self, now: Instant, samples: usize) {
        self.current = (self.current + 1) % (samples + 1);
        match self.samples.get_mut(self.current) {
            Some(s) => *s = Sample::new(now),
            None => {
                self.samples.push(Sample::new(now));
                self.current = self.samples.len() - 1;
            }
        }
    }

    /// The rate per second and the span (in seconds) it was measured over. Like Kafka the span
    /// is at least `samples - 1` full windows, so a first burst is averaged over the whole
    /// window instead of looking like an enormous rate.
    fn measure(&mut self, now: Instant, cfg: &WindowConfig) -> (f64, f64) {
        for s in &mut self.samples {
            if now.saturating_duration_since(s.last_event) >= cfg.span {
                *s = Sample::new(now);
            }
        }
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        let oldest = self.samples.iter().map(|s| s.start).min().unwrap_or(now);
        let window = cfg.window.as_nanos().max(1);
        let mut elapsed = now.saturating_duration_since(oldest).as_nanos();
        let full_windows = elapsed / window;
        let min_full_windows = (cfg.samples as u128).saturating_sub(1);
        if full_windows < min_full_windows {
            elapsed += (min_full_windows - full_windows) * window;
        }
        // A zero span would make the rate infinite; Kafka's older Rate also floors it at 1 ms.
        let secs = elapsed.max(1_000_000) as f64 / 1e9;
        (total / secs, secs)
    }
}

#[derive(Debug, Default)]
struct MeterState {
    sensors: HashMap<SensorKey, Sensor>,
    last_sweep: Option<Instant>,
}

/// Measures rates per sensor over Kafka's sliding window of `samples` windows of `window` each
/// (quota.window.num = 11, quota.window.size.seconds = 1), and computes throttle time like
/// Kafka: throttle = (observed_rate - quota) / quota * window_size, where window_size is the
/// measured span of the retained samples (not less than (samples-1) * window); 0 when within
/// quota. Request-percentage throttles are capped at one window, as Kafka's
/// `ClientRequestQuotaManager` does; byte-rate throttles are not capped, as in Kafka.
///
/// For `request_percentage`, record handler time as a percentage of one thread: amount =
/// handler nanoseconds / 1e9 * 100 (see [`request_time_amount`]), so the per-second rate
/// compares directly with the quota (50 = half of one thread).
///
/// Thread-safe; sensors idle for an hour are dropped lazily.
#[derive(Debug)]
pub struct QuotaMeter {
    cfg: WindowConfig,
    state: Mutex<MeterState>,
}

impl QuotaMeter {
    /// Zero samples or a zero window would make rates meaningless, so they are raised to one
    /// sample and one millisecond.
    pub fn new(samples: usize, window: Duration) -> Self {
        let samples = samples.max(1);
        let window = window.max(Duration::from_millis(1));
        let span = window.saturating_mul(u32::try_from(samples).unwrap_or(u32::MAX));
        QuotaMeter {
            cfg: WindowConfig {
                samples,
                window,
                span,
            },
            state: Mutex::new(MeterState::default()),
        }
    }

    /// Records `amount` (bytes, or handler time in percent-seconds for Request: see the type's
    /// docs) and returns the throttle time. `now` is passed in so tests are deterministic. A
    /// quota that is not positive (which `validate` rejects) never throttles.
    pub fn record(&self, key: &SensorKey, amount: f64, quota: f64, now: Instant) -> Duration {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let sweep_due = state
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_INTERVAL);
        if sweep_due {
            state
                .sensors
                .retain(|_, s| now.saturating_duration_since(s.last_record) < IDLE_SENSOR_EXPIRY);
            state.last_sweep = Some(now);
        }
        let sensor = match state.sensors.get_mut(key) {
            Some(sensor) => sensor,
            None => state
                .sensors
                .entry(key.clone())
                .or_insert_with(|| Sensor::new(now)),
        };
        sensor.record(amount, now, &self.cfg);
        let (rate, window_secs) = sensor.measure(now, &self.cfg);
        throttle_time(rate, quota, window_secs, key.kind, self.cfg.window)
    }

    /// Live sensors, for metrics.
    pub fn len(&self) -> usize {
        self.state.lock().sensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kafka's `QuotaUtils.throttleTime`: how long the client must stay quiet for the measured
/// rate to fall back to the quota, rounded to whole milliseconds as Kafka reports it.
fn throttle_time(
    rate: f64,
    quota: f64,
    window_secs: f64,
    kind: QuotaKind,
    window: Duration,
) -> Duration {
    if quota.is_nan() || quota <= 0.0 || rate <= quota {
        return Duration::ZERO;
    }
    // `as` saturates: NaN becomes 0 and huge values u64::MAX.
    let millis = ((rate - quota) / quota * window_secs * 1000.0).round() as u64;
    let throttle = Duration::from_millis(millis);
    if kind == QuotaKind::Request {
        throttle.min(window)
    } else {
        throttle
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn dflt() -> Option<EntityName> {
        Some(EntityName::Default)
    }

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    fn set(configs: &mut QuotaConfigs, e: QuotaEntity, key: &str, value: f64) {
        configs.entry(e).or_default().insert(key.to_owned(), value);
    }

    fn sensor(kind: QuotaKind, user: &str, client_id: &str) -> SensorKey {
        SensorKey {
            kind,
            user: user.to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    #[test]
    fn precedence_follows_kafkas_eight_levels() {
        let levels = [
            (entity(named("alice"), named("app")), "alice", "app"),
            (entity(named("alice"), dflt()), "alice", "app"),
            (entity(named("alice"), None), "alice", ""),
            (entity(dflt(), named("app")), "alice", "app"),
            (entity(dflt(), dflt()), "alice", "app"),
            (entity(dflt(), None), "alice", ""),
            (entity(None, named("app")), "", "app"),
            (entity(None, dflt()), "", "app"),
        ];
        let mut configs = QuotaConfigs::new();
        for (i, (e, _, _)) in levels.iter().enumerate() {
            set(
                &mut configs,
                e.clone(),
                PRODUCER_BYTE_RATE,
                (i + 1) as f64 * 100.0,
            );
        }
        // Other users never see alice's entries.
        let (key, bound) = resolve(&configs, "bob", "app", QuotaKind::Produce).unwrap();
        assert_eq!(bound, 400.0);
        assert_eq!(key, sensor(QuotaKind::Produce, "bob", "app"));

        for (i, (e, user, client)) in levels.iter().enumerate() {
            let (key, bound) = resolve(&configs, "alice", "app", QuotaKind::Produce)
                .expect("a configured level should apply");
            assert_eq!(bound, (i + 1) as f64 * 100.0, "level {}", i + 1);
            assert_eq!(
                key,
                sensor(QuotaKind::Produce, user, client),
                "level {}",
                i + 1
            );
            configs.remove(e);
        }
        assert!(resolve(&configs, "alice", "app", QuotaKind::Produce).is_none());
    }

    #[test]
    fn quota_kinds_are_resolved_independently() {
        let mut configs = QuotaConfigs::new();
        set(
            &mut configs,
            entity(named("alice"), None),
            CONSUMER_BYTE_RATE,
            1000.0,
        );
        set(&mut configs, entity(None, dflt()), PRODUCER_BYTE_RATE, 50.0);
        assert_eq!(
            resolve(&configs, "alice", "app", QuotaKind::Fetch),
            Some((sensor(QuotaKind::Fetch, "alice", ""), 1000.0))
        );
        assert_eq!(
            resolve(&configs, "alice", "app", QuotaKind::Produce),
            Some((sensor(QuotaKind::Produce, "", "app"), 50.0))
        );
        assert!(resolve(&configs, "alice", "app", QuotaKind::Request).is_none());
    }

    #[test]
    fn sensors_are_shared_per_resolved_entity() {
        let mut configs = QuotaConfigs::new();
        set(
            &mut configs,
            entity(named("alice"), None),
            PRODUCER_BYTE_RATE,
            1000.0,
        );
        set(
            &mut configs,
            entity(dflt(), None),
            PRODUCER_BYTE_RATE,
            500.0,
        );

        // Two clients of one user share the user's sensor.
        let a1 = resolve(&configs, "alice", "app1", QuotaKind::Produce).unwrap();
        let a2 = resolve(&configs, "alice", "app2", QuotaKind::Produce).unwrap();
        assert_eq!(a1, a2);
        assert_eq!(a1, (sensor(QuotaKind::Produce, "alice", ""), 1000.0));

        // The default user quota gives each user a sensor of its own.
        let b = resolve(&configs, "bob", "app1", QuotaKind::Produce).unwrap();
        let c = resolve(&configs, "carol", "app1", QuotaKind::Produce).unwrap();
        assert_eq!(b, (sensor(QuotaKind::Produce, "bob", ""), 500.0));
        assert_eq!(c, (sensor(QuotaKind::Produce, "carol", ""), 500.0));

        // Client-id quotas are shared by every user with that client id.
        let mut configs = QuotaConfigs::new();
        set(
            &mut configs,
            entity(None, named("app")),
            PRODUCER_BYTE_RATE,
            10.0,
        );
        let b = resolve(&configs, "bob", "app", QuotaKind::Produce).unwrap();
        let c = resolve(&configs, "carol", "app", QuotaKind::Produce).unwrap();
        assert_eq!(b, c);
        assert_eq!(b.0, sensor(QuotaKind::Produce, "", "app"));
    }

    #[test]
    fn anonymous_users_get_user_quotas_by_name() {
        let mut configs = QuotaConfigs::new();
        set(
            &mut configs,
            entity(named("ANONYMOUS"), None),
            REQUEST_PERCENTAGE,
            25.0,
        );
        assert_eq!(
            resolve(&configs, "ANONYMOUS", "cli", QuotaKind::Request),
            Some((sensor(QuotaKind::Request, "ANONYMOUS", ""), 25.0))
        );
    }

    #[test]
    fn empty_client_id_collapses_like_kafka() {
        let mut configs = QuotaConfigs::new();
        set(
            &mut configs,
            entity(named("alice"), dflt()),
            PRODUCER_BYTE_RATE,
            10.0,
        );
        assert!(resolve(&configs, "alice", "", QuotaKind::Produce).is_none());
        set(
            &mut configs,
            entity(named("alice"), None),
            PRODUCER_BYTE_RATE,
            20.0,
        );
        assert_eq!(
            resolve(&configs, "alice", "", QuotaKind::Produce),
            Some((sensor(QuotaKind::Produce, "alice", ""), 20.0))
        );
    }

    #[test]
    fn validate_checks_key_and_value() {
        assert_eq!(validate(PRODUCER_BYTE_RATE, 1024.0), Ok(()));
        assert_eq!(validate(CONSUMER_BYTE_RATE, 1.0), Ok(()));
        assert_eq!(validate(REQUEST_PERCENTAGE, 12.5), Ok(()));
        assert!(validate("bogus", 1.0).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(validate(PRODUCER_BYTE_RATE, bad).is_err(), "{bad}");
            assert!(validate(REQUEST_PERCENTAGE, bad).is_err(), "{bad}");
        }
        assert!(validate(PRODUCER_BYTE_RATE, 1.5).is_err());
        assert_eq!(
            QUOTA_KEYS.map(|k| QuotaKind::from_key(k).map(QuotaKind::key)),
            QUOTA_KEYS.map(Some)
        );
    }

    #[test]
    fn request_amount_is_percent_of_a_thread() {
        assert!((request_time_amount(Duration::from_millis(10)) - 1.0).abs() < 1e-9);
        assert!((request_time_amount(Duration::from_secs(1)) - 100.0).abs() < 1e-9);
    }

    fn meter() -> QuotaMeter {
        QuotaMeter::new(11, Duration::from_secs(1))
    }

    #[test]
    fn within_quota_is_never_throttled() {
        let m = meter();
        let key = sensor(QuotaKind::Produce, "alice", "");
        let t0 = Instant::now();
        for i in 0..40 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(
                m.record(&key, 5.0, 100.0, now),
                Duration::ZERO,
                "record {i}"
            );
        }
        let key = sensor(QuotaKind::Fetch, "alice", "");
        for i in 0..40 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(
                m.record(&key, 50.0, 100.0, now),
                Duration::ZERO,
                "record {i}"
            );
        }
    }

    #[test]
    fn sustained_double_rate_throttles_about_one_full_window() {
        let m = meter();
        let key = sensor(QuotaKind::Produce, "alice", "app");
        let t0 = Instant::now();
        let mut throttle = Duration::ZERO;
        let mut last = t0;
        // 20 bytes every 100 ms = 200 B/s, twice the quota, for the whole 11 s window span.
        for i in 0..110 {
            last = t0 + Duration::from_millis(100 * i);
            throttle = m.record(&key, 20.0, 100.0, last);
        }
        // Rate ~= 2x quota, so the client must pause for about the measured span (~11 s).
        assert!(throttle > Duration::from_millis(10_500), "{throttle:?}");
        assert!(throttle < Duration::from_millis(11_500), "{throttle:?}");
        // Having waited that long, the client is within quota again.
        assert_eq!(m.record(&key, 0.0, 100.0, last + throttle), Duration::ZERO);
    }

    #[test]
    fn first_burst_is_averaged_over_the_window() {
        let m = meter();
        let t0 = Instant::now();
        // 2000 bytes over a minimum span of 10 windows = 200 B/s against 100 B/s.
        let produce = sensor(QuotaKind::Produce, "alice", "");
        assert_eq!(
            m.record(&produce, 2000.0, 100.0, t0),
            Duration::from_secs(10)
        );
        // Request throttles are capped at one window.
        let request = sensor(QuotaKind::Request, "alice", "");
        assert_eq!(
            m.record(&request, 2000.0, 100.0, t0),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn one_sensor_accumulates_across_callers() {
        let m = meter();
        let t0 = Instant::now();
        let shared = sensor(QuotaKind::Produce, "alice", "");
        let other = sensor(QuotaKind::Produce, "bob", "");
        // 600 bytes over the 10 s minimum span = 60 B/s: within 100 B/s.
        assert_eq!(m.record(&shared, 600.0, 100.0, t0), Duration::ZERO);
        assert_eq!(m.record(&other, 600.0, 100.0, t0), Duration::ZERO);
        // A second 600 on the same sensor makes 120 B/s: 20% over for a 10 s span.
        assert_eq!(m.record(&shared, 600.0, 100.0, t0), Duration::from_secs(2));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn idle_sensors_are_dropped() {
        let m = meter();
        assert!(m.is_empty());
        let t0 = Instant::now();
        let a = sensor(QuotaKind::Produce, "alice", "");
        let b = sensor(QuotaKind::Produce, "bob", "");
        m.record(&a, 1.0, 100.0, t0);
        m.record(&b, 1.0, 100.0, t0 + Duration::from_secs(1800));
        assert_eq!(m.len(), 2);
        m.record(&b, 1.0, 100.0, t0 + Duration::from_secs(2 * 3600));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn non_positive_quota_never_throttles() {
        let m = meter();
        let key = sensor(QuotaKind::Produce, "alice", "");
        assert_eq!(m.record(&key, 1e9, 0.0, Instant::now()), Duration::ZERO);
    }
}
