//! A recording test upstream: an HTTP/1.1 server on 127.0.0.1 that answers every request
//! with 200 and a JSON echo of what it received, and counts the requests.
//!
//! The echo body is `{"method": "GET", "path": "/x?y=1", "headers": {"name": "value"}}`
//! with header names lowercased (repeated headers joined with `, `), so a test can check
//! through Envoy that claim headers such as `x-jwt-sub` arrived and `authorization` was
//! stripped. The server runs on its own thread and runtime, so it works from sync and
//! async tests alike, and stops when dropped.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running test upstream; stops on drop.
pub struct TestUpstream {
    port: u16,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestUpstream {
    /// Starts the upstream on a free port of 127.0.0.1; it accepts requests on return.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the test upstream");
        listener
            .set_nonblocking(true)
            .expect("make the upstream listener non-blocking");
        let port = listener.local_addr().expect("upstream address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&received);
        let thread = std::thread::Builder::new()
            .name(format!("test-upstream-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the upstream runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the upstream listener");
                    let app = axum::Router::new().fallback(echo).with_state(state);
                    // Stopping drops the server future (and then the runtime with its
                    // connection tasks) without waiting for Envoy's idle keep-alive
                    // connections to close.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("test upstream on port {port} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the upstream thread");
        Self {
            port,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many requests it has received.
    pub fn request_count(&self) -> usize {
        self.lock().len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<ReceivedRequest> {
        self.lock().last().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedRequest>> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn echo(
    State(received): State<Arc<Mutex<Vec<ReceivedRequest>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut echoed = serde_json::Map::new();
    for (name, value) in &headers {
        match echoed.get_mut(name) {
            Some(serde_json::Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                echoed.insert(name.clone(), value.clone().into());
            }
        }
    }
    let body = serde_json::json!({
        "method": method.as_str(),
        "path": path,
        "headers": echoed,
    });
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(ReceivedRequest {
            method: method.as_str().to_owned(),
            path,
            headers,
        });
    Json(body)
}
