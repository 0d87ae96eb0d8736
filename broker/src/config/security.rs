//! Security settings: each listener's protocol, TLS files and SASL mechanisms, and the
//! authorizer and quota settings. Listener settings use Kafka's
//! `listener.name.<name>.<setting>` overrides over the global `ssl.*` / `sasl.*` values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::broker::{ConfigError, Listener, StaticConfig};
use super::defs::{self, ConfigDef};

/// Settings that may be given per listener.
const PER_LISTENER: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
];

/// Prefix of the internal gRPC port's own TLS settings (`internal.listener.ssl.*`).
const INTERNAL_PREFIX: &str = "internal.listener.";

/// The definition of `listener.name.<name>.<setting>` or `internal.listener.<ssl setting>`:
/// that of `<setting>`.
pub fn per_listener_def(name: &str) -> Option<&'static ConfigDef> {
    let setting = match name.strip_prefix("listener.name.") {
        Some(rest) => rest.split_once('.')?.1,
        None => name
            .strip_prefix(INTERNAL_PREFIX)
            .filter(|s| s.starts_with("ssl."))?,
    };
    PER_LISTENER
        .contains(&setting)
        .then(|| defs::broker_def(setting))
        .flatten()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// Where a TLS endpoint's key material lives. Files are re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    /// Same file as `certificate` for a PEM keystore holding both.
    pub key: PathBuf,
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub tls12: bool,
    pub tls13: bool,
    pub principal_rules: String,
    pub verify_hostname: bool,
}

#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<TlsFiles>,
    pub sasl_mechanisms: Vec<String>,
    pub reauth_ms: u64,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Per listener name.
    pub listeners: BTreeMap<String, ListenerSecurity>,
    pub authorizer: bool,
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
    pub quota_window_num: usize,
    pub quota_window_size_ms: u64,
    /// TLS of the internal gRPC port, when `internal.listener.security.protocol=SSL`.
    pub internal_tls: Option<TlsFiles>,
}

impl SecurityConfig {
    pub fn from_statics(
        statics: &StaticConfig,
        listeners: &[Listener],
    ) -> Result<Self, ConfigError> {
        let map = parse_protocol_map(
            &statics
                .str("listener.security.protocol.map")
                .unwrap_or_default(),
        )?;
        let mut out = BTreeMap::new();
        for l in listeners {
            let protocol = match map.get(&l.name) {
                Some(p) => *p,
                None => SecurityProtocol::parse(&l.name).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "listener {} has no entry in listener.security.protocol.map",
                        l.name
                    ))
                })?,
            };
            let get = |key: &str| listener_value(statics, &l.name, key);
            let tls = if protocol.tls() {
                Some(tls_files(&get, &l.name)?)
            } else {
                None
            };
            let sasl_mechanisms: Vec<String> = get("sasl.enabled.mechanisms")
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            if protocol.sasl() && sasl_mechanisms.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "listener {}: sasl.enabled.mechanisms is empty",
                    l.name
                )));
            }
            let reauth_ms = get("connections.max.reauth.ms")
                .unwrap_or_default()
                .trim()
                .parse()
                .unwrap_or(0);
            out.insert(
                l.name.clone(),
                ListenerSecurity {
                    protocol,
                    tls,
                    sasl_mechanisms,
                    reauth_ms,
                },
            );
        }
        let internal_tls = match statics
            .str("internal.listener.security.protocol")
            .as_deref()
        {
            Some("SSL") => {
                let get = |key: &str| {
                    statics
                        .explicit()
                        .get(&format!("{INTERNAL_PREFIX}{key}"))
                        .cloned()
                        .or_else(|| statics.str(key))
                };
                let mut files = tls_files(&get, "internal.listener")?;
                files.client_auth = ClientAuth::Required;
                if files.truststore.is_none() {
                    return Err(ConfigError::Invalid(
                        "internal.listener.security.protocol=SSL needs ssl.truststore.location: \
                         brokers and admin clients authenticate with certificates"
                            .into(),
                    ));
                }
                Some(files)
            }
            _ => None,
        };
        Ok(Self {
            listeners: out,
            authorizer: !statics
                .str("authorizer.class.name")
                .unwrap_or_default()
                .trim()
                .is_empty(),
            super_users: crate::security::acl::parse_super_users(
                &statics.str("super.users").unwrap_or_default(),
            ),
            allow_if_no_acl: statics.bool("allow.everyone.if.no.acl.found"),
            quota_window_num: statics.int("quota.window.num")?,
            quota_window_size_ms: statics
                .int::<u64>("quota.window.size.seconds")?
                .saturating_mul(1000),
            internal_tls,
        })
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerSecurity> {
        self.listeners.get(name)
    }
}

/// `listener.name.<name>.<key>`, else `<key>` (explicit or default).
fn listener_value(statics: &StaticConfig, listener: &str, key: &str) -> Option<String> {
    let specific = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
    statics
        .explicit()
        .get(&specific)
        .cloned()
        .or_else(|| statics.str(key))
}

fn tls_files(
    get: &dyn Fn(&str) -> Option<String>,
    listener: &str,
) -> Result<TlsFiles, ConfigError> {
    let path = |key: &str| get(key).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    let (certificate, key) = match (
        path("ssl.keystore.location"),
        path("ssl.certificate.location"),
        path("ssl.key.location"),
    ) {
        (Some(ks), None, None) => (ks.clone(), ks),
        (None, Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(ConfigError::Invalid(format!(
                "listener {listener} uses TLS: set ssl.keystore.location (PEM key and \
                 certificate chain) or both ssl.certificate.location and ssl.key.location \
                 (or their per-listener forms)"
            )));
        }
    };
    let truststore = path("ssl.truststore.location");
    let client_auth = match get("ssl.client.auth").unwrap_or_default().trim() {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        _ => ClientAuth::None,
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(ConfigError::Invalid(format!(
            "listener {listener}: ssl.client.auth needs ssl.truststore.location to verify client certificates"
        )));
    }
    let protocols = get("ssl.enabled.protocols").unwrap_or_default();
    let tls12 = protocols.split(',').any(|p| p.trim() == "TLSv1.2");
    let tls13 = protocols.split(',').any(|p| p.trim() == "TLSv1.3");
    if !tls12 && !tls13 {
        return Err(ConfigError::Invalid(format!(
            "listener {listener}: ssl.enabled.protocols enables no TLS version"
        )));
    }
    let principal_rules = get("ssl.principal.mapping.rules").unwrap_or_else(|| "DEFAULT".into());
    crate::security::principal::MappingRules::parse(&principal_rules).map_err(|e| {
        ConfigError::Invalid(format!(
            "listener {listener}: ssl.principal.mapping.rules: {e}"
        ))
    })?;
    Ok(TlsFiles {
        certificate,
        key,
        truststore,
        client_auth,
        tls12,
        tls13,
        principal_rules,
        verify_hostname: get("ssl.endpoint.identification.algorithm").unwrap_or_default()
            == "https",
    })
}

fn parse_protocol_map(raw: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            ConfigError::Invalid(format!(
                "listener.security.protocol.map entry '{entry}' is not NAME:PROTOCOL \
                 (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            ))
        };
        let (name, proto) = entry.split_once(':').ok_or_else(bad)?;
        let proto = SecurityProtocol::parse(proto).ok_or_else(bad)?;
        map.insert(name.trim().to_ascii_uppercase(), proto);
    }
    Ok(map)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::config::{BrokerConfig, ConfigSources};

    use super::*;

    fn load(overrides: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::load(&ConfigSources {
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn listeners_get_protocols_and_per_listener_settings() {
        let cfg = load(&[
            ("listeners", "INTERNAL://:9092,EXTERNAL://:9093"),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
            ),
            (
                "listener.name.external.ssl.certificate.location",
                "/tls/tls.crt",
            ),
            ("listener.name.external.ssl.key.location", "/tls/tls.key"),
            (
                "listener.name.external.sasl.enabled.mechanisms",
                "SCRAM-SHA-512",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ])
        .unwrap();
        let internal = cfg.security.listener("INTERNAL").unwrap();
        assert_eq!(internal.protocol, SecurityProtocol::Plaintext);
        assert!(internal.tls.is_none());
        let external = cfg.security.listener("EXTERNAL").unwrap();
        assert_eq!(external.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(external.sasl_mechanisms, vec!["SCRAM-SHA-512"]);
        let tls = external.tls.as_ref().unwrap();
        assert_eq!(tls.certificate, PathBuf::from("/tls/tls.crt"));
        assert_eq!(tls.client_auth, ClientAuth::None);
    }

    #[test]
    fn tls_listener_without_files_or_unknown_protocol_is_refused() {
        let err = load(&[("listeners", "SSL://:9093")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ssl.keystore.location"), "{err}");
        let err = load(&[("listeners", "FOO://:9093")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listener.security.protocol.map"), "{err}");
        let err = load(&[
            ("listeners", "SSL://:9093"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.client.auth", "required"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("ssl.truststore.location"), "{err}");
        assert!(load(&[("listener.name.ssl.sasl.enabled.mechanisms", "GSSAPI")]).is_err());
    }

    #[test]
    fn internal_port_has_its_own_tls_settings() {
        let cfg = load(&[
            ("internal.listener.security.protocol", "SSL"),
            ("ssl.keystore.location", "/tls/kafka.pem"),
            (
                "internal.listener.ssl.keystore.location",
                "/tls/internal.pem",
            ),
            (
                "internal.listener.ssl.truststore.location",
                "/tls/internal-ca.crt",
            ),
        ])
        .unwrap();
        let internal = cfg.security.internal_tls.unwrap();
        assert_eq!(internal.certificate, PathBuf::from("/tls/internal.pem"));
        assert_eq!(
            internal.truststore,
            Some(PathBuf::from("/tls/internal-ca.crt"))
        );
        assert_eq!(internal.client_auth, ClientAuth::Required);
        // Without a truststore nobody could be verified.
        assert!(
            load(&[
                ("internal.listener.security.protocol", "SSL"),
                ("ssl.keystore.location", "/tls/kafka.pem"),
            ])
            .is_err()
        );
    }

    #[test]
    fn authorizer_settings() {
        let cfg = load(&[
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:admin; User:CN=broker"),
        ])
        .unwrap();
        assert!(cfg.security.authorizer);
        assert_eq!(
            cfg.security.super_users,
            vec!["User:admin", "User:CN=broker"]
        );
        assert!(!cfg.security.allow_if_no_acl);
        assert!(load(&[("authorizer.class.name", "com.example.Custom")]).is_err());
        assert!(!load(&[]).unwrap().security.authorizer);
    }
}
