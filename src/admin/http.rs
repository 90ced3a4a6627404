//! The admin port's HTTP endpoints, served next to the gRPC API on the same port:
//! `POST /revoke` (RFC 7009 token revocation) and `POST /backchannel-logout` (OIDC
//! Back-Channel Logout 1.0 receiver). Both take `application/x-www-form-urlencoded` bodies of
//! at most [`MAX_BODY_BYTES`] and answer with `Cache-Control: no-store`.

use super::auth::bearer_matches;
use super::error::AdminError;
use super::revoker::Revoker;
use crate::clock::unix_now;
use crate::config::AdminAuth;
use crate::revocation::{RevocationKey, RevocationKind, StoreError};
use crate::token::{LogoutTokenError, TokenError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The largest request body accepted, in bytes (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most form parameters accepted in one request.
const MAX_PARAMS: usize = 16;
/// The `remember_once` scope of back-channel logout token `jti`s.
pub const BACKCHANNEL_JTI_SCOPE: &str = "backchannel-jti";

/// What the HTTP handlers share.
#[derive(Clone)]
struct HttpState {
    revoker: Arc<Revoker>,
    auth: Arc<AdminAuth>,
    backchannel_audiences: Arc<BTreeMap<String, Vec<String>>>,
}

/// The router of the HTTP endpoints: RFC 7009 `POST /revoke` (guarded by the admin token or
/// the token itself) and `POST /backchannel-logout` (authenticated by the logout token's
/// signature; `backchannel_audiences` maps an issuer to the client ids its logout tokens
/// may name).
pub fn router(
    revoker: Arc<Revoker>,
    auth: AdminAuth,
    backchannel_audiences: BTreeMap<String, Vec<String>>,
) -> Router {
    let state = HttpState {
        revoker,
        auth: Arc::new(auth),
        backchannel_audiences: Arc::new(backchannel_audiences),
    };
    Router::new()
        .route("/revoke", post(revoke))
        .route("/backchannel-logout", post(backchannel_logout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An empty 200 answer.
fn ok() -> Response {
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// An OAuth-style JSON error (`error`, `error_description`).
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": description }).to_string();
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        body,
    )
        .into_response()
}

/// The 503 answer for a token whose issuer key cannot be found (yet): it may be one the
/// issuer just rotated in, so the sender must retry rather than give up.
fn key_unavailable() -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "no key of the issuer is at hand for this token yet; retry",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The one table mapping admin errors to HTTP answers (the gRPC one is in `error.rs`).
fn admin_error(err: AdminError) -> Response {
    match err {
        AdminError::Token(TokenError::KeysUnavailable | TokenError::UnknownKey) => {
            tracing::info!("admin http request: the token's key is not at hand; answered 503");
            key_unavailable()
        }
        AdminError::InvalidArgument { .. } | AdminError::Token(_) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", &err.to_string())
        }
        AdminError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", &err.to_string()),
        AdminError::Store(StoreError::Unavailable(detail)) => {
            tracing::warn!(%detail, "admin http request failed: store unavailable");
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation store is unavailable; the change may not have been made: retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        AdminError::Store(StoreError::Internal(detail)) => {
            tracing::error!(%detail, "admin http request failed: store error");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal store error",
            )
        }
    }
}

/// The form parameters of a request, or why the body is not an acceptable form (wrong
/// content type, repeated or too many parameters). Public as the entry point of the
/// `admin_form` fuzz target; the endpoints call it through `form`.
pub fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err("the body must be application/x-www-form-urlencoded".to_owned());
    }
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if params.len() == MAX_PARAMS {
            return Err("too many parameters".to_owned());
        }
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(format!("parameter {name} is repeated"));
        }
    }
    Ok(params)
}

/// [`parse_form`], with a refusal as the 400 `invalid_request` answer.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Box<Response>> {
    parse_form(headers, body)
        .map_err(|why| Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", &why)))
}

/// RFC 7009 token revocation.
async fn revoke(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match form(&headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let token = params.get("token").map(|t| t.trim()).unwrap_or_default();
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let by_admin = match state.auth.as_ref() {
        AdminAuth::Open => true,
        AdminAuth::Token(expected) => bearer_matches(authorization, expected),
    };
    let by_owner = !token.is_empty() && bearer_matches(authorization, token);
    if !by_admin && !by_owner {
        tracing::warn!("rfc 7009 revocation refused: neither the admin token nor the token itself");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "present the admin token, or the token being revoked, as the bearer token",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"jwt-revoker-admin\""),
        );
        return response;
    }
    if token.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the token parameter is required",
        );
    }
    match params.get("token_type_hint").map(String::as_str) {
        None | Some("access_token") => {}
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_token_type",
                "only access tokens (JWTs) can be revoked here",
            );
        }
    }
    let reason = if by_admin {
        "RFC 7009 revocation by an admin"
    } else {
        "RFC 7009 self-service revocation"
    };
    match state.revoker.revoke_token(token, reason, unix_now()).await {
        Ok(_) => ok(),
        // RFC 7009 §2.2: an invalid token needs no revocation; the answer is 200 all the same.
        // A token whose key cannot be found (yet) is not known to be invalid: 503, retry.
        Err(AdminError::Token(refused))
            if !matches!(
                refused,
                TokenError::KeysUnavailable | TokenError::UnknownKey
            ) =>
        {
            tracing::info!(
                reason = refused.reason(),
                "rfc 7009: invalid token, nothing to revoke"
            );
            ok()
        }
        Err(err @ AdminError::InvalidArgument { .. }) => {
            tracing::info!(error = %err, "rfc 7009: unusable token, nothing to revoke");
            ok()
        }
        Err(err) => admin_error(err),
    }
}

/// The OIDC Back-Channel Logout 1.0 receiver.
async fn backchannel_logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match form(&headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let Some(logout_token) = params.get("logout_token").filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the logout_token parameter is required",
        );
    };
    let now = unix_now();
    let revoker = &state.revoker;
    let verified = match revoker
        .verifier()
        .verify_logout_token(logout_token, &state.backchannel_audiences, now)
        .await
    {
        Ok(verified) => verified,
        Err(LogoutTokenError::Token(TokenError::KeysUnavailable | TokenError::UnknownKey)) => {
            // Perhaps signed with a key the provider just rotated in: it must retry, or the
            // logout is lost.
            tracing::info!("back-channel logout: the token's key is not at hand; answered 503");
            return key_unavailable();
        }
        Err(refused) => {
            tracing::info!(reason = refused.reason(), "back-channel logout refused");
            return refusal(&refused);
        }
    };
    let (kind, id) = match (&verified.sid, &verified.sub) {
        (Some(sid), _) => (RevocationKind::Session, sid),
        (None, Some(sub)) => (RevocationKind::Subject, sub),
        (None, None) => return refusal(&LogoutTokenError::NoSessionOrSubject),
    };
    let key = match RevocationKey::new(verified.issuer.clone(), kind, id.clone()) {
        Ok(key) => key,
        Err(invalid) => {
            return admin_error(AdminError::from_invalid_revocation(
                "logout_token.",
                &invalid,
            ));
        }
    };
    let key = match revoker.check_key(key, "logout_token.") {
        Ok(key) => key,
        Err(err) => return admin_error(err),
    };
    let mark = format!(
        "{}:{}{}",
        verified.issuer.len(),
        verified.issuer,
        verified.jti
    );
    let replayed = || {
        tracing::warn!(iss = %verified.issuer, jti = %verified.jti, "back-channel logout refused: replayed jti");
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the logout token was already used (jti replayed)",
        )
    };
    match revoker
        .store()
        .is_remembered(BACKCHANNEL_JTI_SCOPE, &mark, now)
        .await
    {
        Ok(false) => {}
        Ok(true) => return replayed(),
        Err(err) => return admin_error(err.into()),
    }
    // Revoke, as of the token's `iat` (the same logout token always yields the same
    // revocation, so a concurrent duplicate changes nothing), then remember the jti: if
    // either write fails, the provider can retry the same token.
    if let Err(err) = revoker
        .revoke_key_as_of(key, verified.iat, "OIDC back-channel logout", now)
        .await
    {
        return admin_error(err);
    }
    match revoker
        .store()
        .remember_once(BACKCHANNEL_JTI_SCOPE, &mark, verified.replayable_until, now)
        .await
    {
        Ok(true) => {
            tracing::info!(kind = kind.as_str(), iss = %verified.issuer, jti = %verified.jti, "back-channel logout recorded");
            ok()
        }
        Ok(false) => replayed(),
        Err(err) => admin_error(err.into()),
    }
}

/// The 400 answer for a refused logout token.
fn refusal(refused: &LogoutTokenError) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("logout_token: {refused}"),
    )
}
