//! TLS for Kafka listeners and inter-broker connections, with rustls (ring provider).
//! Key material comes from PEM files that are re-read when their contents change, so
//! cert-manager rotations apply to new connections without a restart.

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::principal::{MappingRules, not_after, subject_dn};
use crate::config::security::{ClientAuth, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS configuration of {what}: {reason}")]
    Config { what: String, reason: String },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            reason: format!("bad PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: format!(
            "no unencrypted private key found ({e}); encrypted keys and ssl.key.password are not supported"
        ),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(files: &TlsFiles) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut v = Vec::new();
    if files.tls13 {
        v.push(&rustls::version::TLS13);
    }
    if files.tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// Everything read from the files, kept to notice changes.
#[derive(Debug, PartialEq, Eq)]
struct Material {
    chain: Vec<u8>,
    key: Vec<u8>,
    trust: Vec<u8>,
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            chain: read(&files.certificate)?,
            key: if files.key == files.certificate {
                Vec::new()
            } else {
                read(&files.key)?
            },
            trust: match &files.truststore {
                Some(p) => read(p)?,
                None => Vec::new(),
            },
        })
    }

    fn key_pem(&self) -> &[u8] {
        if self.key.is_empty() {
            &self.chain
        } else {
            &self.key
        }
    }

    fn roots(&self, files: &TlsFiles) -> Result<Option<RootCertStore>, TlsError> {
        let Some(path) = &files.truststore else {
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        for c in certs(path, &self.trust)? {
            roots.add(c).map_err(|e| TlsError::Pem {
                path: path.display().to_string(),
                reason: format!("unusable CA certificate: {e}"),
            })?;
        }
        Ok(Some(roots))
    }
}

fn server_config(
    what: &str,
    files: &TlsFiles,
    m: &Material,
    alpn: &[Vec<u8>],
) -> Result<(ServerConfig, Option<i64>), TlsError> {
    let cfg_err = |reason: String| TlsError::Config {
        what: what.to_string(),
        reason,
    };
    let chain = certs(&files.certificate, &m.chain)?;
    let expiry = chain.first().and_then(|c| not_after(c));
    let key = key(&files.key, m.key_pem())?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(files))
        .map_err(|e| cfg_err(e.to_string()))?;
    let builder = match (files.client_auth, m.roots(files)?) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(roots)) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let v = if auth == ClientAuth::Requested {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| cfg_err(e.to_string()))?)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| cfg_err(format!("certificate and key do not match: {e}")))?;
    cfg.alpn_protocols = alpn.to_vec();
    Ok((cfg, expiry))
}

/// A TLS server endpoint (one listener, or the internal gRPC port).
#[derive(Debug)]
pub struct TlsServer {
    what: String,
    files: TlsFiles,
    /// ALPN protocols offered: none for Kafka, `h2` for gRPC.
    alpn: Vec<Vec<u8>>,
    rules: MappingRules,
    current: RwLock<(Arc<ServerConfig>, Option<i64>)>,
    material: Mutex<Material>,
}

impl TlsServer {
    pub fn load(what: &str, files: &TlsFiles) -> Result<Self, TlsError> {
        Self::load_with_alpn(what, files, Vec::new())
    }

    pub fn load_with_alpn(
        what: &str,
        files: &TlsFiles,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let m = Material::read(files)?;
        let (cfg, expiry) = server_config(what, files, &m, &alpn)?;
        let rules =
            MappingRules::parse(&files.principal_rules).map_err(|reason| TlsError::Config {
                what: what.to_string(),
                reason,
            })?;
        Ok(Self {
            what: what.to_string(),
            files: files.clone(),
            alpn,
            rules,
            current: RwLock::new((Arc::new(cfg), expiry)),
            material: Mutex::new(m),
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().0.clone()
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Seconds since the epoch when the served certificate expires.
    pub fn expiry(&self) -> Option<i64> {
        self.current.read().1
    }

    /// Re-reads the files; a changed, valid set replaces the served one. A broken set
    /// (e.g. half-written) is reported and the previous one kept.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let m = Material::read(&self.files)?;
        if *self.material.lock() == m {
            return Ok(false);
        }
        let (cfg, expiry) = server_config(&self.what, &self.files, &m, &self.alpn)?;
        *self.current.write() = (Arc::new(cfg), expiry);
        *self.material.lock() = m;
        Ok(true)
    }

    /// The principal name of a verified client certificate (`None` without one).
    pub fn client_principal(
        &self,
        peer_certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<Option<String>, String> {
        let Some(leaf) = peer_certs.and_then(|c| c.first()) else {
            return Ok(None);
        };
        let dn = subject_dn(leaf)?;
        self.rules
            .apply(&dn)
            .map(Some)
            .ok_or_else(|| format!("no ssl.principal.mapping.rules entry matches '{dn}'"))
    }
}

/// Client side of inter-broker TLS: trusts the truststore and presents this broker's
/// own certificate (for listeners that require client certificates).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let what = "inter-broker client";
    let cfg_err = |reason: String| TlsError::Config {
        what: what.to_string(),
        reason,
    };
    let m = Material::read(files)?;
    let roots = m.roots(files)?.ok_or_else(|| {
        cfg_err("ssl.truststore.location is required to verify other brokers".into())
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(files))
        .map_err(|e| cfg_err(e.to_string()))?;
    let builder = if files.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| cfg_err(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
    };
    let chain = certs(&files.certificate, &m.chain)?;
    let key = key(&files.key, m.key_pem())?;
    let cfg = builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| cfg_err(format!("certificate and key do not match: {e}")))?;
    Ok(Arc::new(cfg))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is verified, the name not.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
