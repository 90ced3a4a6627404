//! Global Token Revocation over HTTP: `POST /global-token-revocation` on the admin port,
//! `application/json` `{"sub_id": …}`; 204 once the user's revocations are durable; 400
//! `invalid_request`, 401 (with `WWW-Authenticate: Bearer`), 403 `access_denied`, 422
//! `unsupported_subject`, 503 on a store outage.

use crate::clock::unix_now;
use crate::ssf::gtr::{GlobalRevocation, GtrError, MAX_REQUEST_BYTES};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

/// The endpoint's router.
pub fn router(gtr: Arc<GlobalRevocation>) -> Router {
    Router::new()
        .route("/global-token-revocation", post(revoke))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(gtr)
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": description }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn revoke(
    State(gtr): State<Arc<GlobalRevocation>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !is_json {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/json",
        );
    }
    match gtr.revoke(authorization, &body, unix_now()).await {
        Ok(count) => {
            tracing::info!(revocations = count, "global token revocation recorded");
            (
                StatusCode::NO_CONTENT,
                [(header::CACHE_CONTROL, "no-store")],
            )
                .into_response()
        }
        Err(GtrError::Unauthorized(why)) => {
            tracing::warn!(why, "global token revocation refused: not authenticated");
            let mut response = error(StatusCode::UNAUTHORIZED, "invalid_token", why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"jwt-revoker-admin\""),
            );
            response
        }
        Err(err @ GtrError::BadRequest(_)) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string())
        }
        Err(err @ GtrError::Forbidden(_)) => {
            error(StatusCode::FORBIDDEN, "access_denied", &err.to_string())
        }
        Err(err @ GtrError::Unprocessable(_)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_subject",
            &err.to_string(),
        ),
        Err(GtrError::Store(store)) if store.is_transient() => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation store is unavailable: retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Err(GtrError::Store(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal store error",
        ),
    }
}
