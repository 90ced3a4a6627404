//! The metrics port: `GET /metrics` (the registry in the Prometheus/OpenMetrics text
//! format) and the plaintext probes `GET /readyz` (200 while the replica is serving, else
//! 503, and 503 from SIGTERM on while the server drains) and `GET /livez` (200 while the process answers), over HTTP/1.1 on its own port, so
//! that kubelet can probe the pod whether or not the gRPC ports use TLS.

use crate::revocation::Replica;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of the text exposition format `prometheus_client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router serving `GET /metrics` from `registry`, and `GET /readyz` from the health of
/// `replica` (as the authorization port's gRPC health does) unless `draining` is set (the
/// server is shutting down), and `GET /livez`.
pub fn router(
    registry: Arc<Registry>,
    replica: Arc<Replica>,
    draining: watch::Receiver<bool>,
) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
        .route("/readyz", get(ready).with_state((replica, draining)))
        .route("/livez", get(|| async { "ok\n" }))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn ready(
    State((replica, draining)): State<(Arc<Replica>, watch::Receiver<bool>)>,
) -> Response {
    if *draining.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if replica.health().serving() {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response()
    }
}

/// Serves the metrics port on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    replica: Arc<Replica>,
    draining: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, replica, draining))
        .with_graceful_shutdown(shutdown)
        .await
}
