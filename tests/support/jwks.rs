//! A test identity provider's JWKS endpoint that rotates keys: an HTTP/1.1 server on
//! 127.0.0.1 serving `/jwks.json` with whatever key set (or failure) the test sets, counting
//! requests. Keys come from the fixtures: the "old" key is `keys/rsa.pem` (kid `rsa-1`), the
//! "new" one `keys/rsa-untrusted.pem` (kid `rsa-untrusted`). Its own thread and runtime, so
//! sync and async tests can use it; stops when dropped.

use super::fixture;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The kid of the key signing before the rotation.
pub const OLD_KID: &str = "rsa-1";
/// The kid of the key signing after it.
pub const NEW_KID: &str = "rsa-untrusted";

#[derive(Default)]
struct Served {
    reply: Mutex<(u16, String)>,
    hits: AtomicUsize,
}

/// A running JWKS server; stops on drop.
pub struct JwksServer {
    port: u16,
    served: Arc<Served>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The JWK with `kid` from a fixture JWKS file.
fn jwk(file: &str, kid: &str) -> Value {
    let path = fixture(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let jwks: Value = serde_json::from_str(&text).expect("a JWKS fixture");
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == kid))
        .cloned()
        .unwrap_or_else(|| panic!("no {kid} in {file}"))
}

/// A JWKS document holding the keys with these kids: [`OLD_KID`], [`NEW_KID`], or any other
/// kid for the old key's material under that name (sign with `keys/rsa.pem`).
pub fn jwks(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| match *kid {
            NEW_KID => jwk("jwks-untrusted.json", NEW_KID),
            other => {
                let mut key = jwk("jwks.json", OLD_KID);
                key["kid"] = json!(other);
                key
            }
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

impl JwksServer {
    /// Starts serving a JWKS with the keys `kids`.
    pub fn start(kids: &[&str]) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the JWKS server");
        listener
            .set_nonblocking(true)
            .expect("make the JWKS listener non-blocking");
        let port = listener.local_addr().expect("JWKS server address").port();
        let served = Arc::new(Served::default());
        *served.reply.lock().expect("reply") = (200, jwks(kids));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&served);
        let thread = std::thread::Builder::new()
            .name(format!("test-jwks-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the JWKS runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the JWKS listener");
                    let app = axum::Router::new().fallback(serve).with_state(state);
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("test JWKS server on port {port} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the JWKS thread");
        Self {
            port,
            served,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its URL, `http://127.0.0.1:<port>/jwks.json`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks.json", self.port)
    }

    /// Serves the keys `kids` from now on (the identity provider rotates).
    pub fn rotate_to(&self, kids: &[&str]) {
        *self.served.reply.lock().expect("reply") = (200, jwks(kids));
    }

    /// Answers `status` with no key set from now on (the identity provider is down).
    pub fn fail(&self, status: u16) {
        *self.served.reply.lock().expect("reply") = (status, "unavailable".to_owned());
    }

    /// How many requests it has answered.
    pub fn hits(&self) -> usize {
        self.served.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(State(served): State<Arc<Served>>) -> (StatusCode, String) {
    served.hits.fetch_add(1, Ordering::SeqCst);
    let (status, body) = served.reply.lock().expect("reply").clone();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}
