//! The HTTP port: Prometheus metrics and Kubernetes probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::broker::Broker;

#[derive(Clone)]
struct HttpState {
    broker: Arc<Broker>,
    registry: Arc<Registry>,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Liveness: the process and its runtime answer.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: logs recovered, listeners bound, broker registered, not shutting down.
/// Degraded remote storage keeps the broker ready (it still takes and serves data) but
/// is named in the body, for whoever looks.
async fn readyz(State(s): State<HttpState>) -> (StatusCode, String) {
    if s.broker.is_ready() {
        let detail = s
            .broker
            .tier
            .as_ref()
            .and_then(|t| t.health(&s.broker))
            .map(|d| format!("{d}\n"))
            .unwrap_or_default();
        (StatusCode::OK, format!("ready\n{detail}"))
    } else if s.broker.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
    }
}

pub fn router(broker: Arc<Broker>, registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            broker,
            registry: Arc::new(registry),
        })
}

/// Serves until shutdown; probes keep answering (503 on /readyz) while draining.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
