//! TLS of the internal gRPC port (metadata quorum, admin API) when
//! `internal.listener.security.protocol=SSL`: mutual TLS, every peer and admin client
//! presents a certificate from the truststore.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::tls::TlsServer;
use crate::config::security::TlsFiles;

/// How this process reaches other brokers' internal ports. Process-wide: every quorum,
/// admin and rebalance client uses the same key material.
static CLIENT: OnceLock<Option<TlsFiles>> = OnceLock::new();

pub fn init_clients(files: Option<TlsFiles>) {
    let _ = CLIENT.set(files);
}

/// A channel endpoint for `host:port`: `https` with this broker's certificate when the
/// internal port is TLS-protected. Files are read here, so rotations reach new channels.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    let Some(files) = CLIENT.get().and_then(Option::as_ref) else {
        return Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad internal address {addr}: {e}"));
    };
    client_endpoint(addr, files)
}

/// `https` endpoint presenting `files`' certificate (admin CLI, brokers).
pub fn client_endpoint(addr: &str, files: &TlsFiles) -> Result<Endpoint, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = match &files.truststore {
        Some(p) => read(p)?,
        None => return Err("internal TLS needs ssl.truststore.location".into()),
    };
    let chain = read(&files.certificate)?;
    let key = read(&files.key)?;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(chain, key))
        .domain_name(host);
    Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(tls))
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            format!("internal TLS endpoint {addr}: {e}{cause}")
        })
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted, handshaken TLS connections for tonic's `serve_with_incoming`. Handshakes run
/// in their own tasks so a slow client does not hold up the others.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<TlsServer>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "internal listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (tx, acceptor) = (tx.clone(), tls.acceptor());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(s)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(target: "sluice::audit", %peer, error = %e,
                            "internal listener: TLS handshake failed (a peer or admin client without a trusted certificate?)");
                    }
                    Err(_) => tracing::debug!(%peer, "internal listener: TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) })
}
