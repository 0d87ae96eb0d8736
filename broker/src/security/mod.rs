//! Authentication (TLS client certificates, SASL), authorization (Kafka's ACL model) and
//! client quotas. Credentials, ACLs and quota settings live in the cluster metadata, so
//! every broker enforces the same ones.

pub mod acl;
pub mod admin;
pub mod audit;
pub mod internal;
pub mod principal;
pub mod quota;
pub mod sasl;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::security::SecurityConfig;
use crate::metadata::ClusterMetadata;
use acl::{AclIndex, AuthzContext, Operation, ResourceType};

/// Kafka's principal for connections that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The broker's security state: settings, the ACL index and quota meters.
#[derive(Debug)]
pub struct Security {
    pub authorizer: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
    /// The index and the `acl_version` of the image it was built from.
    index: RwLock<(u64, Arc<AclIndex>)>,
    pub quotas: quota::QuotaMeter,
    pub audit: audit::AuditLog,
    /// TLS endpoints by listener name.
    pub tls: BTreeMap<String, Arc<tls::TlsServer>>,
    /// Key material followers present to leaders on an SSL inter-broker listener.
    pub inter_broker_tls: Option<crate::config::security::TlsFiles>,
    /// TLS of the internal gRPC port.
    pub internal_tls: Option<Arc<tls::TlsServer>>,
}

impl Security {
    pub fn new(cfg: &SecurityConfig, inter_broker_listener: &str) -> Result<Self, tls::TlsError> {
        let inter_broker_tls = cfg
            .listener(inter_broker_listener)
            .and_then(|l| l.tls.clone());
        if let Some(files) = &inter_broker_tls {
            // Fail at startup, not at the first follower fetch.
            tls::client_config(files)?;
        }
        let mut servers = BTreeMap::new();
        for (name, l) in &cfg.listeners {
            if let Some(files) = &l.tls {
                let what = format!("listener {name}");
                servers.insert(name.clone(), Arc::new(tls::TlsServer::load(&what, files)?));
            }
        }
        Ok(Self {
            authorizer: cfg.authorizer,
            super_users: cfg.super_users.clone(),
            allow_if_no_acl: cfg.allow_if_no_acl,
            index: RwLock::new((u64::MAX, Arc::new(AclIndex::default()))),
            quotas: quota::QuotaMeter::new(
                cfg.quota_window_num,
                std::time::Duration::from_millis(cfg.quota_window_size_ms),
            ),
            audit: audit::AuditLog::default(),
            tls: servers,
            inter_broker_tls,
            internal_tls: match &cfg.internal_tls {
                // gRPC runs over HTTP/2, which tonic's clients negotiate with ALPN.
                Some(files) => Some(Arc::new(tls::TlsServer::load_with_alpn(
                    "internal listener",
                    files,
                    vec![b"h2".to_vec()],
                )?)),
                None => None,
            },
        })
    }

    /// Without an authorizer (handler tests).
    pub fn open() -> Self {
        Self {
            authorizer: false,
            super_users: Vec::new(),
            allow_if_no_acl: true,
            index: RwLock::new((u64::MAX, Arc::new(AclIndex::default()))),
            quotas: quota::QuotaMeter::new(11, std::time::Duration::from_secs(1)),
            audit: audit::AuditLog::default(),
            tls: BTreeMap::new(),
            inter_broker_tls: None,
            internal_tls: None,
        }
    }

    /// The ACL index for this image, rebuilt only when the ACLs changed.
    pub fn acls(&self, md: &ClusterMetadata) -> Arc<AclIndex> {
        {
            let cached = self.index.read();
            if cached.0 == md.acl_version {
                return cached.1.clone();
            }
        }
        let index = Arc::new(AclIndex::new(md.acls.iter()));
        *self.index.write() = (md.acl_version, index.clone());
        index
    }

    fn context<'a>(&'a self, principal: &'a str, host: &'a str) -> AuthzContext<'a> {
        AuthzContext {
            principal,
            host,
            super_users: &self.super_users,
            allow_if_no_acl: self.allow_if_no_acl,
        }
    }

    pub fn authorize(
        &self,
        md: &ClusterMetadata,
        principal: &str,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !self.authorizer
            || self
                .acls(md)
                .authorize(&self.context(principal, host), op, resource_type, name)
    }

    pub fn authorize_any(
        &self,
        md: &ClusterMetadata,
        principal: &str,
        host: &str,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        !self.authorizer
            || self
                .acls(md)
                .authorize_any(&self.context(principal, host), op, resource_type)
    }
}

/// How often certificate files are checked for changes.
const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-reads TLS files until shutdown; a rotation applies to new connections.
pub async fn watch_certificates(broker: Arc<crate::broker::Broker>) {
    let security = broker.security.clone();
    let mut servers: Vec<(String, Arc<tls::TlsServer>)> = security
        .tls
        .iter()
        .map(|(l, s)| (l.clone(), s.clone()))
        .collect();
    if let Some(s) = &security.internal_tls {
        servers.push(("internal.listener".into(), s.clone()));
    }
    if servers.is_empty() {
        return;
    }
    let mut last_error: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for (listener, server) in &servers {
            if let Some(expiry) = server.expiry() {
                broker
                    .metrics
                    .tls_certificate_expiry
                    .get_or_create(&crate::metrics::ListenerLabel {
                        listener: listener.clone(),
                    })
                    .set(expiry);
            }
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(RELOAD_CHECK) => {}
        }
        for (listener, server) in &servers {
            let server = server.clone();
            let r = tokio::task::spawn_blocking(move || server.reload_if_changed()).await;
            match r {
                Ok(Ok(true)) => {
                    last_error.remove(listener);
                    tracing::info!(%listener, "TLS certificate files changed: new connections use the new certificate");
                }
                Ok(Ok(false)) => {
                    last_error.remove(listener);
                }
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if last_error.get(listener) != Some(&e) {
                        tracing::error!(%listener, error = %e, "cannot reload TLS certificate files; still serving the previous certificate");
                        last_error.insert(listener.clone(), e);
                    }
                }
                Err(_) => {}
            }
        }
    }
}
