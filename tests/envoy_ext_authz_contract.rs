//! What `envoy/envoy.yaml` makes Envoy do with ext_authz answers, checked against a fake
//! authorization service (so it runs without the real server): the token reaches the
//! Check from `authorization`, a custom header or a cookie; an allow answer's headers
//! reach the upstream and `authorization` is removed; a deny answer's 401 and
//! `WWW-Authenticate` reach the client; a gRPC error fails closed with 403.

mod support;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckRequestExt, CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use support::envoy::EnvoyProcess;
use support::http::Request;
use support::upstream::TestUpstream;

const WWW_AUTHENTICATE: &str =
    r#"Bearer realm="test", error="invalid_token", error_description="the token is not valid""#;

/// The headers of every Check the fake received.
type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// Allows token `good` (adding `x-jwt-sub: alice`, removing `authorization`), fails with a
/// gRPC error for token `error`, and denies everything else with 401.
struct FakeAuthz {
    seen: Seen,
}

fn token(headers: &HashMap<String, String>) -> Option<String> {
    if let Some(bearer) = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.to_owned());
    }
    if let Some(token) = headers.get("x-token") {
        return Some(token.clone());
    }
    headers.get("cookie").and_then(|cookies| {
        cookies
            .split(';')
            .filter_map(|c| c.trim().strip_prefix("session="))
            .map(str::to_owned)
            .next()
    })
}

#[tonic::async_trait]
impl Authorization for FakeAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let headers = request
            .get_ref()
            .get_client_headers()
            .cloned()
            .unwrap_or_default();
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(headers.clone());
        let mut response = CheckResponse::new();
        match token(&headers).as_deref() {
            Some("good") => {
                let mut ok = OkHttpResponseBuilder::new();
                ok.add_header(
                    "x-jwt-sub",
                    "alice",
                    Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                    false,
                );
                ok.remove_header("authorization");
                response
                    .set_status(tonic::Status::ok(""))
                    .set_http_response(ok);
            }
            Some("error") => return Err(tonic::Status::internal("cannot decide")),
            _ => {
                let mut denied = DeniedHttpResponseBuilder::new();
                denied
                    .set_http_status(HttpStatusCode::Unauthorized)
                    .add_header("www-authenticate", WWW_AUTHENTICATE, None, false)
                    .add_header("content-type", "application/json", None, false)
                    .set_body(r#"{"error":"invalid_token"}"#);
                response
                    .set_status(tonic::Status::unauthenticated("invalid token"))
                    .set_http_response(denied);
            }
        }
        Ok(tonic::Response::new(response))
    }
}

/// The fake on its own thread and runtime; stops when dropped.
struct FakeAuthzServer {
    port: u16,
    seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAuthzServer {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the fake");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("fake address").port();
        let seen = Seen::default();
        let service = AuthorizationServer::new(FakeAuthz {
            seen: Arc::clone(&seen),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                tokio::select! {
                    result = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming(incoming) => {
                        if let Err(e) = result {
                            eprintln!("fake authz server failed: {e}");
                        }
                    }
                    _ = stopped => {}
                }
            });
        });
        Self {
            port,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn last_seen(&self) -> HashMap<String, String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .cloned()
            .expect("the fake received a Check")
    }
}

impl Drop for FakeAuthzServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Setup {
    authz: FakeAuthzServer,
    upstream: TestUpstream,
    envoy: EnvoyProcess,
}

fn setup() -> Setup {
    let authz = FakeAuthzServer::start();
    let upstream = TestUpstream::start();
    let envoy = EnvoyProcess::start(authz.port, upstream.port());
    Setup {
        authz,
        upstream,
        envoy,
    }
}

#[test]
fn allow_adds_claim_headers_and_strips_authorization() {
    let s = setup();
    let response = Request::get("/api/items?page=2")
        .bearer("good")
        .header("x-jwt-sub", "mallory")
        .send(s.envoy.listen_port());
    assert_eq!(response.status, 200, "body: {}", response.text());
    let echo = response.json();
    assert_eq!(echo["path"], "/api/items?page=2");
    // The allow answer's header replaces the one the client tried to forge.
    assert_eq!(echo["headers"]["x-jwt-sub"], "alice");
    assert!(
        echo["headers"].get("authorization").is_none(),
        "authorization reached the upstream: {echo}"
    );
    let check = s.authz.last_seen();
    assert_eq!(
        check.get("authorization").map(String::as_str),
        Some("Bearer good")
    );
    assert_eq!(
        check.get(":path").map(String::as_str),
        Some("/api/items?page=2")
    );
}

#[test]
fn every_request_header_reaches_the_check() {
    let s = setup();
    let by_cookie = Request::get("/a")
        .header("cookie", "theme=dark; session=good")
        .send(s.envoy.listen_port());
    assert_eq!(by_cookie.status, 200, "body: {}", by_cookie.text());
    assert_eq!(
        s.authz.last_seen().get("cookie").map(String::as_str),
        Some("theme=dark; session=good")
    );

    let by_header = Request::get("/b")
        .header("x-token", "good")
        .header("x-unrelated", "1")
        .send(s.envoy.listen_port());
    assert_eq!(by_header.status, 200, "body: {}", by_header.text());
    let check = s.authz.last_seen();
    assert_eq!(check.get("x-token").map(String::as_str), Some("good"));
    assert_eq!(check.get("x-unrelated").map(String::as_str), Some("1"));
    assert_eq!(s.upstream.request_count(), 2);
}

#[test]
fn deny_reaches_the_client_with_www_authenticate() {
    let s = setup();
    let response = Request::get("/api/items")
        .bearer("revoked")
        .send(s.envoy.listen_port());
    assert_eq!(response.status, 401, "body: {}", response.text());
    assert_eq!(response.header("www-authenticate"), Some(WWW_AUTHENTICATE));
    assert_eq!(response.json()["error"], "invalid_token");
    assert_eq!(
        s.upstream.request_count(),
        0,
        "a denied request reached the upstream"
    );
}

#[test]
fn grpc_error_from_the_check_fails_closed() {
    let s = setup();
    let response = Request::get("/api/items")
        .bearer("error")
        .send(s.envoy.listen_port());
    assert_eq!(response.status, 403, "body: {}", response.text());
    assert_eq!(
        s.upstream.request_count(),
        0,
        "a refused request reached the upstream"
    );
}
