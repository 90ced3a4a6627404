//! A whole test stack: a recording upstream, a real `jwt-revoker serve` and a real Envoy in
//! front of both, with helpers to send a bearer token through it.

use super::envoy::EnvoyProcess;
use super::http::{Request, Response};
use super::server::{ServerBuilder, ServerProcess};
use super::upstream::TestUpstream;
use super::wait_until;
use std::time::Duration;

/// How long a revocation may take to reach the Check path.
pub const PROPAGATION: Duration = Duration::from_secs(5);

/// Upstream, server and Envoy, owned together and stopped on drop.
pub struct Stack {
    /// The upstream behind Envoy.
    pub upstream: TestUpstream,
    /// The jwt-revoker server Envoy asks.
    pub server: ServerProcess,
    /// Envoy.
    pub envoy: EnvoyProcess,
}

impl Stack {
    /// A stack with the default server.
    pub fn start() -> Self {
        Self::with(ServerProcess::builder())
    }

    /// A stack whose server is built by `builder`.
    pub fn with(builder: ServerBuilder) -> Self {
        let upstream = TestUpstream::start();
        let server = builder.start();
        let envoy = EnvoyProcess::start(server.authz_port(), upstream.port());
        Self {
            upstream,
            server,
            envoy,
        }
    }

    /// `GET /api/items` with `token` through this stack's Envoy.
    pub fn get(&self, token: &str) -> Response {
        get(&self.envoy, token)
    }

    /// Polls until a request with `token` through this stack's Envoy gets `status`.
    pub fn wait_for_status(&self, token: &str, status: u16) -> Response {
        wait_for_status(&self.envoy, token, status)
    }
}

/// `GET /api/items` with `token` through `envoy`.
pub fn get(envoy: &EnvoyProcess, token: &str) -> Response {
    Request::get("/api/items")
        .bearer(token)
        .send(envoy.listen_port())
}

/// Polls until a request with `token` through `envoy` gets `status`.
pub fn wait_for_status(envoy: &EnvoyProcess, token: &str, status: u16) -> Response {
    wait_until(&format!("HTTP {status}"), PROPAGATION, |last| {
        let response = get(envoy, token);
        *last = format!("HTTP {} {}", response.status, response.text());
        (response.status == status).then_some(response)
    })
}
