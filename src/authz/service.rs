//! Envoy's `Check`, from request to reply: decide, apply logout routes, log, record metrics,
//! and answer.
//!
//! A refusal is a normal `CheckResponse`; Check never answers with a gRPC error, which Envoy
//! would treat as "could not decide".

use super::decision::{Decider, Decision, Denial};
use super::grpc::{CheckReply, CheckServer};
use super::logout::LogoutRoutes;
use super::request::CheckedRequest;
use super::response::{denial_response, encoded_allow};
use super::strip::{forged_claim_spellings, stripped_sources, with_part};
use crate::clock::unix_now;
use crate::config::ResponseConfig;
use crate::metrics::CheckMetrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Gives each [`AuthzService`]'s response settings an id, under which a token's encoded
/// allow response is kept in its memo.
static RESPONSE_CONFIG_IDS: AtomicU64 = AtomicU64::new(1);

/// The Check service.
#[derive(Debug)]
pub struct AuthzService {
    decider: Arc<Decider>,
    response: ResponseConfig,
    response_id: u64,
    logout: Option<LogoutRoutes>,
    metrics: Option<CheckMetrics>,
}

impl AuthzService {
    /// A Check service deciding with `decider` and answering as `response` says.
    /// A token's allow response is built when it is verified, before it is cached, so that
    /// the cache counts it.
    pub fn new(decider: Arc<Decider>, response: ResponseConfig) -> Self {
        let response_id = RESPONSE_CONFIG_IDS.fetch_add(1, Ordering::Relaxed);
        let prepared = response.clone();
        decider.prepare_with(Box::new(move |token| {
            encoded_allow(token, &prepared, response_id);
        }));
        Self {
            decider,
            response,
            response_id,
            logout: None,
            metrics: None,
        }
    }

    /// Also records revocations on these logout routes (see [`LogoutRoutes`]).
    pub fn with_logout_routes(mut self, routes: LogoutRoutes) -> Self {
        self.logout = Some(routes);
        self
    }

    /// Records every decision and its latency into `metrics`.
    pub fn with_metrics(mut self, metrics: CheckMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The tonic service to mount on the authorization port.
    pub fn svc(self) -> CheckServer {
        CheckServer::new(self)
    }

    /// Answers one Check.
    pub async fn check(&self, request: CheckedRequest) -> CheckReply {
        let started = Instant::now();
        let now = unix_now();
        let mut decision = self.decider.decide(&request, now).await;
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
        if let Some(metrics) = &self.metrics {
            let (outcome, reason) = match &decision {
                Decision::Allow(_) => ("allow", "ok"),
                Decision::Deny(denial) => ("deny", denial.reason()),
            };
            metrics.record(outcome, reason, started.elapsed());
        }
        match &decision {
            Decision::Allow(token) => {
                let allow = encoded_allow(token, &self.response, self.response_id);
                let part = self
                    .response
                    .strip_sources
                    .as_ref()
                    .and_then(|sources| stripped_sources(&request, sources));
                let forged = forged_claim_spellings(&request, self.response.claim_headers.values());
                CheckReply::Encoded(with_part(with_part(allow, part), forged))
            }
            Decision::Deny(denial) => {
                CheckReply::Message(Box::new(denial_response(denial, &self.response)))
            }
        }
    }
}
