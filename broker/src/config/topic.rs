//! Resolving effective settings through Kafka's layers: topic override, dynamic per-broker,
//! dynamic cluster-wide default, static broker config, built-in default.

use std::collections::BTreeMap;

use super::broker::{Origin, StaticConfig};
use super::defs::{self, TOPIC_CONFIGS};
use crate::log::LogConfig;
use crate::log::config::{Compression, TimestampType};

/// Kafka's `ConfigSource` codes in DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Topic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// One candidate value of a setting and where it comes from (DescribeConfigs synonyms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// The configuration layers visible to one broker.
#[derive(Debug, Clone, Copy)]
pub struct ConfigLayers<'a> {
    pub statics: &'a StaticConfig,
    /// Dynamic cluster-wide broker defaults (AlterConfigs on broker resource "").
    pub cluster: &'a BTreeMap<String, String>,
    /// Dynamic settings of this broker (AlterConfigs on broker resource "<id>").
    pub broker: Option<&'a BTreeMap<String, String>>,
}

const HOUR_MS: i64 = 3_600_000;

impl ConfigLayers<'_> {
    /// Every layer holding a value for broker setting `name`, most specific first; the
    /// first is the effective value.
    pub fn broker_synonyms(&self, name: &str) -> Vec<Synonym> {
        let mut out = Vec::new();
        if let Some(v) = self.broker.and_then(|b| b.get(name)) {
            out.push(Synonym {
                name: name.into(),
                value: Some(v.clone()),
                source: ConfigSource::DynamicBroker,
            });
        }
        if let Some(v) = self.cluster.get(name) {
            out.push(Synonym {
                name: name.into(),
                value: Some(v.clone()),
                source: ConfigSource::DynamicDefaultBroker,
            });
        }
        let (value, origin) = self.statics.get(name);
        if origin == Origin::Static {
            out.push(Synonym {
                name: name.into(),
                value,
                source: ConfigSource::StaticBroker,
            });
        } else if value.is_some() || out.is_empty() {
            out.push(Synonym {
                name: name.into(),
                value,
                source: ConfigSource::Default,
            });
        }
        out
    }

    /// Effective value of a broker setting, after Kafka's unit fallbacks
    /// (`log.retention.ms` -> `.minutes` -> `.hours`, `log.roll.ms` -> `.hours`, ...).
    pub fn broker_value(&self, name: &str) -> (Option<String>, ConfigSource) {
        let first = self.broker_synonyms(name).into_iter().next();
        if let Some(Synonym {
            value: Some(v),
            source,
            ..
        }) = first
        {
            return (Some(v), source);
        }
        let scaled = |n: &str, factor: i64| {
            let (v, s) = self.broker_value(n);
            let v = v
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|x| (x.saturating_mul(factor)).to_string());
            (v, s)
        };
        match name {
            "log.retention.ms" => {
                let (m, s) = scaled("log.retention.minutes", 60_000);
                if m.is_some() {
                    return (m, s);
                }
                scaled("log.retention.hours", HOUR_MS)
            }
            "log.roll.ms" => scaled("log.roll.hours", HOUR_MS),
            "log.roll.jitter.ms" => scaled("log.roll.jitter.hours", HOUR_MS),
            "log.flush.interval.ms" => (Some(i64::MAX.to_string()), ConfigSource::Default),
            _ => (None, ConfigSource::Default),
        }
    }

    /// Effective value of a topic setting given the topic's overrides.
    pub fn topic_value(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
    ) -> (Option<String>, ConfigSource) {
        if let Some(v) = overrides.get(name) {
            return (Some(v.clone()), ConfigSource::Topic);
        }
        match defs::topic_def(name) {
            Some(t) => self.broker_value(t.broker_synonym),
            None => (None, ConfigSource::Default),
        }
    }

    /// Builds the settings a partition log runs with.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let d = LogConfig::default();
        let get = |name: &str| self.topic_value(overrides, name).0;
        let long = |name: &str, fallback: i64| {
            get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let policy_value = get("cleanup.policy").unwrap_or_else(|| "delete".into());
        let policy: Vec<&str> = policy_value.split(',').map(str::trim).collect();
        LogConfig {
            segment_bytes: long("segment.bytes", d.segment_bytes as i64).max(1) as u64,
            segment_ms: long("segment.ms", d.segment_ms),
            segment_jitter_ms: long("segment.jitter.ms", d.segment_jitter_ms),
            segment_index_bytes: long("segment.index.bytes", d.segment_index_bytes as i64).max(8)
                as u64,
            index_interval_bytes: long("index.interval.bytes", d.index_interval_bytes as i64).max(0)
                as u64,
            retention_ms: long("retention.ms", d.retention_ms),
            retention_bytes: long("retention.bytes", d.retention_bytes),
            max_message_bytes: long("max.message.bytes", d.max_message_bytes as i64).max(0)
                as usize,
            flush_messages: long("flush.messages", d.flush_messages),
            flush_ms: long("flush.ms", d.flush_ms),
            timestamp_type: match get("message.timestamp.type").as_deref() {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            timestamp_before_max_ms: long(
                "message.timestamp.before.max.ms",
                d.timestamp_before_max_ms,
            ),
            timestamp_after_max_ms: long(
                "message.timestamp.after.max.ms",
                d.timestamp_after_max_ms,
            ),
            min_insync_replicas: long("min.insync.replicas", i64::from(d.min_insync_replicas))
                as i32,
            compression: match get("compression.type").as_deref() {
                Some("uncompressed") => Compression::Uncompressed,
                Some("gzip") => Compression::Gzip,
                Some("snappy") => Compression::Snappy,
                Some("lz4") => Compression::Lz4,
                Some("zstd") => Compression::Zstd,
                _ => Compression::Producer,
            },
            compact: policy.contains(&"compact"),
            delete: policy.contains(&"delete"),
            delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(d.min_cleanable_dirty_ratio),
            min_compaction_lag_ms: long("min.compaction.lag.ms", d.min_compaction_lag_ms),
            max_compaction_lag_ms: long("max.compaction.lag.ms", d.max_compaction_lag_ms),
            remote_storage: self.statics.remote_storage_system_enabled()
                && get("remote.storage.enable")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
                && !policy.contains(&"compact"),
            local_retention_ms: match long("local.retention.ms", -2) {
                -2 => long("retention.ms", d.retention_ms),
                v => v,
            },
            local_retention_bytes: match long("local.retention.bytes", -2) {
                -2 => long("retention.bytes", d.retention_bytes),
                v => v,
            },
        }
    }
}

/// Validates topic overrides as given by a client; the error text is sent back with
/// INVALID_CONFIG.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        let Some(t) = defs::topic_def(name) else {
            return Err(format!("Unknown topic config name: {name}"));
        };
        defs::validate(&t.def, value)?;
    }
    let long = |name: &str| configs.get(name).and_then(|v| v.trim().parse::<i64>().ok());
    let remote = configs
        .get("remote.storage.enable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if remote
        && configs
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"))
    {
        return Err(
            "remote.storage.enable=true is not supported with cleanup.policy=compact".into(),
        );
    }
    for (local, total) in [
        ("local.retention.ms", "retention.ms"),
        ("local.retention.bytes", "retention.bytes"),
    ] {
        if let (Some(l), Some(t)) = (long(local), long(total))
            && l >= 0
            && t >= 0
            && l > t
        {
            return Err(format!(
                "{local}={l} must not exceed {total}={t}: local data is a subset of the log"
            ));
        }
    }
    Ok(())
}

/// Names of all topic settings, for DescribeConfigs without a key filter.
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|t| t.def.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::broker::{BrokerConfig, ConfigSources};

    fn statics(overrides: &[(&str, &str)]) -> StaticConfig {
        BrokerConfig::load(&ConfigSources {
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .unwrap()
        .statics
    }

    #[test]
    fn layers_resolve_in_kafka_order() {
        let s = statics(&[
            ("log.retention.hours", "24"),
            ("log.segment.bytes", "2097152"),
        ]);
        let mut cluster = BTreeMap::new();
        let mut broker = BTreeMap::new();
        let layers = ConfigLayers {
            statics: &s,
            cluster: &cluster,
            broker: Some(&broker),
        };
        let none = BTreeMap::new();
        assert_eq!(
            layers.topic_value(&none, "retention.ms"),
            (Some((24 * HOUR_MS).to_string()), ConfigSource::StaticBroker)
        );
        assert_eq!(
            layers.topic_value(&none, "segment.ms"),
            (Some((168 * HOUR_MS).to_string()), ConfigSource::Default)
        );
        cluster.insert("log.retention.ms".to_string(), "1000".to_string());
        broker.insert("log.segment.bytes".to_string(), "3145728".to_string());
        let layers = ConfigLayers {
            statics: &s,
            cluster: &cluster,
            broker: Some(&broker),
        };
        assert_eq!(
            layers.topic_value(&none, "retention.ms"),
            (Some("1000".into()), ConfigSource::DynamicDefaultBroker)
        );
        let cfg = layers.log_config(&none);
        assert_eq!(cfg.segment_bytes, 3_145_728);
        assert_eq!(cfg.retention_ms, 1000);
        assert_eq!(cfg.flush_ms, i64::MAX);
        let mut topic = BTreeMap::new();
        topic.insert("retention.ms".to_string(), "5".to_string());
        topic.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let cfg = layers.log_config(&topic);
        assert_eq!(cfg.retention_ms, 5);
        assert_eq!(cfg.timestamp_type, TimestampType::LogAppendTime);
        let syn = layers.broker_synonyms("log.segment.bytes");
        assert_eq!(
            syn.iter().map(|s| s.source).collect::<Vec<_>>(),
            vec![ConfigSource::DynamicBroker, ConfigSource::StaticBroker]
        );
    }

    #[test]
    fn topic_config_validation() {
        let mut c = BTreeMap::new();
        c.insert("retention.ms".to_string(), "100".to_string());
        assert!(validate_topic_configs(&c).is_ok());
        c.insert("no.such.thing".to_string(), "1".to_string());
        assert!(
            validate_topic_configs(&c)
                .unwrap_err()
                .contains("no.such.thing")
        );
    }
}
