//! The tonic implementation of Envoy's `envoy.service.auth.v3.Authorization/Check`.
//!
//! A refusal is a normal `CheckResponse`; Check never answers with a gRPC error, which Envoy
//! would treat as "could not decide".

use super::decision::{Decider, Decision, Denial};
use super::logout::LogoutRoutes;
use super::response::{check_response, request_headers};
use crate::clock::unix_now;
use crate::config::ResponseConfig;
use crate::metrics::CheckMetrics;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The Check service.
#[derive(Debug, Clone)]
pub struct AuthzService {
    decider: Arc<Decider>,
    response: Arc<ResponseConfig>,
    logout: Option<Arc<LogoutRoutes>>,
    metrics: Option<CheckMetrics>,
}

impl AuthzService {
    /// A Check service deciding with `decider` and answering as `response` says.
    pub fn new(decider: Arc<Decider>, response: ResponseConfig) -> Self {
        Self {
            decider,
            response: Arc::new(response),
            logout: None,
            metrics: None,
        }
    }

    /// Also records revocations on these logout routes (see [`LogoutRoutes`]).
    pub fn with_logout_routes(mut self, routes: LogoutRoutes) -> Self {
        self.logout = Some(Arc::new(routes));
        self
    }

    /// Records every decision and its latency into `metrics`.
    pub fn with_metrics(mut self, metrics: CheckMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The tonic service to mount on the authorization port.
    pub fn svc(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let headers = request_headers(&request);
        let now = unix_now();
        let mut decision = self.decider.decide(&headers, now).await;
        // A logout request whose token is already revoked (a second ext_authz hop after the
        // first recorded the logout, or a client retry) still reaches the application's own
        // logout, without recording anything again.
        if let (Decision::Deny(Denial::Revoked(_, token)), Some(logout)) = (&decision, &self.logout)
            && logout.is_logout_request(&request, token)
        {
            decision = Decision::Allow(Arc::clone(token));
        } else if let (Decision::Allow(token), Some(logout)) = (&decision, &self.logout)
            && let Err(error) = logout.on_allowed(&request, token, now).await
        {
            tracing::warn!(%error, iss = %token.claims.iss, "logout route: revocation not recorded");
            decision = Decision::Deny(Denial::LogoutFailed);
        }
        match &decision {
            Decision::Allow(token) => tracing::debug!(
                iss = %token.claims.iss,
                token_id = %token.token_id,
                "allowed"
            ),
            Decision::Deny(denial) => tracing::info!(reason = denial.reason(), "denied"),
        }
        let response = check_response(&decision, &self.response);
        if let Some(metrics) = &self.metrics {
            let (outcome, reason) = match &decision {
                Decision::Allow(_) => ("allow", "ok"),
                Decision::Deny(denial) => ("deny", denial.reason()),
            };
            metrics.record(outcome, reason, started.elapsed());
        }
        Ok(Response::new(response))
    }
}
