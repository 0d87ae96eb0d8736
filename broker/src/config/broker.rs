//! Static broker configuration: built-in defaults, overridden by a properties file, then
//! `SLUICE_*` environment variables, then `--override key=value`, then dedicated flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::defs::{self, BROKER_ALIASES, ConfigDef};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not a valid properties file: {reason}")]
    Parse { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    Static,
}

/// Settings explicitly given at startup, by canonical name.
#[derive(Debug, Clone, Default)]
pub struct StaticConfig {
    values: BTreeMap<String, String>,
}

impl StaticConfig {
    /// The effective value: explicitly set, else the built-in default (`None` = null).
    pub fn get(&self, name: &str) -> (Option<String>, Origin) {
        match self.values.get(name) {
            Some(v) => (Some(v.clone()), Origin::Static),
            None => (
                defs::broker_def(name).and_then(|d| d.default.map(str::to_string)),
                Origin::Default,
            ),
        }
    }

    pub fn explicit(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    pub(crate) fn str(&self, name: &str) -> Option<String> {
        self.get(name).0
    }

    pub(crate) fn int<T: std::str::FromStr>(&self, name: &str) -> Result<T, ConfigError> {
        let raw = self.str(name).unwrap_or_default();
        raw.trim()
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("{name}={raw} is not a valid number")))
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.str(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    pub fn remote_storage_system_enabled(&self) -> bool {
        self.bool("remote.log.storage.system.enable")
    }
}

/// One `NAME://host:port` entry of `listeners` / `advertised.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::Invalid(format!("listener '{s}': {why}"));
        let (name, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected NAME://host:port"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("invalid listener name"));
        }
        Ok(Self {
            name: name.to_ascii_uppercase(),
            host: host.to_string(),
            port,
        })
    }

    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn parse_listeners(raw: &str) -> Result<Vec<Listener>, ConfigError> {
    let listeners: Vec<Listener> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Listener::parse)
        .collect::<Result<_, _>>()?;
    let mut names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != listeners.len() {
        return Err(ConfigError::Invalid(format!(
            "listener names must be unique: {raw}"
        )));
    }
    Ok(listeners)
}

/// The machine's hostname, advertised for wildcard listeners (as Kafka does).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Typed view of the static settings the broker process itself needs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dirs: Vec<PathBuf>,
    pub http_listener: SocketAddr,
    pub internal_listener: SocketAddr,
    pub rack: Option<String>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub max_broker_partitions: usize,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    pub fetch_max_bytes: usize,
    pub connections_max_idle_ms: u64,
    pub max_connections: usize,
    pub shutdown_timeout_ms: u64,
    pub log_retention_check_interval_ms: u64,
    pub log_flush_scheduler_interval_ms: u64,
    pub log_flush_offset_checkpoint_interval_ms: u64,
    pub num_recovery_threads_per_data_dir: usize,
    pub groups: GroupSettings,
    pub cleaner: CleanerSettings,
    pub producer_id_expiration_ms: i64,
    pub remote: RemoteSettings,
    pub quorum: QuorumSettings,
    pub replication: ReplicationSettings,
    pub security: super::security::SecurityConfig,
    pub statics: StaticConfig,
    /// Problems worth a log line but not a refusal to start (unknown keys).
    pub warnings: Vec<String>,
}

/// Group coordinator and `__consumer_offsets` settings (`group.*`, `offsets.*`).
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub initial_rebalance_delay_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: i64,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offset_metadata_max_bytes: usize,
    pub offsets_commit_timeout_ms: u64,
}

/// Log cleaner settings (`log.cleaner.*` that are not topic defaults).
#[derive(Debug, Clone)]
pub struct CleanerSettings {
    pub enable: bool,
    pub backoff_ms: u64,
    pub dedupe_buffer_size: u64,
    pub io_max_bytes_per_second: u64,
}

/// The metadata quorum and broker liveness.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    /// `cluster.id` as configured; `None` lets a lone broker generate one.
    pub cluster_id: Option<String>,
    /// `(node id, internal gRPC address)`; empty means this broker alone votes.
    pub voters: Vec<(i32, String)>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_interval_entries: u64,
    pub controlled_shutdown: bool,
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval_ms: u64,
}

/// Follower fetching and ISR maintenance (`replica.*`).
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// Listener name followers connect to on the leader.
    pub inter_broker_listener: String,
    pub lag_time_max_ms: i64,
    pub fetch_max_bytes: i32,
    pub fetch_response_max_bytes: i32,
    pub fetch_wait_max_ms: i32,
    pub fetch_backoff_ms: u64,
}

/// `id@host:port,...` of `controller.quorum.voters`.
pub fn parse_voters(raw: &str) -> Result<Vec<(i32, String)>, ConfigError> {
    let mut voters = Vec::new();
    for v in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let bad = || {
            ConfigError::Invalid(format!(
                "controller.quorum.voters entry '{v}' is not id@host:port"
            ))
        };
        let (id, addr) = v.split_once('@').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
        if id < 0 || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if voters.iter().any(|(i, _)| *i == id) {
            return Err(ConfigError::Invalid(format!(
                "controller.quorum.voters names node {id} twice"
            )));
        }
        voters.push((id, addr.trim().to_string()));
    }
    Ok(voters)
}

/// The StatefulSet ordinal at the end of a hostname: `sluice-kafka-2` → 2.
pub fn ordinal_of(hostname: &str) -> Option<i32> {
    let host = hostname.split('.').next().unwrap_or(hostname);
    let (_, tail) = host.rsplit_once('-')?;
    tail.parse().ok().filter(|n: &i32| *n >= 0)
}

/// Tiered storage settings (`remote.log.*`).
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub enable: bool,
    pub url: String,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: bool,
    pub s3_credentials_file: Option<PathBuf>,
    pub upload_part_size: usize,
    pub task_interval_ms: u64,
    pub copier_threads: usize,
    pub copy_max_bytes_per_second: u64,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub reader_threads: usize,
    pub fetch_max_wait_ms: u64,
    pub chunk_size: u64,
    pub readahead_chunks: u64,
    pub cache_size_bytes: u64,
    pub index_cache_size_bytes: u64,
}

/// Inputs to [`BrokerConfig::load`], in increasing precedence.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// Properties files, later ones overriding earlier ones.
    pub files: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    pub overrides: Vec<(String, String)>,
}

/// `SLUICE_LOG_RETENTION_MS` for `log.retention.ms`.
pub fn env_name(config_name: &str) -> String {
    format!(
        "SLUICE_{}",
        config_name.replace('.', "_").to_ascii_uppercase()
    )
}

fn canonical(name: &str) -> &str {
    BROKER_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, c)| *c)
        .unwrap_or(name)
}

impl BrokerConfig {
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        let mut warnings = Vec::new();
        let mut set = |name: &str, value: String, from: &str, warnings: &mut Vec<String>| {
            let name = canonical(name.trim());
            match super::security::per_listener_def(name).or_else(|| defs::broker_def(name)) {
                Some(def) => {
                    defs::validate(def, &value)
                        .map_err(|e| ConfigError::Invalid(format!("{e} (from {from})")))?;
                    values.insert(name.to_string(), value.trim().to_string());
                }
                None => warnings.push(format!("ignoring unknown setting '{name}' from {from}")),
            }
            Ok::<(), ConfigError>(())
        };
        for path in &sources.files {
            let file = std::fs::File::open(path).map_err(|source| ConfigError::File {
                path: path.display().to_string(),
                source,
            })?;
            let props = java_properties::read(std::io::BufReader::new(file)).map_err(|e| {
                ConfigError::Parse {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
            let from = format!("config file {}", path.display());
            for (k, v) in props {
                set(&k, v, &from, &mut warnings)?;
            }
        }
        for (k, v) in &sources.env {
            let known = defs::BROKER_CONFIGS
                .iter()
                .map(|d| d.name)
                .chain(BROKER_ALIASES.iter().map(|(a, _)| *a))
                .find(|n| env_name(n) == *k);
            if let Some(name) = known {
                set(
                    name,
                    v.clone(),
                    &format!("environment variable {k}"),
                    &mut warnings,
                )?;
            }
        }
        for (k, v) in &sources.overrides {
            set(k, v.clone(), "--override", &mut warnings)?;
        }
        let statics = StaticConfig { values };
        Self::from_statics(statics, warnings)
    }

    fn from_statics(statics: StaticConfig, warnings: Vec<String>) -> Result<Self, ConfigError> {
        let listeners = parse_listeners(&statics.str("listeners").unwrap_or_default())?;
        if listeners.is_empty() {
            return Err(ConfigError::Invalid(
                "listeners must name at least one listener".into(),
            ));
        }
        let security = super::security::SecurityConfig::from_statics(&statics, &listeners)?;
        let advertised_listeners = match statics.str("advertised.listeners") {
            Some(raw) if !raw.trim().is_empty() => {
                let adv = parse_listeners(&raw)?;
                for a in &adv {
                    if !listeners.iter().any(|l| l.name == a.name) {
                        return Err(ConfigError::Invalid(format!(
                            "advertised listener {} has no matching entry in listeners",
                            a.name
                        )));
                    }
                }
                adv
            }
            _ => listeners
                .iter()
                .map(|l| Listener {
                    name: l.name.clone(),
                    host: if l.host.is_empty() || l.host == "0.0.0.0" || l.host == "::" {
                        hostname()
                    } else {
                        l.host.clone()
                    },
                    port: l.port,
                })
                .collect(),
        };
        let log_dirs: Vec<PathBuf> = statics
            .str("log.dirs")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(ConfigError::Invalid(
                "log.dirs must name at least one directory".into(),
            ));
        }
        let socket_addr = |name: &str| -> Result<SocketAddr, ConfigError> {
            let raw = statics.str(name).unwrap_or_default();
            raw.parse().map_err(|_| {
                ConfigError::Invalid(format!("{name}={raw} is not an ip:port address"))
            })
        };
        let http_listener = socket_addr("http.listener")?;
        let internal_listener = socket_addr("internal.listener")?;
        let node_id = if statics.explicit().contains_key("node.id") {
            statics.int("node.id")?
        } else {
            ordinal_of(&hostname()).unwrap_or(0)
        };
        let voters = parse_voters(&statics.str("controller.quorum.voters").unwrap_or_default())?;
        let cluster_id = statics.str("cluster.id").filter(|c| !c.trim().is_empty());
        if cluster_id.is_none() && voters.iter().any(|(id, _)| *id != node_id) {
            return Err(ConfigError::Invalid(
                "cluster.id is required when controller.quorum.voters names other brokers".into(),
            ));
        }
        let inter_broker_listener = match statics.str("inter.broker.listener.name") {
            Some(n) if !n.trim().is_empty() => {
                let n = n.trim().to_ascii_uppercase();
                if !listeners.iter().any(|l| l.name == n) {
                    return Err(ConfigError::Invalid(format!(
                        "inter.broker.listener.name {n} is not one of listeners"
                    )));
                }
                n
            }
            _ => listeners[0].name.clone(),
        };
        if security
            .listener(&inter_broker_listener)
            .is_some_and(|l| l.protocol.sasl())
        {
            return Err(ConfigError::Invalid(format!(
                "inter.broker.listener.name {inter_broker_listener} uses SASL, which brokers do not \
                 speak to each other yet: use a PLAINTEXT listener on a private network or an SSL \
                 listener with client certificates (and the brokers' certificate subjects in super.users)"
            )));
        }
        Ok(Self {
            node_id,
            quorum: QuorumSettings {
                cluster_id,
                voters,
                heartbeat_interval_ms: statics.int("broker.heartbeat.interval.ms")?,
                session_timeout_ms: statics.int("broker.session.timeout.ms")?,
                election_timeout_ms: statics.int("metadata.election.timeout.ms")?,
                snapshot_interval_entries: statics.int("metadata.log.snapshot.interval.entries")?,
                controlled_shutdown: statics.bool("controlled.shutdown.enable"),
                auto_leader_rebalance: statics.bool("auto.leader.rebalance.enable"),
                leader_imbalance_check_interval_ms: statics
                    .int::<u64>("leader.imbalance.check.interval.seconds")?
                    .saturating_mul(1000),
            },
            replication: ReplicationSettings {
                inter_broker_listener,
                lag_time_max_ms: statics.int("replica.lag.time.max.ms")?,
                fetch_max_bytes: statics.int("replica.fetch.max.bytes")?,
                fetch_response_max_bytes: statics.int("replica.fetch.response.max.bytes")?,
                fetch_wait_max_ms: statics.int("replica.fetch.wait.max.ms")?,
                fetch_backoff_ms: statics.int("replica.fetch.backoff.ms")?,
            },
            listeners,
            advertised_listeners,
            log_dirs,
            http_listener,
            internal_listener,
            rack: statics.str("broker.rack").filter(|r| !r.is_empty()),
            num_partitions: statics.int("num.partitions")?,
            default_replication_factor: statics.int("default.replication.factor")?,
            max_broker_partitions: statics.int("max.broker.partitions")?,
            auto_create_topics_enable: statics.bool("auto.create.topics.enable"),
            delete_topic_enable: statics.bool("delete.topic.enable"),
            socket_request_max_bytes: statics.int("socket.request.max.bytes")?,
            fetch_max_bytes: statics.int("fetch.max.bytes")?,
            connections_max_idle_ms: statics.int("connections.max.idle.ms")?,
            max_connections: statics.int("max.connections")?,
            shutdown_timeout_ms: statics.int("shutdown.timeout.ms")?,
            log_retention_check_interval_ms: statics.int("log.retention.check.interval.ms")?,
            log_flush_scheduler_interval_ms: statics.int("log.flush.scheduler.interval.ms")?,
            log_flush_offset_checkpoint_interval_ms: statics
                .int("log.flush.offset.checkpoint.interval.ms")?,
            num_recovery_threads_per_data_dir: statics.int("num.recovery.threads.per.data.dir")?,
            groups: GroupSettings {
                initial_rebalance_delay_ms: statics.int("group.initial.rebalance.delay.ms")?,
                min_session_timeout_ms: statics.int("group.min.session.timeout.ms")?,
                max_session_timeout_ms: statics.int("group.max.session.timeout.ms")?,
                max_size: statics.int("group.max.size")?,
                offsets_topic_num_partitions: statics.int("offsets.topic.num.partitions")?,
                offsets_topic_replication_factor: statics
                    .int("offsets.topic.replication.factor")?,
                offsets_topic_segment_bytes: statics.int("offsets.topic.segment.bytes")?,
                offsets_retention_ms: statics
                    .int::<i64>("offsets.retention.minutes")?
                    .saturating_mul(60_000),
                offsets_retention_check_interval_ms: statics
                    .int("offsets.retention.check.interval.ms")?,
                offset_metadata_max_bytes: statics.int("offset.metadata.max.bytes")?,
                offsets_commit_timeout_ms: statics.int("offsets.commit.timeout.ms")?,
            },
            cleaner: CleanerSettings {
                enable: statics.bool("log.cleaner.enable"),
                backoff_ms: statics.int("log.cleaner.backoff.ms")?,
                dedupe_buffer_size: statics.int("log.cleaner.dedupe.buffer.size")?,
                io_max_bytes_per_second: statics.int("log.cleaner.io.max.bytes.per.second")?,
            },
            producer_id_expiration_ms: statics.int("producer.id.expiration.ms")?,
            remote: RemoteSettings {
                enable: statics.bool("remote.log.storage.system.enable"),
                url: statics.str("remote.log.storage.url").unwrap_or_default(),
                s3_endpoint: statics
                    .str("remote.log.storage.s3.endpoint")
                    .filter(|v| !v.trim().is_empty()),
                s3_region: statics
                    .str("remote.log.storage.s3.region")
                    .filter(|v| !v.trim().is_empty()),
                s3_path_style: statics.bool("remote.log.storage.s3.path.style.access"),
                s3_credentials_file: statics
                    .str("remote.log.storage.s3.credentials.file")
                    .filter(|v| !v.trim().is_empty())
                    .map(PathBuf::from),
                upload_part_size: statics.int("remote.log.storage.upload.part.size.bytes")?,
                task_interval_ms: statics.int("remote.log.manager.task.interval.ms")?,
                copier_threads: statics.int("remote.log.manager.copier.thread.pool.size")?,
                copy_max_bytes_per_second: statics
                    .int("remote.log.manager.copy.max.bytes.per.second")?,
                retry_backoff_ms: statics.int("remote.log.manager.task.retry.backoff.ms")?,
                retry_backoff_max_ms: statics
                    .int("remote.log.manager.task.retry.backoff.max.ms")?,
                reader_threads: statics.int("remote.log.reader.threads")?,
                fetch_max_wait_ms: statics.int("remote.fetch.max.wait.ms")?,
                chunk_size: statics.int("remote.log.reader.chunk.size.bytes")?,
                readahead_chunks: statics.int("remote.log.reader.readahead.chunks")?,
                cache_size_bytes: statics.int("remote.log.reader.cache.size.bytes")?,
                index_cache_size_bytes: statics
                    .int("remote.log.index.file.cache.total.size.bytes")?,
            },
            security,
            statics,
            warnings,
        })
    }

    /// Sets a value after load (tests, and the broker for ephemeral ports).
    pub fn with(mut self, name: &str, value: &str) -> Result<Self, ConfigError> {
        let def: &ConfigDef = defs::broker_def(name)
            .ok_or_else(|| ConfigError::Invalid(format!("unknown setting {name}")))?;
        defs::validate(def, value).map_err(ConfigError::Invalid)?;
        self.statics
            .values
            .insert(name.to_string(), value.to_string());
        let warnings = std::mem::take(&mut self.warnings);
        Self::from_statics(self.statics, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_file_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(
            &file,
            "# comment\nbroker.id=7\nnum.partitions=3\nlog.retention.hours=24\nbogus.key=1\nbroker.rack=r0\n",
        )
        .unwrap();
        // A later file overrides an earlier one (the operator's rack file after the ConfigMap).
        let rack = dir.path().join("rack.properties");
        std::fs::write(&rack, "broker.rack=eu-west-1a\n").unwrap();
        let cfg = BrokerConfig::load(&ConfigSources {
            files: vec![file, rack],
            env: vec![
                ("SLUICE_NUM_PARTITIONS".into(), "4".into()),
                ("SLUICE_UNRELATED".into(), "x".into()),
            ],
            overrides: vec![("listeners".into(), "PLAINTEXT://127.0.0.1:0".into())],
        })
        .unwrap();
        assert_eq!(cfg.node_id, 7);
        assert_eq!(cfg.rack.as_deref(), Some("eu-west-1a"));
        assert_eq!(cfg.num_partitions, 4);
        assert_eq!(cfg.listeners[0].port, 0);
        assert_eq!(cfg.advertised_listeners[0].host, "127.0.0.1");
        assert_eq!(cfg.warnings.len(), 1);
        assert_eq!(
            cfg.statics.get("log.retention.hours"),
            (Some("24".into()), Origin::Static)
        );
        assert_eq!(
            cfg.statics.get("log.segment.bytes"),
            (Some("1073741824".into()), Origin::Default)
        );
    }

    #[test]
    fn rejects_invalid_values_with_source() {
        let err = BrokerConfig::load(&ConfigSources {
            overrides: vec![("num.partitions".into(), "zero".into())],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("num.partitions"), "{err}");
        assert!(err.to_string().contains("--override"), "{err}");
        let err = BrokerConfig::load(&ConfigSources {
            overrides: vec![("listeners".into(), "SSL://:9093".into())],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("ssl.keystore.location"), "{err}");
    }

    #[test]
    fn quorum_settings() {
        assert_eq!(ordinal_of("sluice-kafka-2"), Some(2));
        assert_eq!(ordinal_of("sluice-0.sluice-headless.ns.svc"), Some(0));
        assert_eq!(ordinal_of("laptop"), None);
        assert_eq!(
            parse_voters("0@a:9093, 1@b:9093").unwrap(),
            vec![(0, "a:9093".into()), (1, "b:9093".into())]
        );
        assert!(parse_voters("0@a").is_err());
        assert!(parse_voters("0@a:1,0@b:1").is_err());
        let err = BrokerConfig::load(&ConfigSources {
            overrides: vec![
                ("node.id".into(), "0".into()),
                ("controller.quorum.voters".into(), "0@a:1,1@b:1".into()),
            ],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("cluster.id"), "{err}");
    }

    #[test]
    fn listener_parsing() {
        let l = Listener::parse("PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("::1", 9092));
        assert_eq!(l.bind_addr(), "[::1]:9092");
        assert_eq!(
            Listener::parse("plaintext://:1").unwrap().bind_addr(),
            "0.0.0.0:1"
        );
        assert!(Listener::parse("localhost:9092").is_err());
        assert!(Listener::parse("PLAINTEXT://h:99999").is_err());
    }
}
