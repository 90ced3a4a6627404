//! Verifying a managed stream and reading its status: after stream management configured the
//! stream, and then every `verification_interval` (at least the stream's
//! `min_verification_interval`), read the transmitter's status endpoint
//! (`GET status_endpoint?stream_id=`), then ask its `verification_endpoint` for a
//! verification event with a fresh random `state` and wait up to `verification_timeout` for
//! that event to arrive, by push or poll, at this replica or another one (the `state` is
//! recorded in the store, and so is its arrival). The outcome is counted in
//! `jwt_revoker_ssf_verification_total{stream, outcome}` and kept in the stream's status.
//!
//! Every replica verifies on its own schedule: nothing is shared but the marks, so one
//! replica's verification cannot fail another's.

use super::credentials::TokenSource;
use super::management::{Configured, ManagementSettings, call, random_state};
use super::metrics::SsfMetrics;
use super::receiver::{Stream, VERIFIED_SCOPE, VERIFY_MARK_SECS, VERIFY_STATE_SCOPE, verify_mark};
use super::status::{StatusSource, VerificationOutcome};
use crate::clock::unix_now;
use crate::revocation::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the store is asked whether another replica received the awaited event.
const STORE_CHECK: Duration = Duration::from_millis(500);

/// Verifies streams and reads their status.
#[derive(Clone)]
pub struct Verifier {
    store: Arc<dyn Store>,
    metrics: SsfMetrics,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

/// How one verification round ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// A recorded outcome.
    Outcome(VerificationOutcome),
    /// The transmitter refused the request as too frequent (429); the last outcome stands.
    RateLimited,
    /// The server is stopping.
    Stopped,
}

impl Round {
    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Outcome(outcome) => outcome.as_str(),
            Self::RateLimited => "rate_limited",
            Self::Stopped => "stopped",
        }
    }
}

impl Verifier {
    /// A verifier recording marks in `store` and counting into `metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: SsfMetrics) -> Self {
        Self { store, metrics }
    }

    /// Reads the status and verifies, once or every interval, until `stop` turns true.
    pub async fn run(
        &self,
        client: &reqwest::Client,
        stream: &Stream,
        settings: &ManagementSettings,
        configured: &Configured,
        mut stop: watch::Receiver<bool>,
    ) {
        let interval = settings
            .verification_interval
            .map(|interval| interval.max(configured.min_verification_interval.unwrap_or_default()));
        loop {
            let started = Instant::now();
            refresh_status(client, stream, &settings.credential, configured).await;
            let round = self
                .verify_once(
                    client,
                    stream,
                    &settings.credential,
                    configured,
                    settings.verification_timeout,
                    &mut stop,
                )
                .await;
            if round == Round::Stopped {
                return;
            }
            self.metrics
                .count_verification(stream.name(), round.label());
            match round {
                Round::Outcome(VerificationOutcome::Succeeded) => {
                    tracing::info!(stream = %stream.name(), "ssf stream verified");
                }
                other => {
                    let error = stream.status().verification.error.unwrap_or_default();
                    tracing::warn!(stream = %stream.name(), outcome = other.label(), %error, "ssf stream verification did not succeed");
                }
            }
            let Some(interval) = interval else {
                return;
            };
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(interval.saturating_sub(started.elapsed())) => {}
            }
        }
    }

    /// One verification: request an event with a fresh `state`, wait for it.
    pub async fn verify_once(
        &self,
        client: &reqwest::Client,
        stream: &Stream,
        credential: &TokenSource,
        configured: &Configured,
        timeout: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Round {
        let state = random_state();
        let mark = verify_mark(stream.name(), &state);
        let now = unix_now();
        let expires = now
            .saturating_add(timeout.as_secs())
            .saturating_add(VERIFY_MARK_SECS);
        if let Err(error) = self
            .store
            .remember_once(VERIFY_STATE_SCOPE, &mark, expires, now)
            .await
        {
            // Only another replica's receipt needs the mark; this replica still matches.
            tracing::warn!(stream = %stream.name(), %error, "cannot record the verification state in the store");
        }
        stream.begin_verification(state.clone(), now);
        let fail = |error: String| {
            stream.end_verification(
                &state,
                VerificationOutcome::RequestFailed,
                Some(error),
                unix_now(),
            );
            Round::Outcome(VerificationOutcome::RequestFailed)
        };
        let Some(endpoint) = &configured.verification_endpoint else {
            return fail("the transmitter has no verification_endpoint".to_owned());
        };
        let body = json!({"stream_id": configured.stream_id, "state": state});
        let request = call_status(client, credential, endpoint, &body);
        let answer = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return Round::Stopped,
            answer = request => answer,
        };
        match answer {
            Ok(status) if status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                stream.abandon_verification(&state);
                return Round::RateLimited;
            }
            Ok(status) if !status.is_success() => {
                return fail(format!("verification request: HTTP {status}"));
            }
            Ok(_) => {}
            Err(error) => return fail(format!("verification request: {error}")),
        }
        let deadline = Instant::now() + timeout;
        let mut changed = stream.subscribe();
        loop {
            if !stream.awaits_verification(&state) {
                // Received here (or ended otherwise: the status says how).
                return Round::Outcome(stream.status().verification.outcome);
            }
            match self
                .store
                .is_remembered(VERIFIED_SCOPE, &mark, unix_now())
                .await
            {
                Ok(true) => {
                    stream.end_verification(
                        &state,
                        VerificationOutcome::Succeeded,
                        None,
                        unix_now(),
                    );
                    return Round::Outcome(VerificationOutcome::Succeeded);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(stream = %stream.name(), %error, "cannot ask the store about the verification");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                stream.end_verification(
                    &state,
                    VerificationOutcome::Timeout,
                    Some(format!(
                        "no verification event within {}",
                        humantime::format_duration(timeout)
                    )),
                    unix_now(),
                );
                return Round::Outcome(stream.status().verification.outcome);
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return Round::Stopped,
                _ = changed.changed() => {}
                () = tokio::time::sleep(STORE_CHECK.min(deadline - now)) => {}
            }
        }
    }
}

/// POSTs `body` to the verification endpoint; the answer's status.
async fn call_status(
    client: &reqwest::Client,
    credential: &TokenSource,
    endpoint: &str,
    body: &Value,
) -> Result<reqwest::StatusCode, String> {
    credential
        .send(client, || {
            client
                .post(endpoint)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        })
        .await
        .map(|response| response.status())
}

/// Reads the stream's status from the transmitter's status endpoint, if it has one, and
/// records it.
pub async fn refresh_status(
    client: &reqwest::Client,
    stream: &Stream,
    credential: &TokenSource,
    configured: &Configured,
) {
    let Some(endpoint) = &configured.status_endpoint else {
        return;
    };
    let Ok(mut url) = url::Url::parse(endpoint) else {
        return;
    };
    url.query_pairs_mut()
        .append_pair("stream_id", &configured.stream_id);
    match call(client, credential, reqwest::Method::GET, url.as_str(), None).await {
        Ok(answer) => match answer.get("status").and_then(Value::as_str) {
            Some(status @ ("enabled" | "paused" | "disabled")) => {
                let reason = answer.get("reason").and_then(Value::as_str).map(|reason| {
                    reason
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(256)
                        .collect()
                });
                stream.record_status(
                    status.to_owned(),
                    reason,
                    StatusSource::StatusEndpoint,
                    unix_now(),
                );
            }
            _ => {
                tracing::warn!(stream = %stream.name(), "the transmitter's status endpoint answered no known status");
            }
        },
        Err(error) => {
            tracing::warn!(stream = %stream.name(), %error, "cannot read the stream status from the transmitter");
        }
    }
}
