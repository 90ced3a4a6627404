//! A gRPC client for jwt-revoker's authorization port: sends Envoy's ext_authz `Check` with
//! a bearer token, as Envoy would, and sums up the answer.

use super::wait_until;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::collections::HashMap;
use std::time::Duration;
use tonic::transport::Channel;

/// What a Check answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request may go on (gRPC status OK with an `OkHttpResponse`).
    Allowed,
    /// The request is refused with this HTTP status (401 for a bad or revoked token, 503
    /// when the replica cannot vouch for the revocation set).
    Denied(u16),
}

/// A connection to one authorization port, with its own runtime so that sync tests can
/// use it.
pub struct CheckClient {
    runtime: tokio::runtime::Runtime,
    client: AuthorizationClient<Channel>,
}

impl CheckClient {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a runtime for the Check client");
        let channel = runtime
            .block_on(
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .expect("endpoint")
                    .timeout(Duration::from_secs(5))
                    .connect(),
            )
            .unwrap_or_else(|e| panic!("connect to the authz port {port}: {e}"));
        Self {
            runtime,
            client: AuthorizationClient::new(channel),
        }
    }

    /// Checks a `GET /` carrying `Authorization: Bearer <token>`.
    pub fn check(&mut self, token: &str) -> Outcome {
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/".into(),
                        headers: HashMap::from([(
                            "authorization".to_owned(),
                            format!("Bearer {token}"),
                        )]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let response = self
            .runtime
            .block_on(self.client.check(request))
            .unwrap_or_else(|status| panic!("Check failed with a gRPC error: {status}"))
            .into_inner();
        match response.http_response {
            Some(HttpResponse::OkResponse(_)) => {
                assert_eq!(response.status.map(|s| s.code), Some(0), "allow without OK");
                Outcome::Allowed
            }
            Some(HttpResponse::DeniedResponse(denied)) => {
                let status = denied.status.map_or(403, |s| s.code);
                Outcome::Denied(u16::try_from(status).expect("an HTTP status"))
            }
            other => panic!("Check answered neither allow nor deny: {other:?}"),
        }
    }

    /// Checks `token` until the answer is `expected`, or panics after `timeout` with the
    /// last answer.
    pub fn wait_for(&mut self, token: &str, expected: Outcome, timeout: Duration) {
        wait_until(&format!("Check → {expected:?}"), timeout, |last| {
            let outcome = self.check(token);
            *last = format!("{outcome:?}");
            (outcome == expected).then_some(())
        });
    }
}
