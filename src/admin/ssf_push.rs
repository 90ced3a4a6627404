//! RFC 8935 push delivery of Security Event Tokens: `POST /ssf/push/{stream}` on the admin
//! port. The stream's authorization secret (if configured) is checked in constant time; the
//! body must be `application/secevent+jwt`. 202 (empty) only once the resulting revocations
//! are durable; 400 `{"err", "description"}` for a refused SET; 503 on a store outage (or
//! while the transmitter's keys are not at hand), so the transmitter redelivers; 404 for an
//! unknown stream.

use crate::clock::unix_now;
use crate::ssf::{ReceiveError, Receiver, SetError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

/// The largest push body accepted.
const MAX_PUSH_BYTES: usize = crate::ssf::secevent::MAX_SET_BYTES;

/// The push router.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/ssf/push/{stream}", post(push))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BYTES))
        .with_state(receiver)
}

/// An RFC 8935 §2.3 error answer.
fn refusal(status: StatusCode, err: &str, description: &str) -> Response {
    let body = serde_json::json!({ "err": err, "description": description }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_LANGUAGE, "en"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn retry_later(description: &str) -> Response {
    let mut response = refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn push(
    State(receiver): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(stream) = receiver.stream(&name) else {
        return refusal(StatusCode::NOT_FOUND, "not_found", "no such stream");
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !stream.push_authorized(authorization) {
        tracing::warn!(stream = %name, "ssf push refused: wrong authorization header");
        let error = SetError::AuthenticationFailed;
        receiver
            .metrics()
            .count(stream.name(), "unknown", "refused");
        return refusal(StatusCode::BAD_REQUEST, error.code(), &error.to_string());
    }
    let is_set = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/secevent+jwt"));
    if !is_set {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/secevent+jwt",
        );
    }
    match receiver.receive(stream, &body, unix_now()).await {
        Ok(_) => (StatusCode::ACCEPTED, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(ReceiveError::Refused(error)) if error.is_transient() => {
            retry_later(&error.to_string())
        }
        Err(ReceiveError::Refused(error)) => {
            refusal(StatusCode::BAD_REQUEST, error.code(), &error.to_string())
        }
        Err(ReceiveError::Store(error)) if error.is_transient() => {
            retry_later("the revocation store is unavailable; nothing was recorded: redeliver")
        }
        Err(ReceiveError::Store(_)) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal store error; redeliver",
        ),
    }
}
