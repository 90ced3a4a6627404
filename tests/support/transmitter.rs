//! An OpenID Shared Signals transmitter for the tests: serves its metadata
//! (`/.well-known/ssf-configuration`) and its JWKS (the fixture keys) on a free loopback
//! port, mints Security Event Tokens signed with the fixture RSA key (`rsa-1`, `typ:
//! secevent+jwt`), and pushes them (RFC 8935) as a transmitter would, or queues them for
//! its RFC 8936 poll endpoint (`POST /ssf/poll`, bearer [`POLL_TOKEN`]: long poll up to a
//! second, `ack` removes a SET, `setErrs` records a refusal, unacknowledged SETs are
//! delivered again on the next poll). Stream management: the configuration endpoint, the
//! status endpoint (`GET /ssf/status?stream_id=`, the status set by [`Transmitter::set_status`])
//! and the verification endpoint (the verification SET pushed, or queued for polling, unless
//! [`Transmitter::drop_verifications`]), authorized by [`MANAGEMENT_TOKEN`] or an access
//! token `/oauth/token` issued to [`MANAGEMENT_CLIENT`] (until
//! [`Transmitter::withdraw_management_tokens`]).

use super::http::{Request, Response};
use super::{fixture, ports::free_port, tokens};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bearer token the stream management endpoints require.
pub const MANAGEMENT_TOKEN: &str = "management-token-0123456789abcdef";

/// The OAuth client (id, secret) whose client credentials grant yields [`POLL_TOKEN`] at
/// `/oauth/token`.
pub const POLL_CLIENT: (&str, &str) = ("revoker", "client-secret-0123456789abcdef");

/// The OAuth client (id, secret) whose client credentials grant yields a management access
/// token at `/oauth/token`.
pub const MANAGEMENT_CLIENT: (&str, &str) = ("revoker-manager", "manager-secret-0123456789abcdef");

/// The bearer token the poll endpoint requires.
pub const POLL_TOKEN: &str = "poll-token-0123456789abcdef";

/// The poll endpoint's state.
#[derive(Debug, Default)]
pub struct PollQueue {
    /// SETs not yet acknowledged, by `jti`.
    pub pending: BTreeMap<String, String>,
    /// Acknowledged `jti`s, in order.
    pub acked: Vec<String>,
    /// `setErrs` received, by `jti`.
    pub errors: BTreeMap<String, Value>,
    /// Polls answered.
    pub polls: u64,
    /// The stream configuration, once a receiver created it.
    pub stream: Option<Value>,
    /// Stream management calls received: method and body.
    pub management_calls: Vec<(String, Value)>,
    /// Tokens issued by `/oauth/token`.
    pub tokens_issued: u64,
    /// Management access tokens issued by `/oauth/token`, in order.
    pub management_tokens: Vec<String>,
    /// Management tokens issued before this index are refused.
    pub management_tokens_valid_from: usize,
    /// The `scope` of each token request.
    pub scopes: Vec<String>,
    /// Token requests refused (bad client credentials).
    pub token_refusals: u64,
    /// Management calls refused with 401.
    pub management_refusals: u64,
    /// The stream status the status endpoint reports, with its reason (`enabled` unless set).
    pub status: Option<(String, Option<String>)>,
    /// Status endpoint calls.
    pub status_calls: u64,
    /// The `state` of every verification requested.
    pub verifications: Vec<String>,
    /// When set, verification requests are answered 204 but no event is sent.
    pub drop_verifications: bool,
    /// When set, verification requests are refused with 429 (faster than
    /// `min_verification_interval`).
    pub rate_limit_verifications: bool,
}

/// The CAEP session-revoked event type.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// The RISC account-disabled event type.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

/// A running test transmitter; stops on drop.
pub struct Transmitter {
    port: u16,
    queue: Arc<Mutex<PollQueue>>,
    wake: Arc<tokio::sync::Notify>,
    _stop: tokio::sync::oneshot::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Transmitter {
    /// Starts the metadata and JWKS endpoints on a free port.
    pub fn start() -> Self {
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let jwks: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("jwks.json")).expect("read the fixture JWKS"),
        )
        .expect("the fixture JWKS is JSON");
        let metadata = json!({
            "spec_version": "1_0",
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
            "configuration_endpoint": format!("{issuer}/ssf/streams"),
            "status_endpoint": format!("{issuer}/ssf/status"),
            "verification_endpoint": format!("{issuer}/ssf/verify"),
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        });
        let queue = Arc::new(Mutex::new(PollQueue::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (poll_queue, poll_wake) = (Arc::clone(&queue), Arc::clone(&wake));
        let (streams_queue, verify_queue) = (Arc::clone(&queue), Arc::clone(&queue));
        let token_queue = Arc::clone(&queue);
        let status_queue = Arc::clone(&queue);
        let verify_wake = Arc::clone(&wake);
        let (streams_issuer, verify_issuer) = (issuer.clone(), issuer.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("transmitter runtime");
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/.well-known/ssf-configuration",
                        axum::routing::get(move || {
                            let metadata = metadata.clone();
                            async move { axum::Json(metadata) }
                        }),
                    )
                    .route(
                        "/ssf/poll",
                        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                            poll(
                                Arc::clone(&poll_queue),
                                Arc::clone(&poll_wake),
                                headers,
                                body,
                            )
                        }),
                    )
                    .route(
                        "/oauth/token",
                        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                            oauth_token(Arc::clone(&token_queue), headers, body)
                        }),
                    )
                    .route(
                        "/ssf/streams",
                        axum::routing::any(
                            move |method: axum::http::Method,
                                  headers: axum::http::HeaderMap,
                                  body: String| {
                                streams(
                                    Arc::clone(&streams_queue),
                                    streams_issuer.clone(),
                                    method,
                                    headers,
                                    body,
                                )
                            },
                        ),
                    )
                    .route(
                        "/ssf/verify",
                        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                            verify(
                                Arc::clone(&verify_queue),
                                Arc::clone(&verify_wake),
                                verify_issuer.clone(),
                                headers,
                                body,
                            )
                        }),
                    )
                    .route(
                        "/ssf/status",
                        axum::routing::get(
                            move |headers: axum::http::HeaderMap, uri: axum::http::Uri| {
                                let query: BTreeMap<String, String> = url::form_urlencoded::parse(
                                    uri.query().unwrap_or_default().as_bytes(),
                                )
                                .into_owned()
                                .collect();
                                stream_status(Arc::clone(&status_queue), headers, query)
                            },
                        ),
                    )
                    .route(
                        "/jwks",
                        axum::routing::get(move || {
                            let jwks = jwks.clone();
                            async move { axum::Json(jwks) }
                        }),
                    );
                let listener =
                    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                        .await
                        .expect("bind the transmitter's port");
                let _ = ready_tx.send(());
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the transmitter started");
        Self {
            port,
            queue,
            wake,
            _stop: stop,
            thread: Some(thread),
        }
    }

    /// Its issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A SET of `event_type` about `sub_id`, for `audience`, with a fresh `jti`; `event`
    /// is the event's payload.
    pub fn set(&self, audience: &str, event_type: &str, sub_id: Value, event: Value) -> String {
        let claims = json!({
            "iss": self.issuer(),
            "aud": audience,
            "iat": tokens::now(),
            "jti": tokens::unique_jti(),
            "txn": "txn-1",
            "sub_id": sub_id,
            "events": {event_type: event},
        });
        self.sign(&claims)
    }

    /// The client credentials token endpoint's URL.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer())
    }

    /// The poll endpoint's URL.
    pub fn poll_endpoint(&self) -> String {
        format!("{}/ssf/poll", self.issuer())
    }

    /// Queues `set` for the poll endpoint; returns its `jti`.
    pub fn queue(&self, set: &str) -> String {
        use base64::Engine as _;
        let payload = set.split('.').nth(1).expect("a compact SET");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        let claims: Value = serde_json::from_slice(&payload).expect("JSON claims");
        let jti = claims["jti"].as_str().expect("a jti").to_owned();
        self.queue
            .lock()
            .expect("queue")
            .pending
            .insert(jti.clone(), set.to_owned());
        self.wake.notify_waiters();
        jti
    }

    /// Sets the stream status the status endpoint reports.
    pub fn set_status(&self, status: &str, reason: Option<&str>) {
        self.queue.lock().expect("queue").status =
            Some((status.to_owned(), reason.map(str::to_owned)));
    }

    /// Whether verification requests send no event (answered 204 all the same).
    pub fn drop_verifications(&self, drop: bool) {
        self.queue.lock().expect("queue").drop_verifications = drop;
    }

    /// Whether verification requests are refused with 429.
    pub fn rate_limit_verifications(&self, limit: bool) {
        self.queue.lock().expect("queue").rate_limit_verifications = limit;
    }

    /// Refuses every management access token issued so far (as if revoked before expiry).
    pub fn withdraw_management_tokens(&self) {
        let mut queue = self.queue.lock().expect("queue");
        queue.management_tokens_valid_from = queue.management_tokens.len();
    }

    /// Reads the poll endpoint's state.
    pub fn polled<T>(&self, read: impl FnOnce(&PollQueue) -> T) -> T {
        read(&self.queue.lock().expect("queue"))
    }

    /// Signs any claims as a SET (RS256, kid `rsa-1`, `typ: secevent+jwt`).
    pub fn sign(&self, claims: &Value) -> String {
        let (key, kid) = tokens::fixture_key(Algorithm::RS256);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header.typ = Some("secevent+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &key).expect("sign a SET")
    }
}

impl Drop for Transmitter {
    fn drop(&mut self) {
        // Dropping `_stop` ends the server; the thread then returns.
        let (stop, _) = tokio::sync::oneshot::channel();
        drop(std::mem::replace(&mut self._stop, stop));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client credentials token endpoint for [`POLL_CLIENT`] (the poll token) and
/// [`MANAGEMENT_CLIENT`] (a new management access token each time); it checks the client
/// secret (HTTP Basic).
async fn oauth_token(
    queue: Arc<Mutex<PollQueue>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    use base64::Engine as _;
    let basic = |(id, secret): (&str, &str)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut queue = queue.lock().expect("queue");
    let scope = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "scope")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let token = if !body.contains("grant_type=client_credentials") {
        None
    } else if given == basic(POLL_CLIENT) {
        Some(POLL_TOKEN.to_owned())
    } else if given == basic(MANAGEMENT_CLIENT) {
        let token = format!("management-access-token-{}", queue.management_tokens.len());
        queue.management_tokens.push(token.clone());
        Some(token)
    } else {
        None
    };
    let Some(token) = token else {
        queue.token_refusals += 1;
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client"}).to_string(),
        );
    };
    queue.tokens_issued += 1;
    queue.scopes.push(scope);
    (
        axum::http::StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 60}).to_string(),
    )
}

/// Whether a management call carries [`MANAGEMENT_TOKEN`] or a live management access token
/// (counting a refusal otherwise).
fn management_authorized(queue: &Mutex<PollQueue>, headers: &axum::http::HeaderMap) -> bool {
    let mut queue = queue.lock().expect("queue");
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let valid = given == MANAGEMENT_TOKEN
        || queue.management_tokens[queue.management_tokens_valid_from..]
            .iter()
            .any(|token| token == given);
    if !valid {
        queue.management_refusals += 1;
    }
    valid
}

/// The status endpoint: `GET ?stream_id=` → `{stream_id, status, reason}`.
async fn stream_status(
    queue: Arc<Mutex<PollQueue>>,
    headers: axum::http::HeaderMap,
    query: BTreeMap<String, String>,
) -> (axum::http::StatusCode, String) {
    if !management_authorized(&queue, &headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
    }
    let mut queue = queue.lock().expect("queue");
    queue.status_calls += 1;
    let known = queue
        .stream
        .as_ref()
        .and_then(|stream| stream["stream_id"].as_str().map(str::to_owned));
    if query.get("stream_id") != known.as_ref() {
        return (axum::http::StatusCode::NOT_FOUND, String::new());
    }
    let (status, reason) = queue
        .status
        .clone()
        .unwrap_or_else(|| ("enabled".to_owned(), None));
    let mut answer = json!({"stream_id": known, "status": status});
    if let Some(reason) = reason {
        answer["reason"] = json!(reason);
    }
    (axum::http::StatusCode::OK, answer.to_string())
}

/// The stream configuration endpoint: GET lists, POST creates (`stream-1`), PATCH updates.
async fn streams(
    queue: Arc<Mutex<PollQueue>>,
    issuer: String,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    if !management_authorized(&queue, &headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut queue = queue.lock().expect("queue");
    queue
        .management_calls
        .push((method.to_string(), request.clone()));
    match method.as_str() {
        "GET" => (
            StatusCode::OK,
            json!(queue.stream.iter().collect::<Vec<_>>()).to_string(),
        ),
        "POST" | "PATCH" => {
            if method == "PATCH" && queue.stream.is_none() {
                return (StatusCode::NOT_FOUND, String::new());
            }
            let mut stream = queue.stream.clone().unwrap_or_else(|| json!({}));
            for (key, value) in request.as_object().into_iter().flatten() {
                stream[key] = value.clone();
            }
            stream["stream_id"] = json!("stream-1");
            stream["iss"] = json!(issuer);
            queue.stream = Some(stream.clone());
            let status = if method == "POST" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, stream.to_string())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
    }
}

/// The verification endpoint: answers 204, then sends a verification SET with the `state`:
/// pushed to the stream's push endpoint, or queued for the poll endpoint when the stream is
/// polled; nothing with [`Transmitter::drop_verifications`].
async fn verify(
    queue: Arc<Mutex<PollQueue>>,
    wake: Arc<tokio::sync::Notify>,
    issuer: String,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    if !management_authorized(&queue, &headers) {
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (stream, drop) = {
        let mut queue = queue.lock().expect("queue");
        let Some(stream) = queue.stream.clone() else {
            return axum::http::StatusCode::NOT_FOUND;
        };
        if request["stream_id"] != stream["stream_id"] {
            return axum::http::StatusCode::NOT_FOUND;
        }
        if queue.rate_limit_verifications {
            return axum::http::StatusCode::TOO_MANY_REQUESTS;
        }
        queue
            .verifications
            .push(request["state"].as_str().unwrap_or_default().to_owned());
        (stream, queue.drop_verifications)
    };
    if drop {
        return axum::http::StatusCode::NO_CONTENT;
    }
    let jti = tokens::unique_jti();
    let claims = json!({
        "iss": issuer, "aud": stream["aud"], "iat": tokens::now(), "jti": jti,
        "sub_id": {"format": "opaque", "id": stream["stream_id"]},
        "events": {"https://schemas.openid.net/secevent/ssf/event-type/verification":
            {"state": request["state"]}},
    });
    let (key, kid) = tokens::fixture_key(Algorithm::RS256);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("secevent+jwt".to_owned());
    let set = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    if stream["delivery"]["method"] == "urn:ietf:rfc:8936" {
        queue.lock().expect("queue").pending.insert(jti, set);
        wake.notify_waiters();
        return axum::http::StatusCode::NO_CONTENT;
    }
    let url = stream["delivery"]["endpoint_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let authorization = stream["delivery"]["authorization_header"]
        .as_str()
        .map(str::to_owned);
    tokio::spawn(async move {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/secevent+jwt")
            .body(set);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let _ = request.send().await;
    });
    axum::http::StatusCode::NO_CONTENT
}

/// The RFC 8936 poll endpoint.
async fn poll(
    queue: Arc<Mutex<PollQueue>>,
    wake: Arc<tokio::sync::Notify>,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {POLL_TOKEN}"));
    if !authorized {
        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (axum::http::StatusCode::BAD_REQUEST, String::new());
    };
    {
        let mut queue = queue.lock().expect("queue");
        for jti in request["ack"].as_array().into_iter().flatten() {
            if let Some(jti) = jti.as_str() {
                queue.pending.remove(jti);
                queue.acked.push(jti.to_owned());
            }
        }
        for (jti, error) in request["setErrs"].as_object().into_iter().flatten() {
            queue.pending.remove(jti);
            queue.errors.insert(jti.clone(), error.clone());
        }
    }
    let wait = !request["returnImmediately"].as_bool().unwrap_or(false);
    let max = request["maxEvents"].as_u64().unwrap_or(10) as usize;
    if wait && queue.lock().expect("queue").pending.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
    }
    let mut queue = queue.lock().expect("queue");
    queue.polls += 1;
    let sets: serde_json::Map<String, Value> = queue
        .pending
        .iter()
        .take(max)
        .map(|(jti, set)| (jti.clone(), json!(set)))
        .collect();
    let more = queue.pending.len() > max;
    (
        axum::http::StatusCode::OK,
        json!({"sets": sets, "moreAvailable": more}).to_string(),
    )
}

/// Pushes `set` (RFC 8935) to `path` on the admin port `port`, with `authorization` when
/// given, and returns the answer.
pub fn push(port: u16, path: &str, set: &str, authorization: Option<&str>) -> Response {
    let mut request = Request::new("POST", path)
        .header("content-type", "application/secevent+jwt")
        .header("accept", "application/json")
        .body(set.as_bytes().to_vec());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send(port)
}
