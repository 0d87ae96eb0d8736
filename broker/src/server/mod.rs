//! Kafka listeners: accept connections and hand each to its own task.

pub mod connection;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::Listener;
use crate::protocol::sasl::Session;

#[derive(Debug)]
pub struct BoundListener {
    pub name: Arc<str>,
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
}

/// Binds every configured listener; port 0 gets a free port.
pub async fn bind(listeners: &[Listener]) -> std::io::Result<Vec<BoundListener>> {
    let mut out = Vec::with_capacity(listeners.len());
    for l in listeners {
        let addr = l.bind_addr();
        let listener = TcpListener::bind(&addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind listener {} on {addr}: {e}", l.name),
            )
        })?;
        let local_addr = listener.local_addr()?;
        out.push(BoundListener {
            name: Arc::from(l.name.as_str()),
            listener,
            local_addr,
        });
    }
    Ok(out)
}

/// Accepts connections until shutdown. Connections are tracked so shutdown can wait for
/// in-flight requests.
pub async fn serve(broker: Arc<Broker>, bound: BoundListener, connections: TaskTracker) {
    let limit = Arc::new(Semaphore::new(
        broker.config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    tracing::info!(listener = %bound.name, addr = %bound.local_addr, "accepting Kafka connections");
    loop {
        let accepted = tokio::select! {
            a = bound.listener.accept() => a,
            _ = broker.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(listener = %bound.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            broker.metrics.connection_error("max_connections");
            tracing::warn!(%peer, max = broker.config.max_connections,
                "refusing connection: max.connections reached");
            drop(stream);
            continue;
        };
        broker.metrics.connections_accepted.inc();
        broker.metrics.connections_active.inc();
        let b = broker.clone();
        let name = bound.name.clone();
        connections.spawn(async move {
            start(b.clone(), stream, peer, name).await;
            b.metrics.connections_active.dec();
            drop(permit);
        });
    }
}

/// Time a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets up the listener's security (TLS handshake, client certificate principal) and
/// serves the connection.
async fn start(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, listener: Arc<str>) {
    let _ = stream.set_nodelay(true);
    let Some(security) = broker.config.security.listener(&listener) else {
        return;
    };
    let mut session = Session::new(listener.clone(), security);
    let Some(tls) = broker.security.tls.get(&*listener) else {
        let (rd, wr) = stream.into_split();
        connection::run(broker, rd, wr, peer, session).await;
        return;
    };
    let accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            broker.metrics.authentication_failure("tls_handshake");
            broker.security.audit.authentication_failed(
                &peer.to_string(),
                &listener,
                "TLS",
                &format!("TLS handshake failed: {e}"),
            );
            return;
        }
        Err(_) => {
            broker
                .metrics
                .authentication_failure("tls_handshake_timeout");
            tracing::debug!(%peer, %listener, "TLS handshake timed out");
            return;
        }
    };
    match tls.client_principal(stream.get_ref().1.peer_certificates()) {
        Ok(Some(user)) if !session.protocol.sasl() => session.set_principal(&user),
        Ok(_) => {}
        Err(reason) => {
            broker.metrics.authentication_failure("tls_principal");
            broker.security.audit.authentication_failed(
                &peer.to_string(),
                &listener,
                "TLS",
                &reason,
            );
            return;
        }
    }
    let (rd, wr) = tokio::io::split(stream);
    connection::run(broker, rd, wr, peer, session).await;
}
