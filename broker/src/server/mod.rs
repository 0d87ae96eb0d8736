//! Kafka listeners: accept connections and hand each to its own task.

pub mod connection;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::Listener;

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
            connection::run(b.clone(), stream, peer, name).await;
            b.metrics.connections_active.dec();
            drop(permit);
        });
    }
}
