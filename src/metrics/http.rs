//! The metrics port: `GET /metrics` (the registry in the Prometheus/OpenMetrics text
//! format) and the plaintext probes `GET /readyz` (200 while the replica is serving, else
//! 503) and `GET /livez` (200 while the process answers), over HTTP/1.1 on its own port, so
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

/// The content type of the text exposition format `prometheus_client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router serving `GET /metrics` from `registry`, and `GET /readyz` from the health of
/// `replica` (as the authorization port's gRPC health does) and `GET /livez`.
pub fn router(registry: Arc<Registry>, replica: Arc<Replica>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
        .route("/readyz", get(ready).with_state(replica))
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

async fn ready(State(replica): State<Arc<Replica>>) -> Response {
    if replica.health().serving() {
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, replica))
        .with_graceful_shutdown(shutdown)
        .await
}
